"""A store that fails never hangs a run (issue 16, item 3): metrics and artifacts queue apart, all
retries of a run share one budget, a stop cuts the wait short, a second signal leaves at once, and
temporary files go on every way out.

Waits here are hang guards, not speed tests: each is minutes long, where the code before this
issue waited 63 s per failed call, serially, and deferred signals without end."""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
import torch

from kdtrack import tracking
from kdtrack.tracking.uploader import Uploader, sweep_scratch

HANG_GUARD = 300  # seconds; far beyond what any of these needs, even on a loaded machine


def refused():
    raise OSError("read-only file system")


def drained(uploader: Uploader, **kwargs) -> list[str]:
    """`uploader.drain(**kwargs)`, on a thread that must end before the hang guard."""
    result = []
    waiter = threading.Thread(target=lambda: result.append(uploader.drain(**kwargs)), daemon=True)
    waiter.start()
    waiter.join(HANG_GUARD)
    assert not waiter.is_alive(), "drain hung"
    return result[0]


def test_metrics_flow_while_an_artifact_upload_hangs():
    uploader = Uploader(budget=2)
    release, sent = threading.Event(), threading.Event()
    uploader.submit("artifact big.pt", release.wait)  # a store that does not answer
    uploader.submit("metrics up to step 10", sent.set, "metrics")
    assert sent.wait(HANG_GUARD), "metrics waited behind the artifact"
    release.set()
    assert drained(uploader) == []


def test_the_retry_budget_bounds_the_whole_run_not_each_call():
    uploader = Uploader(budget=2)
    attempts, sent = [], threading.Event()
    recovered = iter([OSError("server restarting"), OSError("server restarting"), None])

    def flaky():
        if error := next(recovered):
            raise error
        sent.set()

    def failing():
        attempts.append("failing")
        refused()

    uploader.submit("metrics up to step 10", flaky, "metrics")  # within the budget: retried, not lost
    assert sent.wait(HANG_GUARD)  # after 0.5 + 1 s of the budget
    for index in range(20):
        uploader.submit(f"artifact a{index}.pt", failing)
    lost = drained(uploader)
    assert lost == [f"artifact a{index}.pt: read-only file system" for index in range(20)]
    # Retries stopped once the 2 s were spent: backoff of 0.5, 1, then what was left fits in at
    # most a handful of retries in all; every later call was tried once. Before: 8 tries each.
    assert attempts.count("failing") <= 20 + 5 and uploader.budget_left == 0


def test_both_lanes_waiting_out_one_outage_pay_for_it_once():
    uploader = Uploader(budget=1.5)
    assert uploader._allowance(1.0) == 1.0  # the metrics lane waits a second
    assert uploader._allowance(1.0) == pytest.approx(1.0, abs=0.2)  # the artifacts lane, in the same second
    assert uploader.budget_left > 0.25  # about 0.5 left, not -0.5


@pytest.mark.parametrize("how", ["stopping", "leaving"])
def test_a_stop_cuts_retries_and_the_wait(monkeypatch, how):
    monkeypatch.setattr(Uploader, "STOP_SECONDS", 1.0)
    uploader = Uploader(budget=10**6)  # without the stop, retries would outlast the test
    never, sent = threading.Event(), threading.Event()
    uploader.submit("artifact refused.pt", refused)
    uploader.submit("artifact stuck.pt", never.wait)
    uploader.submit("metrics up to step 5", sent.set, "metrics")
    assert sent.wait(HANG_GUARD)
    lost = drained(uploader, **{how: lambda: True})
    assert "artifact stuck.pt: not sent before the stop" in lost
    if how == "stopping":  # given STOP_SECONDS, the refused upload was tried once, then given up
        assert "artifact refused.pt: read-only file system" in lost
    assert not any(entry.startswith("metrics") for entry in lost) and "artifact stuck.pt" not in uploader.lost


SECOND_SIGNAL = """
import os, signal, sys, time
from kdtrack.interrupts import leaving, stop_requests

number = int(sys.argv[1])
with stop_requests() as stop:
    for expected in (1, 2):
        os.kill(os.getpid(), number)
        while len(stop) < expected:
            time.sleep(0.01)  # the handler runs between bytecodes
        print(len(stop), leaving(), flush=True)
    while True:  # a block that never reaches a safe point: the watchdog must end it
        time.sleep(0.05)
"""


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_a_second_signal_ends_the_process_whatever_it_does(number):
    process = subprocess.run([sys.executable, "-c", SECOND_SIGNAL, str(int(number))], capture_output=True,
                             text=True, timeout=HANG_GUARD)
    # The first signal was only recorded; the second made the process leave, with the shell's code.
    assert process.stdout.split("\n")[:2] == ["1 False", "2 True"], process.stderr[-2000:]
    assert process.returncode == 128 + number, process.stderr[-2000:]


