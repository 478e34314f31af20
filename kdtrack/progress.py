"""Progress of long work on stderr, through tqdm: a bar redrawn in place on a terminal; elsewhere
(CI, log files, `mlflow run` piping) a plain line at every 10%, since redrawing there would
write thousands of carriage-return fragments into the log.

The loop hands `update` a function for its status (loss, batch accuracy) rather than the
values: on CUDA reading a running loss waits for the device, so it is read only when a line is
about to be drawn (at most twice a second on a terminal, ten times per bar elsewhere).
"""
from __future__ import annotations

import sys
import time
from typing import Callable, Mapping

from tqdm import tqdm

Status = Callable[[], Mapping[str, object]]
# A plain line: the bar's numbers without the bar.
PLAIN = "kdtrack: {desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
STATUS_SECONDS = 0.5  # on a terminal, the status is read at most this often


def write(message: str) -> None:
    """A line on stderr that leaves open bars intact (tqdm clears and redraws them around it)."""
    tqdm.write(message, file=sys.stderr)
    sys.stderr.flush()


class Progress:
    """`with Progress(total, "training ...") as progress: progress.update(done, status)`.

    `done` counts from 0 (or `initial`, for resumed work) to `total`; `delay`: nothing is shown
    for work that ends sooner (an evaluation of a small set)."""

    def __init__(self, total: int, description: str, unit: str = "steps", initial: int = 0, delay: float = 0.0,
                 stream=None):
        self.stream = stream or sys.stderr  # looked up now: tests and CliRunner swap sys.stderr
        self.total, self.description, self.unit, self.delay = max(total, 1), description, unit, delay
        self.initial = self.done = initial
        self.started = time.monotonic()
        self.status_read = 0.0
        self.decile = self._decile(initial)  # plain lines: the last tenth reported
        self.bar = None
        if self.stream.isatty():
            self.bar = tqdm(total=self.total, initial=initial, desc=description, unit=unit, file=self.stream,
                            delay=delay, leave=False, dynamic_ncols=True, smoothing=0.1)

    def _decile(self, done: int) -> int:
        return done * 10 // self.total

    def update(self, done: int, status: Status | None = None) -> None:
        """Work done so far (an absolute count); `status` is read only when it will be shown."""
        if self.bar is not None:
            now = time.monotonic()
            if status is not None and now - self.status_read > STATUS_SECONDS:
                self.status_read = now
                self.bar.set_postfix(status(), refresh=False)
            self.bar.update(done - self.done)
        elif self._decile(done) > self.decile:
            self.decile = self._decile(done)
            if time.monotonic() - self.started >= self.delay:
                print(self.line(done, status() if status else {}), file=self.stream, flush=True)
        self.done = done

    def line(self, done: int, status: Mapping[str, object]) -> str:
        """The plain line for `done`, with `status` after the rate (tqdm's own formatting)."""
        postfix = ", ".join(f"{k}={_short(v)}" for k, v in status.items())
        return tqdm.format_meter(done, self.total, time.monotonic() - self.started, prefix=self.description,
                                 unit=self.unit, initial=self.initial, postfix=postfix, bar_format=PLAIN)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *_) -> None:
        self.close()


def duration(seconds: float) -> str:
    """`[H:]MM:SS`, as the bars show elapsed time."""
    return tqdm.format_interval(seconds)


def _short(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
