"""Pipeline files the executor tests share (each test writes them to its own tmp folder)."""

# Two independent steps that each wait for the other to have started: the pipeline only
# finishes when an executor runs them at the same time (no timing assertion needed).
RENDEZVOUS = """
import os
import time
import keel

FOLDER = os.path.dirname(os.path.abspath(__file__))


def meet(me, other):
    open(os.path.join(FOLDER, me), "w").close()
    # Bounded: run one after the other, the first would wait for the second in vain.
    for _ in range(600):
        if os.path.exists(os.path.join(FOLDER, other)):
            return me
        time.sleep(0.1)
    raise RuntimeError(f"{other} never started while {me} was running")


@keel.step
def left():
    return meet("left", "right")


@keel.step
def right():
    return meet("right", "left")


@keel.step
def join(a, b):
    return a + "+" + b


@keel.pipeline
def parallel():
    return join(left(), right())
"""
