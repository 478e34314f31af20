"""Writes to the store on background threads, so that training never waits on it; and the scratch
folder where what it writes is staged."""
from __future__ import annotations

import itertools
import math
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from queue import SimpleQueue
from typing import Callable

# Metric batches and tags (rows in the tracking database) and artifact files travel apart: a
# refused or slow artifact upload must not hold back the metrics queued behind it.
LANES = ("metrics", "artifacts")


class Uploader:
    """Ships calls to the store on one background thread per lane, in order within a lane. A failed
    call is retried with backoff (a tracking server that restarts mid-run loses nothing), but every
    retry of the run draws on one budget of `budget` seconds: once it is spent, a failure is final
    at once. `lost` names what was given up; `drain` waits for the rest and returns it all."""

    BUDGET_SECONDS = 60.0  # the README's "about a minute", for the whole run
    STOP_SECONDS = 10.0  # what a stopped run still gives the store to take what is queued, without retries
    FIRST_DELAY, LONGEST_DELAY = 0.5, 16.0

    def __init__(self, budget: float | None = None) -> None:
        self.budget = self.BUDGET_SECONDS if budget is None else budget
        self.budget_left = self.budget
        self.waits_until = 0.0  # the end of the latest wait granted (time.monotonic)
        self.lost: list[str] = []
        self.pending: dict[int, str] = {}  # what was submitted and is neither sent nor given up
        self.changed = threading.Condition()
        self.no_retries = threading.Event()  # stopping: a failure is final, a retry's wait ends now
        self.closed = False  # drained: a lane drops whatever it still holds
        self.tickets = itertools.count()
        self.queues: dict[str, SimpleQueue] = {lane: SimpleQueue() for lane in LANES}
        self.folder: Path | None = None
        for lane, queue in self.queues.items():
            # Daemon threads: a call stuck on a dead server must not keep the process from exiting.
            threading.Thread(target=self._serve, args=(queue,), name=f"kdtrack-upload-{lane}", daemon=True).start()

    def submit(self, what: str, call: Callable[[], None], lane: str = "artifacts") -> None:
        with self.changed:
            ticket = next(self.tickets)
            self.pending[ticket] = what
        self.queues[lane].put((ticket, what, call))

    def _serve(self, queue: SimpleQueue) -> None:
        while (item := queue.get()) is not None:
            ticket, what, call = item
            if not self.closed:
                self._send(what, call)
            with self.changed:
                self.pending.pop(ticket, None)
                self.changed.notify_all()

    def _send(self, what: str, call: Callable[[], None]) -> None:
        delay = self.FIRST_DELAY
        while True:
            try:
                return call()
            except Exception as error:
                pause = self._allowance(delay)
                if not pause:
                    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
                    with self.changed:
                        self.lost.append(f"{what}: {reason}")
                    return
                self.no_retries.wait(pause)
                delay = min(2 * delay, self.LONGEST_DELAY)

    def _allowance(self, delay: float) -> float:
        """A wait of up to `delay` seconds; none once the budget is spent or the run stops. The
        budget pays for the time during which some lane waits: both lanes waiting out one outage
        pay for it once, and the waits of the run never last longer than the budget in all."""
        with self.changed:
            if self.no_retries.is_set():
                return 0.0
            now = time.monotonic()
            paid_until = max(now, self.waits_until)
            pause = min(delay, paid_until - now + self.budget_left)
            self.budget_left -= max(0.0, now + pause - paid_until)
            self.waits_until = max(self.waits_until, now + pause)
            return pause

    def drain(self, stopping: Callable[[], bool] = lambda: False,
              leaving: Callable[[], bool] = lambda: False) -> list[str]:
        """Wait until everything submitted was sent or given up; what was lost. Once `stopping()`
        (a Ctrl-C), failures are final and what is not sent STOP_SECONDS later is lost; once
        `leaving()` (a second one), it is lost at once."""
        deadline = math.inf
        with self.changed:
            while self.pending and not leaving() and time.monotonic() < deadline:
                if deadline == math.inf and stopping():
                    self.no_retries.set()
                    deadline = time.monotonic() + self.STOP_SECONDS
                self.changed.wait(0.1)  # short: a signal meanwhile is seen within a tenth of a second
            self.closed = True
            self.no_retries.set()
            lost = [*self.lost, *(f"{what}: not sent before the stop" for what in self.pending.values())]
        for queue in self.queues.values():
            queue.put(None)
        return lost

    def scratch(self) -> Path:
        """A folder of this run's own for files on their way to the store; `remove_scratch` deletes
        it. Its name holds this host and process id: should the process die without removing it
        (SIGKILL), the next kdtrack process on this host removes it (`sweep_scratch`)."""
        with self.changed:
            if self.folder is None:
                sweep_scratch()
                self.folder = Path(tempfile.mkdtemp(prefix=f"{SCRATCH}{socket.gethostname()}-{os.getpid()}-"))
            return self.folder

    def remove_scratch(self) -> None:
        with self.changed:
            if self.folder is not None:
                shutil.rmtree(self.folder, ignore_errors=True)


SCRATCH = "kdtrack-scratch-"


def sweep_scratch() -> None:
    """Remove the scratch folders of processes of this host that no longer run: exactly this host's
    name, a pid and mkdtemp's 8-character suffix (a looser pattern matched other folders, such as a
    store under /tmp named kdtrack-<something>-<number>-...)."""
    own = re.compile(rf"{SCRATCH}{re.escape(socket.gethostname())}-(?P<pid>\d+)-[a-z0-9_]{{8}}")
    for folder in Path(tempfile.gettempdir()).glob(f"{SCRATCH}*"):
        name = own.fullmatch(folder.name)
        if name and not _alive(int(name["pid"])) and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid <= 0:  # os.kill would signal a process group
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
