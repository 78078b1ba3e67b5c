"""Where the batcher runs a model: fast ones on the event loop, ones that block in a worker thread."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np

from keel.serving.batcher import Batcher, Pending


def _pending(i: int) -> Pending:
    return Pending({"x": np.full((1, 2), float(i))}, 1, f"r{i}", 0, time.perf_counter())


async def _one_at_a_time(batcher: Batcher, n: int) -> list[dict]:
    answers = []
    for i in range(n):
        answers.append(await batcher.submit(_pending(i)))
    return answers


def test_a_model_that_sleeps_moves_off_the_event_loop():
    def sleepy(arrays):
        time.sleep(0.01)  # no CPU: it would hold the loop if it ran there
        return {"y": arrays["x"].sum(axis=1)}

    batcher = Batcher(sleepy)
    answers = asyncio.run(_one_at_a_time(batcher, 30))
    batcher.close()
    assert [float(a["y"][0]) for a in answers] == [2.0 * i for i in range(30)]
    # The first run, in the worker, finds it cheap; two inline runs that block move it back for good.
    # (Right after start-up other threads of the process may still burn CPU, which masks a wait: a few more.)
    assert batcher.offloaded >= 20, batcher.offloaded


def test_a_fast_model_stays_on_the_loop_while_another_thread_holds_the_interpreter():
    """Waiting for the GIL while the server's own threads run is not the model blocking."""
    stop = threading.Event()

    def hog() -> None:  # pure Python: holds the GIL for whole switch intervals, like a busy log writer
        while not stop.is_set():
            sum(i * i for i in range(20_000))

    batcher = Batcher(lambda arrays: {"y": arrays["x"].sum(axis=1)})
    thread = threading.Thread(target=hog, daemon=True)
    thread.start()
    try:
        n = 400
        answers = asyncio.run(_one_at_a_time(batcher, n))
    finally:
        stop.set()
        thread.join()
        batcher.close()
    assert [float(a["y"][0]) for a in answers] == [2.0 * i for i in range(n)]
    # Before this was fixed, nearly every batch after the first GIL wait ran in the worker thread.
    assert batcher.offloaded < n // 10, batcher.offloaded
