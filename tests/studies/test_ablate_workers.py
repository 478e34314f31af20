"""Two `kdtrack ablate` workers on one PostgreSQL database (a throwaway cluster started here):
every grid point runs to completion exactly once, also when one worker is killed mid-trial, on a
machine kept busy by other processes."""
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from conftest import TINY

BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
KDTRACK = str(Path(sys.executable).parent / "kdtrack")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not BIN or not shutil.which("runuser"),
                                 reason="PostgreSQL server programs (/usr/lib/postgresql/*/bin) not installed")]


def as_postgres(*args: str) -> list[str]:
    return (["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []) + list(args)


@pytest.fixture(scope="module")
def postgres():
    folder = Path(tempfile.mkdtemp(prefix="kdtrack-pg-"))  # not under pytest's 0700 root: postgres must enter it
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = folder / "data"
    subprocess.run(as_postgres(f"{BIN[-1]}/initdb", "-D", str(data), "-U", "postgres", "--auth=trust"),
                   check=True, capture_output=True)
    subprocess.run(as_postgres(f"{BIN[-1]}/pg_ctl", "-D", str(data), "-l", str(folder / "log"), "-w", "-o",
                               f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"),
                   check=True, capture_output=True)
    import psycopg2

    connection = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
    connection.autocommit = True
    for name in ("mlflow", "optuna"):  # one database each: they cannot share one
        connection.cursor().execute(f"CREATE DATABASE {name}")
    connection.close()
    yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}"
    subprocess.run(as_postgres(f"{BIN[-1]}/pg_ctl", "-D", str(data), "-m", "immediate", "stop"), capture_output=True)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def busy_machine():
    """Two processes spinning, as on a loaded CI machine: the test once hung there, because the worker was
    killed after creating its trial and before its first heartbeat, a moment load stretches. The
    fixture's value stops them: once that moment has passed, the load only slows the other tests."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]

    def stop():
        for spinner in spinners:
            spinner.kill()
            spinner.wait()

    try:
        yield stop
    finally:
        stop()


def lapse_leases_of(pid: int) -> None:
    """The leases of the runs a killed worker held would lapse within a minute and a half
    (tests/tracking/test_lease.py): now. Its trial's retry, a minute later (Optuna's stale check),
    then resumes or reaps them at once rather than waiting out the rest."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    experiment = client.get_experiment_by_name("workers")
    for run in client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'") if experiment else []:
        if run.data.tags.get("kdtrack.lease_owner", "").endswith(f":{pid}"):
            client.set_tag(run.info.run_id, "kdtrack.lease_until", "0")


def test_two_workers_share_a_grid_and_survive_a_killed_worker(postgres, busy_machine, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    tracking_uri, storage = f"{postgres}/mlflow", f"{postgres}/optuna"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    MlflowClient().search_experiments()  # create MLflow's tables once, before two workers race to
    optuna.create_study(study_name="workers", storage=storage, direction="maximize")
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    command = [KDTRACK, "ablate", "--experiment", "workers", "--knob", "batch_size", "--values", "16,32",
               "--seeds", "2", "--storage", storage, "-P", "study=workers", "-P", "heartbeat=2", "-P", "figures=false",
               *[f"-P{k}={v}" for k, v in TINY.items()]]
    workers = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for _ in range(2)]
    deadline = time.monotonic() + 300
    # One storage for the whole loop: each load_study given a URL opens an engine of its own, whose
    # connections outlive it, and ten polls a second exhausted PostgreSQL's 100 connections.
    watched = optuna.load_study(study_name="workers", storage=optuna.storages.RDBStorage(storage))
    while time.monotonic() < deadline:  # kill the first worker while both are inside a trial
        running = watched.get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        if len(running) == 2:
            workers[0].send_signal(signal.SIGKILL)
            workers[0].wait()
            busy_machine()  # the kill came inside a trial, under load: the rest needs none
            lapse_leases_of(workers[0].pid)
            break
        ended = [w for w in workers if w.poll() is not None]
        assert not ended, ended[0].stderr.read()[-2000:]
        time.sleep(0.1)
    else:
        pytest.fail("the two workers never ran trials at the same time")
    _, err = workers[1].communicate(timeout=1800)  # a loaded machine is slow; a killed trial waits a minute
    assert workers[1].returncode == 0, err[-3000:]

    trials = optuna.load_study(study_name="workers", storage=storage).get_trials()
    complete = sorted((t.params["value"], t.params["seed"]) for t in trials
                      if t.state == optuna.trial.TrialState.COMPLETE)
    assert complete == [(16, 0), (16, 1), (32, 0), (32, 1)]  # each grid point exactly once
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(failed) == 1 and "failure" not in failed[0].user_attrs  # the killed worker's trial, retried
    # (killed before it chose a point, its retry finds the point done and stops as PRUNED)
    assert all(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL,
                           optuna.trial.TrialState.PRUNED) for t in trials)
