"""Adaptive micro-batching: requests that arrive together are run together; a lone one at once.

Requests queue per model. While a batch runs, new ones wait in the queue; when
it finishes, the next batch takes everything queued (up to ``max_batch_size``
rows). So under load batches grow by themselves, and at low load a request
never waits for company. ``max_wait_ms`` (default 0) lets a batch wait a
little for more rows, but only while traffic is concurrent (the previous
batch held more than one request).

A batch whose model call is fast runs on the event loop itself: handing it
to a thread would cost more than the prediction. Slower models run in a
worker thread so the loop keeps accepting. "Fast" is judged on CPU time
(wall time in the worker thread includes waiting for the interpreter lock,
which would make a fast model look slow on a busy machine) and on the wall
time of inline runs that the process did not spend on the CPU: a model that
sleeps or waits on I/O uses no CPU but must not block the loop. A run that
waited for the interpreter lock while another thread of the server ran is
not slow, and one preemption by the OS is not enough: it takes
``BLOCKED_RUNS`` such runs in a row. Every ``PROBE_EVERY`` batches a model that
looks fast is tried inline again.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

INLINE_SECONDS = 0.0003
BLOCKED_SECONDS = 4 * INLINE_SECONDS  # an inline run that waited this long (not on the CPU) blocked the loop
BLOCKED_RUNS = 2  # in a row, before the model moves to the worker thread: the OS may preempt us once
PROBE_EVERY = 256


class Overloaded(Exception):
    """The model's queue is full: answer 503 with Retry-After."""


@dataclass(slots=True)
class Pending:
    arrays: dict[str, np.ndarray]
    rows: int
    request_id: str
    started: float  # perf_counter at arrival
    future: asyncio.Future = field(default=None)  # type: ignore[assignment]


class Batcher:
    def __init__(self, predict: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]], *,
                 max_batch_size: int = 64, max_wait_ms: float = 0.0, max_queue: int = 256,
                 on_batch: Callable[[list[Pending], dict[str, np.ndarray], dict[str, np.ndarray]], None] | None = None
                 ) -> None:
        self._predict = predict
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self._on_batch = on_batch
        self._queue: deque[Pending] = deque()
        self._busy = False
        self._cpu: float | None = None  # EWMA of the model call's CPU seconds
        self._blocked = 0  # inline runs in a row that waited BLOCKED_SECONDS or more
        self._batches = 0
        self._last_requests = 1
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="keel-predict")
        self.in_flight = 0
        self.offloaded = 0  # batches run in the worker thread rather than on the loop

    @property
    def depth(self) -> int:
        return len(self._queue)

    def submit(self, item: Pending) -> asyncio.Future:
        if len(self._queue) >= self.max_queue:
            raise Overloaded(f"the model's queue is full ({self.max_queue} requests waiting)")
        loop = asyncio.get_running_loop()
        item.future = loop.create_future()
        self._queue.append(item)
        if not self._busy:
            self._busy = True
            loop.create_task(self._drain())
        return item.future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._take([])
                if self.max_wait and self._last_requests > 1 and sum(p.rows for p in batch) < self.max_batch_size:
                    await asyncio.sleep(self.max_wait)
                    batch = self._take(batch)
                self._last_requests = len(batch)
                await self._run(batch)
        finally:
            self._busy = False

    def _take(self, batch: list[Pending]) -> list[Pending]:
        rows = sum(p.rows for p in batch)
        while self._queue and (not batch or rows + self._queue[0].rows <= self.max_batch_size):
            item = self._queue.popleft()
            batch.append(item)
            rows += item.rows
        return batch

    async def _run(self, batch: list[Pending]) -> None:
        self.in_flight = len(batch)
        try:
            if self._inline():
                t0, cpu0 = time.perf_counter(), time.process_time()
                inputs, outputs = self._timed(batch)
                # Wall time that no thread of this process spent on the CPU: the model waited (a sleep,
                # I/O, a lock). Waiting for the interpreter lock while another thread of ours ran (the
                # prediction log's writer, say) is not the model's doing and must not move it off the loop.
                waited = (time.perf_counter() - t0) - (time.process_time() - cpu0)
                self._blocked = self._blocked + 1 if waited >= BLOCKED_SECONDS else 0
            else:
                self.offloaded += 1
                inputs, outputs = await asyncio.get_running_loop().run_in_executor(self._executor, self._timed, batch)
        except BaseException as exc:  # noqa: BLE001 - every waiter must hear about it
            await self._fail(batch, exc)
            return
        finally:
            self.in_flight = 0
        start = 0
        for item in batch:
            end = start + item.rows
            if not item.future.done():
                item.future.set_result({name: array[start:end] for name, array in outputs.items()})
            start = end
        if self._on_batch is not None:
            self._on_batch(batch, inputs, outputs)

    def _inline(self) -> bool:
        self._batches += 1
        if self._cpu is None or self._cpu >= INLINE_SECONDS:
            return False
        if self._blocked < BLOCKED_RUNS:
            return True
        return self._batches % PROBE_EVERY == 0

    def _timed(self, batch: list[Pending]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        t0 = time.thread_time()
        if len(batch) == 1:
            arrays = batch[0].arrays
        else:
            arrays = {name: np.concatenate([p.arrays[name] for p in batch]) for name in batch[0].arrays}
        outputs = self._predict(arrays)
        took = time.thread_time() - t0
        self._cpu = took if self._cpu is None else 0.8 * self._cpu + 0.2 * took
        return arrays, outputs

    async def _fail(self, batch: list[Pending], exc: BaseException) -> None:
        if len(batch) == 1:
            if not batch[0].future.done():
                batch[0].future.set_exception(exc)
            return
        for item in batch:  # one bad request must not fail the others: retry each alone
            await self._run([item])

    def close(self) -> None:
        self._executor.shutdown(wait=True)
