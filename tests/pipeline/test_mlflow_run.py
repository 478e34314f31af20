"""The entry points through `mlflow run . --env-manager local` (about 15 s each): one path through
this front-end. The data sets themselves (Tiny-ImageNet included, as `-P dataset=tinyimagenet`
picks its preset) are tested in-process, in tests/data/test_paper_data.py."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def mlflow_run(entry: str, params: dict, env, experiment: str = "e2e") -> subprocess.CompletedProcess:
    """Each test has an experiment of its own: what it finds there, it made, in any test order."""
    return subprocess.run(command(entry, params, experiment), capture_output=True, text=True, env=env, timeout=600)


def command(entry: str, params: dict, experiment: str = "e2e") -> list[str]:
    args = [sys.executable, "-m", "mlflow", "run", str(ROOT), "-e", entry, "--env-manager", "local",
            "--experiment-name", experiment]
    for key, value in params.items():
        args += ["-P", f"{key}={value}"]
    return args


def together(env, *entries: tuple[str, dict]) -> list[subprocess.CompletedProcess]:
    """`mlflow run`s that depend on nothing but what is finished, started at once: each costs
    about 15 s of start-up, most of it waiting on imports, which overlap."""
    started = [subprocess.Popen(command(entry, params), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env) for entry, params in entries]
    done = []
    for process in started:
        out, err = process.communicate(timeout=600)
        done.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return done


@pytest.fixture(scope="module")
def env(store):
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


def test_train_teacher_distill_analyze(store, env):
    teacher = mlflow_run("train_teacher", TINY, env)
    assert teacher.returncode == 0, teacher.stderr[-2000:]
    student = mlflow_run("distill", TINY, env)
    assert student.returncode == 0, student.stderr[-2000:]
    assert "reusing finished teacher run" in student.stderr

    client = MlflowClient()
    experiment = client.get_experiment_by_name("e2e").experiment_id
    [student_run] = client.search_runs([experiment], "tags.`kdtrack.role` = 'student'")
    assert student_run.data.params["train_size"] == "64"
    assert student_run.data.tags["mlflow.parentRunId"]  # nested under the `mlflow run` launcher
    launcher = student_run.data.tags["mlflow.parentRunId"]
    # the id `mlflow run` printed; the analysis and the switch both start from the finished student
    analyze = {"student_run_id": launcher, "figures": "false"}
    switch = {**TINY, "switch_to": "onehot", "switch_at": "0.5", "from_run_id": launcher}
    analysis, switched = together(env, ("analyze", analyze), ("switch", switch))
    assert analysis.returncode == 0, analysis.stderr[-2000:]
    [analysis_run] = client.search_runs([experiment], "tags.`kdtrack.role` = 'analysis'")
    assert analysis_run.data.tags["kdtrack.student_run_id"] == student_run.info.run_id
    assert "test/slope_bottom25" in analysis_run.data.metrics

    assert switched.returncode == 0, switched.stderr[-2000:]
    [switch_run] = client.search_runs([experiment], "tags.`kdtrack.switch_to` = 'onehot'")
    assert switch_run.data.tags["kdtrack.from_run_id"] == student_run.info.run_id
    assert switch_run.data.params["switch_at"] == "0.5" and switch_run.data.metrics["distill_weight"] == 0


def test_bad_input_fails_before_training_with_one_line(store, env):
    result = mlflow_run("distill", {**TINY, "temperature": "-2"}, env, "e2e-bad")
    assert result.returncode != 0
    [line] = [text for text in result.stderr.splitlines() if text.startswith("kdtrack: error:")]
    assert "temperature=-2.0" in line and "> 0" in line
    client = MlflowClient()
    experiment = client.get_experiment_by_name("e2e-bad").experiment_id
    assert not client.search_runs([experiment], "attributes.status = 'RUNNING'")
