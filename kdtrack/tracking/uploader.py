"""Writes to the store on one background thread, so that training never waits on it."""
from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable


class Uploader:
    """Ships metric batches and artifacts to the store on one background thread, in order; a
    failed call is retried with backoff (a tracking server that restarts mid-run loses nothing).
    `drain` waits and returns what still failed."""

    DELAYS = (0.5, 1, 2, 4, 8, 16, 32)

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="kdtrack-upload")
        self.pending: list[Future] = []

    def submit(self, what: str, call: Callable[[], None]) -> None:
        self.pending = [f for f in self.pending if not f.done() or f.exception()]
        self.pending.append(self.pool.submit(self._retrying, what, call))

    def _retrying(self, what: str, call: Callable[[], None]) -> None:
        for delay in (*self.DELAYS, None):
            try:
                return call()
            except Exception as error:
                if delay is None:
                    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
                    raise RuntimeError(f"{what}: {reason}") from None
                time.sleep(delay)

    def drain(self) -> list[str]:
        failures = [str(f.exception()) for f in self.pending if f.exception()]
        self.pending = []
        self.pool.shutdown()
        return failures
