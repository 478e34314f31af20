"""Leases (issue 16, items 1 and 8): a run being trained is never joined by a second identical
command; identical commands started together train one run; a run whose process died is marked
KILLED and resumed. The lease's own logic is tested without subprocesses first.

Each subprocess test trains in an experiment of its own. Waits last as long as the processes
waited on live, never a fixed time: the machine running the tests may be loaded."""
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow.entities import Param

from kdtrack import tracking
from kdtrack.contract import FAILURE, KEY, LEASE_OWNER, LEASE_TICKET, LEASE_UNTIL, ROLE
from kdtrack.tracking import lease

KDTRACK = str(Path(sys.executable).parent / "kdtrack")
# 64 points, batch 16: 4 steps per epoch; a resume checkpoint every 20 steps.
SMALL = ["-P", "preset=mnist_mlp", "-P", "train_size=64", "-P", "width=32", "-P", "batch_size=16",
         "-P", "checkpoint_every=20", "-P", "log_every=4", "-P", "eigen=false"]


def test_a_lease_lasts_its_expiry_from_now():
    tags = lease.lease_tags(1_000_000, expiry=90)
    assert tags[LEASE_UNTIL] == str(1_000_000 + 90_000) and tags[LEASE_OWNER].endswith(f":{os.getpid()}")
    assert lease.is_live(tags, 1_000_000 + 89_999)
    assert not lease.is_live(tags, 1_000_000 + 90_000)


def test_runs_without_a_lease_or_with_a_garbled_one_are_not_live():
    assert lease.until_of({}) == 0 and not lease.is_live({}, 1)
    assert not lease.is_live({LEASE_UNTIL: "soon"}, 1)


def test_the_failure_note_names_the_holder_and_its_last_heartbeat():
    until = int(time.mktime((2024, 5, 6, 7, 8, 9 + int(lease.EXPIRY_SECONDS), 0, 0, -1)) * 1000)
    note = lease.lapsed_note({LEASE_OWNER: "gpu3:4242", LEASE_UNTIL: str(until)})
    assert note.startswith("lease expired: gpu3:4242") and "2024-05-06 07:08:09" in note


def test_the_heartbeat_renews_on_its_own_thread_and_releases_when_stopped():
    written, beaten = [], threading.Event()

    def write(tags):
        written.append(dict(tags))
        if len(written) >= 3:
            beaten.set()

    heartbeat = lease.Heartbeat(write, interval=0.01, expiry=60)
    assert beaten.wait(60)  # it beats while this thread waits: nothing here drives it
    heartbeat.stop()
    renewals, release = written[:-1], written[-1]
    assert all(int(t[LEASE_UNTIL]) > tracking.now_ms() for t in renewals)  # each one 60 s ahead
    assert set(release) == {LEASE_UNTIL} and int(release[LEASE_UNTIL]) <= tracking.now_ms()
    count = len(written)
    time.sleep(0.05)
    assert len(written) == count  # stopped: no renewal after the release


def test_a_failing_store_does_not_stop_the_heartbeat():
    calls, beaten = [], threading.Event()

    def write(tags):
        calls.append(tags)
        if len(calls) >= 3:
            beaten.set()
        raise RuntimeError("database is locked")

    heartbeat = lease.Heartbeat(write, interval=0.01)
    assert beaten.wait(60)
    heartbeat.stop()


def fake_run(experiment_id: str, tags: dict[str, str], key: str = "k") -> str:
    run_id = tracking.client().create_run(experiment_id, tags={ROLE: "teacher", KEY: key, **tags}).info.run_id
    tracking.client().log_batch(run_id, params=[Param("seed", "0")])
    return run_id


