"""Leases: a run that a process is working on says so, and for how long, so that another process
never joins a run still being trained (issue 16, items 1 and 8).

A run kdtrack creates or reopens carries two tags, `kdtrack.lease_owner` (host:pid) and
`kdtrack.lease_until` (epoch ms), renewed by a `Heartbeat` on a thread of its own: a training loop
busy for minutes, or an upload stalled on a slow store, does not stop it. Ending the run releases
the lease (`lease_until` = the end time). A lease is live until `lease_until`; a RUNNING run whose
lease lapsed was left by a process that died (SIGKILL, a lost machine), and the first command that
meets it marks it KILLED (`reap`). Runs from before leases carry none: they count as lapsed.

Three races are settled with what MLflow's store offers, without locks:
- two processes that meet the same lapsed lease (both would resume or reap the run): MLflow
  refuses to change a logged param, so exactly one of them logs `kdtrack.takeover.<lease_until>`
  (`take_over`);
- two processes that start the same job at the same moment, both find no run and both create one:
  Lamport's bakery over their runs' `kdtrack.lease_ticket` tags elects one (`elect`); the others
  withdraw theirs before training and wait for it.
Clocks: hosts that share a store are assumed to agree to well within EXPIRY_SECONDS (NTP).
"""
from __future__ import annotations

import os
import socket
import threading
import time
from typing import Callable, Mapping

from mlflow.entities import RunTag
from mlflow.exceptions import MlflowException

from kdtrack.contract import FAILURE, KEY, LEASE_OWNER, LEASE_TICKET, LEASE_UNTIL, RESUME, ROLE, TAKEOVER
from kdtrack.tracking.store import client, get_run, now_ms, quoted, same_params, search_all

# A beat every 10 s, and a lease lasts 90 s: nine beats must fail in a row, or the process stall
# for a minute and a half, before anyone takes its run. A loaded machine delays a beat by seconds.
HEARTBEAT_SECONDS = 10.0
EXPIRY_SECONDS = 90.0
POLL_SECONDS = 2.0  # how often a process waiting on another's run looks again


def owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def lease_tags(now: int, expiry: float = EXPIRY_SECONDS) -> dict[str, str]:
    """The tags of a lease this process holds from `now` (epoch ms) for `expiry` seconds."""
    return {LEASE_OWNER: owner(), LEASE_UNTIL: str(now + int(expiry * 1000))}


def until_of(tags: Mapping[str, str]) -> int:
    """When a run's lease lapses (epoch ms); 0 for a run without one (from before leases)."""
    try:
        return int(tags.get(LEASE_UNTIL, "0"))
    except ValueError:
        return 0


def is_live(tags: Mapping[str, str], now: int) -> bool:
    return until_of(tags) > now


def holder(tags: Mapping[str, str]) -> str:
    return tags.get(LEASE_OWNER, "an unknown process")


def lapsed_note(tags: Mapping[str, str]) -> str:
    """The `kdtrack.failure` of a run whose holder died."""
    until = until_of(tags)
    last = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(until / 1000 - EXPIRY_SECONDS)) if until else "never"
    return (f"lease expired: {holder(tags)} stopped renewing it (last heartbeat about {last}); "
            "the process died without ending the run")


class Heartbeat:
    """Renews a run's lease every `interval` seconds on a daemon thread until `stop`, which
    releases it. A failed renewal (a busy SQLite store, a server restarting) is tried again at
    the next beat: only `expiry` seconds of failures lose the lease."""

    def __init__(self, write: Callable[[dict[str, str]], None], interval: float = HEARTBEAT_SECONDS,
                 expiry: float = EXPIRY_SECONDS):
        self.write, self.interval, self.expiry = write, interval, expiry
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="kdtrack-lease", daemon=True)
        self.thread.start()

    def _beat(self) -> None:
        while True:
            try:
                self.write(lease_tags(now_ms(), self.expiry))
            except Exception:  # the store's own exception types vary by backend; the next beat retries
                pass
            if self.stopped.wait(self.interval):
                return

    def stop(self) -> None:
        """Stop renewing, then release: an ended run needs no lease, and a KILLED one is resumable at once."""
        if self.stopped.is_set():
            return
        self.stopped.set()
        self.thread.join(self.interval)  # a beat stuck on an unreachable store must not hold up the run's end
        try:
            self.write({LEASE_UNTIL: str(now_ms())})
        except Exception:  # it lapses by itself within `expiry`
            pass


def hold(run_id: str) -> Heartbeat:
    """The heartbeat of a run this process now works on."""
    return Heartbeat(lambda tags: client().log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()]))


