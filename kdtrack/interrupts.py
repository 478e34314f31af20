"""Ctrl-C and SIGTERM as requests honoured at safe points, never in the middle of a write.

A KeyboardInterrupt raised at an arbitrary bytecode can land inside `mlflow.end_run`, after it has
forgotten the active run and before it has written the status: the run then stays RUNNING forever.
So the training loop and the run lifecycle (kdtrack.tracking.runs) record signals instead, and act
on them afterwards. The handler installed is the only state: a nested block finds it there.

A second signal means the user will not wait. It is not raised either (it too could land inside
`mlflow.end_run`, and MLflow's exit hook would then mark the run FINISHED); instead the process
is `leaving`: safe points stop waiting on anything (the training loop skips its last checkpoint,
a run being ended no longer waits for its uploads) so that the run is marked KILLED at once, and a
watchdog ends the process GRACE_SECONDS later whatever it is doing (a store that does not answer).
A process ended so is like one ended by SIGKILL: its run is marked once its lease expires and its
scratch files are removed by the next process (kdtrack.tracking.uploader.sweep_scratch)."""
from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)
GRACE_SECONDS = 3.0
# Set once, never cleared: after a second signal the whole process is on its way out.
_leaving = threading.Event()


class _Recorder:
    """A signal handler that notes the signal instead of acting on it; the `patience`-th signal
    makes the process leave."""

    def __init__(self, patience: int) -> None:
        self.requests: list[int] = []
        self.patience = patience

    def __call__(self, number: int, frame) -> None:
        self.requests.append(number)
        if len(self.requests) >= self.patience:
            _leave(number)


def _leave(number: int) -> None:
    if _leaving.is_set():
        return
    _leaving.set()
    watchdog = threading.Timer(GRACE_SECONDS, os._exit, (128 + number,))  # the shell's code for "killed by"
    watchdog.daemon = True
    watchdog.start()


def leaving() -> bool:
    """Whether a second signal came: nothing may wait any more."""
    return _leaving.is_set()


def _open_recorder() -> _Recorder | None:
    handler = signal.getsignal(signal.SIGINT)
    return handler if isinstance(handler, _Recorder) else None


@contextmanager
def stop_requests(patience: int = 2) -> Iterator[list[int]]:
    """Record SIGINT/SIGTERM in the yielded list instead of raising; the `patience`-th one makes
    the process leave (1 where the first signal came already, before the block). Nested blocks
    share the outermost block's list; off the main thread (where handlers cannot be set) the list
    stays empty."""
    enclosing = _open_recorder()
    if enclosing is not None or threading.current_thread() is not threading.main_thread():
        yield enclosing.requests if enclosing is not None else []
        return
    recorder = _Recorder(patience)
    previous = {sig: signal.signal(sig, recorder) for sig in SIGNALS}
    try:
        yield recorder.requests
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def shielded(what: str, patience: int = 2) -> Iterator[list[int]]:
    """Run the block whole; a signal that arrived meanwhile becomes a KeyboardInterrupt after it
    (unless an enclosing stop_requests block will act on it). The block sees the signals in the
    yielded list, to cut its waits short."""
    outermost = _open_recorder() is None
    with stop_requests(patience) as requested:
        yield requested
    if outermost and requested:
        raise KeyboardInterrupt(f"stopped by signal {requested[0]} after {what}")
