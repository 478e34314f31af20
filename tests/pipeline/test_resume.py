"""Interrupted runs resume (issue: reliability): SIGKILL and SIGTERM mid-run, then the same
command again, against a temporary store, through the `kdtrack` CLI in a subprocess.

Each test stands alone: it trains in an experiment of its own, so the runs other tests of the
module leave in the shared store are not its concern. Waits last as long as the process waited on
lives, not for a fixed time: the machine running the tests may be loaded."""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from kdtrack import tracking

KDTRACK = str(Path(sys.executable).parent / "kdtrack")
# 64 points, batch 16: 4 steps per epoch, 600 steps; a resume checkpoint every 40 steps.
LONG = ["-P", "preset=mnist_mlp", "-P", "train_size=64", "-P", "width=64", "-P", "batch_size=16",
        "-P", "epochs=150", "-P", "checkpoint_every=40", "-P", "log_every=10"]


def start(experiment: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([KDTRACK, "train-teacher", "--experiment", experiment, *LONG, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def checkpointed_runs(experiment: str) -> list:
    """The runs of `experiment` that have written a resume checkpoint."""
    found = tracking.client().get_experiment_by_name(experiment)
    return tracking.search_all([found.experiment_id], "tags.`kdtrack.resume_checkpoint` != ''") if found else []


def wait_for_a_checkpoint(process: subprocess.Popen, experiment: str) -> str:
    """The run id, once the run `process` trains has a resume checkpoint; it must come while the
    process still trains."""
    while not (runs := checkpointed_runs(experiment)):
        assert process.poll() is None, process.stderr.read()[-2000:]
        time.sleep(0.05)
    return runs[0].info.run_id


def interrupt_after_first_checkpoint(process: subprocess.Popen, experiment: str, sig: int) -> str:
    run_id = wait_for_a_checkpoint(process, experiment)
    time.sleep(random.Random(int(sig)).uniform(0, 0.5))  # then at a step of chance, well before the end
    process.send_signal(sig)
    _, err = process.communicate()  # it ends by the signal or, were that ignored, at the end of training
    # The signal ended it, mid-run: not the end of training (send_signal skips a process already gone).
    assert process.returncode != 0 and tracking.get_run(run_id).info.status != "FINISHED", err[-2000:]
    if sig == signal.SIGTERM:  # it says which run stopped and how to go on, not only click's "Aborted!"
        assert f"teacher run {run_id} stopped (KILLED); the same command resumes it" in err, err[-2000:]
    return run_id


def finished_weights(run_id: str) -> dict:
    return tracking.load_state(run_id, "checkpoints/final.pt")


@pytest.fixture(scope="module")
def reference(store):
    """The same training, uninterrupted, in an experiment of its own, in-process (the tests below take real
    signals through the CLI): a first try is stopped by SIGTERM to this process once it has a resume
    checkpoint, then the training runs again with resume=false, from the start. The ids of both."""
    from kdtrack.config import TrainConfig, from_params
    from kdtrack.pipeline.stages import train_teacher

    params = dict(pair.split("=", 1) for pair in LONG[1::2])

    def terminate_after_the_first_checkpoint(role, values, step):
        if step == 50:  # checkpoints every 40 steps
            os.kill(os.getpid(), signal.SIGTERM)  # recorded, and acted on at the next safe point

    with pytest.raises(KeyboardInterrupt):
        train_teacher(from_params(TrainConfig, params), "straight",
                      context=tracking.RunContext().hooked(terminate_after_the_first_checkpoint))
    [stopped] = checkpointed_runs("straight")
    return stopped.info.run_id, train_teacher(from_params(TrainConfig, {**params, "resume": "false"}), "straight")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_an_interrupted_run_resumes_where_it_stopped(store, reference, sig):
    experiment = f"resume-{sig.name}"
    process = start(experiment)
    run_id = interrupt_after_first_checkpoint(process, experiment, sig)
    status = tracking.get_run(run_id).info.status
    assert status == ("RUNNING" if sig == signal.SIGKILL else "KILLED")  # SIGKILL leaves no chance to mark it
    if sig == signal.SIGKILL:  # its lease would lapse within a minute and a half (tests/tracking/test_lease.py): now
        tracking.client().set_tag(run_id, "kdtrack.lease_until", "0")

    again = subprocess.run([KDTRACK, "train-teacher", "--experiment", experiment, *LONG],
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming teacher run {run_id}" in again.stderr and again.stdout.split()[-1] == run_id
    run = tracking.get_run(run_id)
    assert run.info.status == "FINISHED"
    steps = [m.step for m in tracking.client().get_metric_history(run_id, "train/loss")]
    assert sorted(steps) == list(range(10, 601, 10))  # none twice, none missing
    _, reference = reference
    ours, theirs = finished_weights(run_id), finished_weights(reference)
    for name in theirs:
        assert torch.equal(ours[name], theirs[name]), name  # bit for bit on CPU
    trajectory = tracking.load_table(run_id, "eigen/trajectory.parquet")
    assert trajectory.equals(tracking.load_table(reference, "eigen/trajectory.parquet"))  # rows kept across the kill
    history = {m.step: m.value for m in tracking.client().get_metric_history(reference, "train/loss")}
    assert {m.step: m.value for m in tracking.client().get_metric_history(run_id, "train/loss")} == history


def test_resume_false_starts_a_new_run(reference):
    stopped, fresh = reference
    assert fresh != stopped and tracking.get_run(stopped).info.status == "KILLED"  # left as it was
    steps = [m.step for m in tracking.client().get_metric_history(fresh, "train/loss")]
    assert sorted(steps) == list(range(10, 601, 10))  # from the start


def test_a_corrupt_checkpoint_or_table_is_refused_with_its_path(store):
    from conftest import TINY

    from kdtrack.config import TrainConfig, from_params
    from kdtrack.errors import UserError
    from kdtrack.pipeline.stages import train_teacher

    run_id = train_teacher(from_params(TrainConfig, TINY), "corrupt")
    root = Path(tracking.get_run(run_id).info.artifact_uri.removeprefix("file://"))
    for artifact, load in (("checkpoints/final.pt", tracking.load_state),
                           ("confidences/train.parquet", tracking.load_table)):
        load(run_id, artifact)  # intact: loads
        data = bytearray((root / artifact).read_bytes())
        data[len(data) // 2] ^= 0xFF  # one flipped byte
        (root / artifact).write_bytes(bytes(data))
        with pytest.raises(UserError, match=f"corrupt artifact '{artifact}' of run {run_id}"):
            load(run_id, artifact)


# One uvicorn worker, without MLflow 3's job runner (8 huey consumer processes for its GenAI jobs):
# tracking needs neither. The default 4 workers, each importing mlflow, under a supervisor that
# restarts a worker slow to answer its health check, restarted them over and over on a loaded
# 2-core machine (the server had not answered after 9 minutes); the job runner took the cores too.
TRACKING_ONLY = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def start_server(folder: Path, port: int) -> subprocess.Popen:
    import urllib.request

    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                               "--workers", "1", "--backend-store-uri", f"sqlite:///{folder}/server.db",
                               "--artifacts-destination", str(folder / "artifacts")],
                              env={**os.environ, **TRACKING_ONLY}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    while server.poll() is None:  # however long it takes to start on a loaded machine
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return server
        except OSError:
            time.sleep(0.5)
    stop_server(server)  # its workers may outlive it
    raise AssertionError(f"mlflow server exited with status {server.returncode} before it answered")


def stop_server(server: subprocess.Popen) -> None:
    try:
        os.killpg(server.pid, signal.SIGKILL)  # the server and its workers
    except ProcessLookupError:  # stopped already
        pass
    server.wait(30)


@pytest.mark.slow
def test_a_tracking_server_that_restarts_mid_run_loses_nothing(store, tmp_path, monkeypatch):
    """Its own server and store; `store` only clears the environment, as for every test here."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    server = start_server(tmp_path, port)
    # MLflow retries a refused call after 4, 8, 16, 32, 64 s (backoff factor 2): a call refused during
    # the outage can sleep on for up to as long again after the restart. At factor 1 (2, 4, ... 32 s)
    # that overshoot halves, and a call still has a minute of retries, then kdtrack's own budget.
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
    longer = [*LONG[:-6], "-P", "epochs=250", "-P", "log_every=10"]  # 1000 steps: training outlasts the outage
    process = subprocess.Popen([KDTRACK, "train-teacher", "--experiment", "outage", *longer], env=env, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    try:  # a failure leaves neither the training nor a server behind
        wait_for_a_checkpoint(process, "outage")  # once training is under way, take the server away
        stop_server(server)
        time.sleep(3)
        server = start_server(tmp_path, port)
        out, err = process.communicate()  # however long 1000 steps and MLflow's retries take here
        assert process.returncode == 0, err[-3000:]
        run_id = out.split()[-1]
        run = tracking.get_run(run_id)
        assert run.info.status == "FINISHED"
        steps = sorted(m.step for m in tracking.client().get_metric_history(run_id, "train/loss"))
        assert steps == list(range(10, 1001, 10))  # every log step arrived, none twice
        tracking.load_state(run_id, "checkpoints/final.pt")
    finally:
        process.kill()  # no-op once it has ended
        process.wait()
        stop_server(server)


def test_a_signal_while_a_run_is_ended_is_honoured_once_its_status_is_written(store, monkeypatch):
    """The race behind a once-flaky kill test: Ctrl-C inside `mlflow.end_run`, after the run left
    MLflow's active-run stack and before its status was written, used to leave it RUNNING."""
    from conftest import TINY
    from mlflow.tracking import MlflowClient

    from kdtrack.config import TrainConfig, from_params
    from kdtrack.pipeline.stages import train_teacher

    write_status = MlflowClient.set_terminated

    def interrupted(self, run_id, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return write_status(self, run_id, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "set_terminated", interrupted)
    with pytest.raises(KeyboardInterrupt, match="after run .* ended"):
        train_teacher(from_params(TrainConfig, TINY), "ending")
    monkeypatch.undo()
    (run,) = tracking.search_all([tracking.client().get_experiment_by_name("ending").experiment_id], "")
    assert run.info.status == "FINISHED" and "kdtrack.failure" not in run.data.tags
