"""Ctrl-C and SIGTERM as requests honoured at safe points, never in the middle of a write.

A KeyboardInterrupt raised at an arbitrary bytecode can land inside `mlflow.end_run`, after it has
forgotten the active run and before it has written the status: the run then stays RUNNING forever.
So the training loop and the ending of a run record signals instead, and act on them afterwards."""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

_requests: list[int] | None = None  # signals received while a stop_requests block is open


@contextmanager
def stop_requests() -> Iterator[list[int]]:
    """Record SIGINT/SIGTERM in the yielded list instead of raising. Nested blocks share the
    outermost block's list; off the main thread (where handlers cannot be set) the list stays empty."""
    global _requests
    if _requests is not None or threading.current_thread() is not threading.main_thread():
        yield _requests if _requests is not None else []
        return
    _requests = requested = []
    previous = {sig: signal.signal(sig, lambda number, frame: requested.append(number))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield requested
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _requests = None


@contextmanager
def shielded(what: str) -> Iterator[None]:
    """Run the block whole; a signal that arrived meanwhile becomes a KeyboardInterrupt after it
    (unless an enclosing stop_requests block will act on it)."""
    outermost = _requests is None
    with stop_requests() as requested:
        yield
    if outermost and requested:
        raise KeyboardInterrupt(f"stopped by signal {requested[0]} after {what}")