def test_runs_created_at_the_same_moment_elect_one(store):
    experiment_id = tracking.resolve_experiment("elect")
    live = lease.lease_tags(tracking.now_ms())
    first, second = fake_run(experiment_id, live), fake_run(experiment_id, live)
    # `second` saw `first` without a ticket: it waits until `first` has one, on another thread.
    chosen = {}
    waiting = threading.Thread(target=lambda: chosen.update(second=lease.elect(second, experiment_id, "teacher", "k",
                                                                               {"seed": "0"})))
    waiting.start()
    chosen["first"] = lease.elect(first, experiment_id, "teacher", "k", {"seed": "0"})
    waiting.join(120)
    assert chosen["first"] == chosen["second"]  # both agree, whichever took the lower ticket


def test_a_finished_run_wins_the_election(store):
    experiment_id = tracking.resolve_experiment("elect-finished")
    done = fake_run(experiment_id, {LEASE_TICKET: "5", LEASE_UNTIL: "1"})
    tracking.client().set_terminated(done, "FINISHED")
    late = fake_run(experiment_id, lease.lease_tags(tracking.now_ms()))
    assert lease.elect(late, experiment_id, "teacher", "k", {"seed": "0"}) == done


def test_of_two_processes_that_see_one_lapsed_lease_one_takes_the_run(store):
    experiment_id = tracking.resolve_experiment("takeover")
    run = tracking.get_run(fake_run(experiment_id, {LEASE_UNTIL: "12345", LEASE_OWNER: "gone:1"}))
    assert lease.take_over(run, "resumed")
    assert not lease.take_over(run, "reaped")  # the same lapsed lease, seen by another process
    assert lease.is_live(tracking.get_run(run.info.run_id).data.tags, tracking.now_ms())  # held by the winner now