def take_over(run, why: str) -> bool:
    """Whether this process, of all that saw the same lapsed lease on `run`, is the one that takes
    it (to resume or reap it): the one whose `kdtrack.takeover.<lease_until>` param the store
    kept. The winner holds a fresh lease at once, so that the others wait for it."""
    run_id, name = run.info.run_id, f"{TAKEOVER}.{until_of(run.data.tags)}"
    try:
        client().log_param(run_id, name, f"{why} by {owner()}")
    except MlflowException:
        if name in get_run(run_id).data.params:  # another process logged it first
            return False
        raise
    client().log_batch(run_id, tags=[RunTag(k, v) for k, v in lease_tags(now_ms()).items()])
    return True


def reap(run):
    """Mark a RUNNING run whose lease lapsed KILLED, saying so in `kdtrack.failure`; the run as it
    is now. Runs from before leases are left alone: they may be an `mlflow run` launcher, or
    another tool's."""
    if run.info.status != "RUNNING" or is_live(run.data.tags, now_ms()) or LEASE_UNTIL not in run.data.tags:
        return run
    if take_over(run, "reaped"):
        # The dead holder named again (take_over made this process the holder), and a lease that
        # lapses now, a new value: the next command may take the run over at once.
        tags = {FAILURE: lapsed_note(run.data.tags), LEASE_OWNER: holder(run.data.tags), LEASE_UNTIL: str(now_ms())}
        client().log_batch(run.info.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        client().set_terminated(run.info.run_id, "KILLED")
    return get_run(run.info.run_id)


def reap_experiments(experiment_ids: list[str]) -> None:
    """Reap every orphan of these experiments (what `kdtrack runs` does before listing them)."""
    if experiment_ids:
        for run in search_all(experiment_ids, "attributes.status = 'RUNNING'"):
            reap(run)


def find_live(experiment_id: str, role: str, key: str, params: dict[str, str]):
    """A run with this key and params that another process holds a live lease on, if any."""
    now = now_ms()
    runs = search_all([experiment_id], f"tags.`{ROLE}` = {quoted(role)} and tags.`{KEY}` = {quoted(key)} "
                      "and attributes.status != 'FINISHED'", ["attributes.start_time ASC"])
    return next((run for run in runs if is_live(run.data.tags, now) and same_params(run, params)), None)


def wait(run_id: str) -> None:
    """Until the run is FINISHED or no process holds it any more (ended otherwise, or its holder died)."""
    while True:
        run = get_run(run_id)
        if run.info.status == "FINISHED" or not is_live(run.data.tags, now_ms()):
            return
        time.sleep(POLL_SECONDS)


def find_resumable(experiment_id: str, role: str, key: str, params: dict[str, str]):
    """The newest unfinished run with this key and params that left a resume checkpoint and that
    no process holds: killed, failed for a reason other than a non-finite loss (which would only
    recur), or orphaned (RUNNING with a lapsed lease: it is reaped, marked KILLED, on the way)."""
    runs = search_all([experiment_id], f"tags.`{ROLE}` = {quoted(role)} and tags.`{KEY}` = {quoted(key)} "
                      "and attributes.status != 'FINISHED'", ["attributes.start_time DESC"])
    for found in runs:
        if not same_params(found, params):
            continue
        run = reap(found)
        if run.data.tags.get(FAILURE, "").startswith("non-finite") or is_live(run.data.tags, now_ms()):
            continue
        if RESUME in run.data.tags:
            return run
    return None


def withdraw(run_id: str) -> None:
    """Delete a run that lost an election: it never trained, and the winner's is the one to keep."""
    client().delete_run(run_id)


def elect(run_id: str, experiment_id: str, role: str, key: str, params: dict[str, str]) -> str:
    """Of the runs with this key created by processes that started at the same moment, the one to
    train: the lowest (ticket, run id), by Lamport's bakery. A run that exists but has no ticket
    yet is choosing one: wait for it. A run that finished meanwhile wins: it is to be reused."""
    def rivals() -> list:
        now = now_ms()
        runs = search_all([experiment_id], f"tags.`{ROLE}` = {quoted(role)} and tags.`{KEY}` = {quoted(key)}")
        return [r for r in runs if r.info.run_id != run_id and same_params(r, params)
                and (is_live(r.data.tags, now) or r.info.status == "FINISHED")]

    def rank(run) -> tuple[int, str]:
        return 0 if run.info.status == "FINISHED" else int(run.data.tags[LEASE_TICKET]), run.info.run_id

    ticket = 1 + max((int(r.data.tags[LEASE_TICKET]) for r in rivals() if LEASE_TICKET in r.data.tags), default=0)
    client().set_tag(run_id, LEASE_TICKET, str(ticket))
    while True:
        found = rivals()
        if all(LEASE_TICKET in r.data.tags or r.info.status == "FINISHED" for r in found):
            return min([(ticket, run_id), *map(rank, found)])[1]
        time.sleep(POLL_SECONDS / 10)
