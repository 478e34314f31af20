"""Ctrl-C and SIGTERM as requests honoured at safe points, never in the middle of a write.

A KeyboardInterrupt raised at an arbitrary bytecode can land inside `mlflow.end_run`, after it has
forgotten the active run and before it has written the status: the run then stays RUNNING forever.
So the training loop and the run lifecycle (kdtrack.tracking.runs) record signals instead, and act
on them afterwards. The handler installed is the only state: a nested block finds it there."""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Recorder:
    """A signal handler that notes the signal instead of acting on it."""

    def __init__(self) -> None:
        self.requests: list[int] = []

    def __call__(self, number: int, frame) -> None:
        self.requests.append(number)


def _open_recorder() -> _Recorder | None:
    handler = signal.getsignal(signal.SIGINT)
    return handler if isinstance(handler, _Recorder) else None


@contextmanager
def stop_requests() -> Iterator[list[int]]:
    """Record SIGINT/SIGTERM in the yielded list instead of raising. Nested blocks share the
    outermost block's list; off the main thread (where handlers cannot be set) the list stays empty."""
    enclosing = _open_recorder()
    if enclosing is not None or threading.current_thread() is not threading.main_thread():
        yield enclosing.requests if enclosing is not None else []
        return
    recorder = _Recorder()
    previous = {sig: signal.signal(sig, recorder) for sig in SIGNALS}
    try:
        yield recorder.requests
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def shielded(what: str) -> Iterator[None]:
    """Run the block whole; a signal that arrived meanwhile becomes a KeyboardInterrupt after it
    (unless an enclosing stop_requests block will act on it)."""
    outermost = _open_recorder() is None
    with stop_requests() as requested:
        yield
    if outermost and requested:
        raise KeyboardInterrupt(f"stopped by signal {requested[0]} after {what}")