def train(experiment: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([KDTRACK, "train-teacher", "--experiment", experiment, *SMALL, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def runs_of(experiment: str) -> list:
    return tracking.search_all([tracking.experiment_id(experiment)], "")


def assert_no_step_twice(run_id: str, steps: int) -> None:
    logged = [m.step for m in tracking.client().get_metric_history(run_id, "lr")]
    assert sorted(logged) == list(range(4, steps + 1, 4))  # every log step once


@pytest.mark.slow
def test_identical_commands_started_together_train_one_run(store):
    experiment = "together"
    tracking.resolve_experiment(experiment)  # an existing store: two processes creating its tables at once collide
    processes = [train(experiment, "-P", "epochs=15") for _ in range(2)]
    outputs = [p.communicate() for p in processes]
    for process, (_, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-2000:]
    ids = {out.split()[-1] for out, _ in outputs}
    [run] = runs_of(experiment)  # the one that lost an election, if any, was withdrawn before it trained
    assert ids == {run.info.run_id} and run.info.status == "FINISHED"
    assert_no_step_twice(run.info.run_id, 60)
    assert any("waiting for it" in err or "reusing finished" in err for _, err in outputs)


@pytest.mark.slow
def test_a_live_run_is_refused_then_reaped_once_its_lease_lapses_and_resumed(store):
    experiment = "live-then-dead"
    tracking.resolve_experiment(experiment)
    long = ("-P", "epochs=150")  # 600 steps
    first = train(experiment, *long)
    try:
        run_id = refused_while_live(experiment, first, long)
    finally:
        first.kill()  # SIGKILL: it leaves the run RUNNING, as a lost machine would
        first.communicate()
    # Time passes (EXPIRY_SECONDS without a heartbeat): the lease lapses.
    tracking.client().set_tag(run_id, LEASE_UNTIL, str(tracking.now_ms() - 1000))
    listed = subprocess.run([KDTRACK, "runs", "--experiment", experiment], capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "KILLED" in listed.stdout  # the one run of the experiment, listed as killed
    orphan = tracking.get_run(run_id)
    assert orphan.info.status == "KILLED"
    assert orphan.data.tags[FAILURE].startswith(f"lease expired: {orphan.data.tags[LEASE_OWNER]}")
    assert orphan.data.tags[LEASE_OWNER].endswith(f":{first.pid}")

    again = subprocess.run([KDTRACK, "train-teacher", "--experiment", experiment, *SMALL, *long],
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming teacher run {run_id} (KILLED)" in again.stderr and again.stdout.split()[-1] == run_id
    assert tracking.get_run(run_id).info.status == "FINISHED" and len(runs_of(experiment)) == 1
    assert_no_step_twice(run_id, 600)


def freeze(process: subprocess.Popen, run_id: str) -> None:
    """Stop `process` (SIGSTOP) so that it cannot finish before the next command asks (on an idle
    machine 600 steps take less than a command's start-up), and renew its lease as its heartbeat
    would. Frozen inside a SQLite write, it would hold the database's lock: thawed, tried again."""
    for _ in range(50):
        process.send_signal(signal.SIGSTOP)
        try:
            tracking.client().set_tag(run_id, LEASE_UNTIL, str(tracking.now_ms() + 600_000))
            return
        except Exception:  # database is locked
            process.send_signal(signal.SIGCONT)
            time.sleep(0.2)
    raise AssertionError(f"the store stayed locked whenever process {process.pid} was stopped")


def refused_while_live(experiment: str, first: subprocess.Popen, long: tuple) -> str:
    """The id of the run `first` trains, once it has checkpointed; a second command refuses to join it."""
    while not (found := [r for r in runs_of(experiment) if r.data.tags.get("kdtrack.resume_checkpoint")]):
        assert first.poll() is None, first.stderr.read()[-2000:]
        time.sleep(0.1)
    run_id = found[0].info.run_id
    freeze(first, run_id)

    refused = subprocess.run([KDTRACK, "train-teacher", "--experiment", experiment, *SMALL, *long,
                              "-P", "if_running=refuse"], capture_output=True, text=True)
    assert refused.returncode != 0 and first.poll() is None  # refused while the first still trains
    [line] = [line for line in refused.stderr.splitlines() if line.strip()]
    assert run_id in line and f":{first.pid}" in line and "if_running=refuse" in line
    assert tracking.get_run(run_id).info.status == "RUNNING" and len(runs_of(experiment)) == 1
    return run_id


def test_an_orphan_found_when_resuming_is_reaped(store):
    """find_resumable marks a RUNNING run with a lapsed lease KILLED; a live one it leaves alone."""
    experiment_id = tracking.resolve_experiment("reap-on-resume")
    dead = fake_run(experiment_id, {LEASE_UNTIL: "1", LEASE_OWNER: "gone:7", "kdtrack.resume_checkpoint": "c"})
    found = lease.find_resumable(experiment_id, "teacher", "k", {"seed": "0"})
    assert found.info.run_id == dead and found.info.status == "KILLED"
    assert found.data.tags[FAILURE].startswith("lease expired: gone:7")
    alive = fake_run(experiment_id, {**lease.lease_tags(tracking.now_ms()), "kdtrack.resume_checkpoint": "c"},
                     key="k2")
    assert lease.find_resumable(experiment_id, "teacher", "k2", {"seed": "0"}) is None
    assert tracking.get_run(alive).info.status == "RUNNING"


def test_a_data_set_logged_by_two_runs_at_once_does_not_fail_the_run(store, monkeypatch):
    """Suite workers: the second insert of one data set breaks SQLite's unique constraint."""
    import mlflow
    import numpy as np

    real, calls = mlflow.log_input, []

    def collide_once(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise mlflow.exceptions.MlflowException("(sqlite3.IntegrityError) UNIQUE constraint failed: "
                                                    "datasets.experiment_id, datasets.name, datasets.digest")
        return real(*args, **kwargs)

    monkeypatch.setattr(mlflow, "log_input", collide_once)
    with tracking.run(tracking.resolve_experiment("datasets"), "d", "teacher") as run:
        run.log_dataset(np.zeros((4, 2)), np.zeros(4), "memory", "tiny-train", "training")
    logged = tracking.get_run(run.run_id)
    assert logged.info.status == "FINISHED" and [d.dataset.name for d in logged.inputs.dataset_inputs] == ["tiny-train"]