def test_scratch_folders_go_with_their_run_or_after_their_process(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left_by_a_killed_process = tmp_path / f"kdtrack-scratch-{socket.gethostname()}-{int(dead.stdout)}-abc_1234"
    (left_by_a_killed_process / "tmpx").mkdir(parents=True)
    (left_by_a_killed_process / "checkpoint-1.pt").write_bytes(b"x" * 1000)
    unrelated = tmp_path / "kdtrack-notes"
    unrelated.mkdir()
    # a user's folder of the old scratch shape (a store named for this host and a dead pid) stays
    theirs = tmp_path / f"kdtrack-{socket.gethostname()}-{int(dead.stdout)}-store"
    theirs.mkdir()
    uploader = Uploader()
    folder = uploader.scratch()  # the first scratch folder of a process sweeps the dead ones'
    assert folder.parent == tmp_path and str(os.getpid()) in folder.name
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([folder.name, "kdtrack-notes", theirs.name])
    (folder / "checkpoint-2.pt").write_bytes(b"y")
    sweep_scratch()  # a live process's folder stays
    assert folder.exists()
    uploader.drain()
    uploader.remove_scratch()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["kdtrack-notes", theirs.name])


@pytest.fixture
def unwritable(store, tmp_path, monkeypatch):
    """An experiment whose artifact store refuses every write (below a regular file: chmod would
    not stop root), and a temporary folder of the test's own."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    blocker = tmp_path / "a-file"
    blocker.write_text("artifacts cannot go below a file")
    name = f"unwritable-{tmp_path.name}"
    tracking.client().create_experiment(name, artifact_location=(blocker / "artifacts").as_uri())
    return name, temporary


def only_run(experiment: str):
    (run,) = tracking.search_all([tracking.client().get_experiment_by_name(experiment).experiment_id], "")
    return run


def test_a_store_that_refuses_artifacts_fails_the_run_in_one_line_and_keeps_the_checkpoint(unwritable, monkeypatch):
    from conftest import TINY

    from kdtrack.config import TrainConfig, from_params
    from kdtrack.errors import UserError
    from kdtrack.pipeline.stages import train_teacher

    experiment, temporary = unwritable
    monkeypatch.setattr(Uploader, "BUDGET_SECONDS", 2.0)
    with pytest.raises(UserError, match="could not be written to the tracking store") as caught:
        train_teacher(from_params(TrainConfig, TINY), experiment)
    message = str(caught.value)
    assert "\n" not in message and "the first: artifact " in message and "Not a directory" in message
    kept = Path(message.rsplit("the last checkpoint is kept at ", 1)[1].split(";")[0])
    assert kept.parent.parent.name == "kdtrack-unsaved" and 1 <= torch.load(kept, weights_only=True)["step"] <= 4
    run = only_run(experiment)
    assert run.info.status == "FAILED" and "not recorded: artifact " in run.data.tags["kdtrack.failure"]
    assert list(temporary.rglob("kdtrack-*")) == []  # no scratch folder, no checkpoint file left


def test_ctrl_c_kills_a_run_whose_store_refuses_artifacts_without_waiting_for_retries(unwritable, monkeypatch):
    """The first signal: the loop stops after its step and a checkpoint, what is queued is tried
    once, the run is marked KILLED, and the checkpoint is kept on local disk."""
    from conftest import TINY

    from kdtrack.config import TrainConfig, from_params
    from kdtrack.errors import UserError
    from kdtrack.pipeline.stages import train_teacher

    experiment, temporary = unwritable
    monkeypatch.setattr(Uploader, "BUDGET_SECONDS", 10.0**6)  # without the stop, it would retry for days
    hook = tracking.RunContext().hooked(lambda role, values, step: step == 1 and os.kill(os.getpid(), signal.SIGINT))
    with pytest.raises(UserError, match="the last checkpoint is kept at") as caught:
        train_teacher(from_params(TrainConfig, {**TINY, "log_every": "1"}), experiment, context=hook)
    assert "\n" not in str(caught.value)
    run = only_run(experiment)
    failure = run.data.tags["kdtrack.failure"]
    assert run.info.status == "KILLED" and failure.startswith("KeyboardInterrupt: stopped by signal 2 after step 1")
    assert "not recorded: " in failure
    assert list(temporary.rglob("kdtrack-*")) == []
