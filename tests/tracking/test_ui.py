"""What a researcher sees in the MLflow UI: lineage links, provenance, run names, the experiment's
description, models under their role, the evaluation input, system metrics; and the UI itself,
in headless Chromium."""
import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import mlflow
import pytest
from conftest import TINY
from mlflow.tracking.context.registry import resolve_tags

from kdtrack import tracking
from kdtrack.analysis.analyze import analyze
from kdtrack.config import AnalyzeConfig, DistillConfig, TrainConfig, from_params
from kdtrack.contract import EXPERIMENT_KIND, NOTE, RESULT, STUDENT_RUN, TEACHER_RUN, TRAINING_KIND
from kdtrack.pipeline.stages import distill, run_name, train_teacher
from kdtrack.tracking.ui import describe, experiment_link, experiment_tags, link, linked

EXPERIMENT = "ui"


@pytest.fixture(scope="module")
def registered(store, monkeypatch_module):
    """A registered student, its teacher and its analysis; system metrics sampled every second."""
    monkeypatch_module.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
    student_id = distill(from_params(DistillConfig, {**TINY, "register": "true", "epochs": "4"}), EXPERIMENT)
    [analysis_id] = analyze(AnalyzeConfig(student_run_id=student_id, figures=False))
    student = tracking.get_run(student_id)  # after the analysis: with its link
    teacher = tracking.get_run(student.data.tags["kdtrack.teacher_run_id"])
    return {"student": student, "teacher": teacher, "analysis": tracking.get_run(analysis_id)}


def test_the_description_links_the_teacher_and_the_later_analysis(registered):
    student, teacher, analysis = registered["student"], registered["teacher"], registered["analysis"]
    experiment = student.info.experiment_id
    note = student.data.tags[NOTE]
    assert f"]({link(experiment, teacher.info.run_id)})" in note and note.startswith("**student**")
    assert f"]({link(experiment, analysis.info.run_id)})" in note  # added when the analysis was made
    assert "`train_size`=64" in note  # the overrides of the preset, spelled out (the value made inert)
    assert f"]({link(experiment, student.info.run_id)})" in analysis.data.tags[NOTE]
    assert teacher.data.tags[NOTE].startswith("**teacher**")


def test_a_link_is_added_once_per_label():
    runs = {"t1": ("1", "mnist_mlp·s0·teacher"), "s1": ("1", "mnist_mlp·s0·student")}
    note = describe("trial", "", {RESULT: "t1"}, runs.get)
    note = linked(note, {RESULT: "s1"}, runs.get)
    note = linked(note, {STUDENT_RUN: "s1", RESULT: "s1", TEACHER_RUN: "gone"}, runs.get)
    links = [line for line in note.splitlines() if line.startswith("- ")]
    assert links == ["- made: [mnist_mlp·s0·teacher](#/experiments/1/runs/t1) `t1`",
                     "- made: [mnist_mlp·s0·student](#/experiments/1/runs/s1) `s1`",
                     "- student: [mnist_mlp·s0·student](#/experiments/1/runs/s1) `s1`"]  # no link to a missing run
    assert "\n\n- made" in note  # a paragraph, then the list


def test_provenance_tags_are_present(registered):
    expected = resolve_tags()
    for run in registered.values():
        for tag in ("mlflow.user", "mlflow.source.name", "mlflow.source.type", "mlflow.source.git.commit"):
            assert run.data.tags.get(tag) == expected.get(tag), tag
        assert run.data.tags["mlflow.user"] and run.data.tags["mlflow.source.type"] == "LOCAL"


def test_run_names_are_short_and_unique_setting_first(registered):
    assert registered["student"].info.run_name.startswith("mnist_mlp·s0·student·")
    assert registered["teacher"].info.run_name.startswith("mnist_mlp·s0·teacher·")
    assert registered["analysis"].info.run_name.startswith("mnist_mlp·s0·analysis·")
    preset = from_params(DistillConfig, {"preset": "mnist_mlp"})
    assert run_name("student", preset) == "mnist_mlp·s0·student"
    # settings that differ by one override, or by a field the name does not show, get different names
    names = {run_name("student", dataclasses.replace(preset, **change))
             for change in ({}, {"lr": 1e-3}, {"lr": 3e-3}, {"temperature": 2.0}, {"seed": 1})}
    assert len(names) == 5 and all(len(name) <= 30 for name in names)
    # fields that do not change what is trained do not change the name either
    assert run_name("student", dataclasses.replace(preset, system_metrics=False, register=True)) == \
        run_name("student", preset)


def test_the_experiment_has_a_description_preset_tags_and_the_training_kind(registered):
    tags = tracking.client().get_experiment(registered["student"].info.experiment_id).tags
    assert tags["kdtrack.preset.mnist_mlp"] == "Table 7" and "kdtrack.role" in tags[NOTE]
    assert tags[EXPERIMENT_KIND] == TRAINING_KIND


def test_an_experiment_gains_the_training_kind_unless_it_has_a_kind(store):
    assert experiment_tags({}, {}, {})[EXPERIMENT_KIND] == "custom_model_development"  # as MLflow's web app spells it
    chosen = {EXPERIMENT_KIND: "genai_development", NOTE: "someone's"}
    assert EXPERIMENT_KIND not in experiment_tags(chosen, {}, {})  # a person's choice in the UI stays
    created = tracking.resolve_experiment("ui-kind-created")  # before any run is in it
    assert tracking.client().get_experiment(created).tags[EXPERIMENT_KIND] == TRAINING_KIND


def test_models_are_logged_by_role_registered_and_carry_their_own_metrics(registered):
    student, teacher = registered["student"], registered["teacher"]
    assert mlflow.pytorch.load_model(f"runs:/{teacher.info.run_id}/teacher") is not None
    assert mlflow.pytorch.load_model("models:/kdtrack-mnist_mlp-student/1") is not None
    [version] = tracking.client().search_model_versions("name = 'kdtrack-mnist_mlp-student'")
    assert version.run_id == student.info.run_id
    [logged] = mlflow.search_logged_models(experiment_ids=[student.info.experiment_id], output_format="list",
                                           filter_string=f"source_run_id = '{student.info.run_id}'")
    assert logged.name == "student"
    metrics = {metric.key: metric.value for metric in logged.metrics}
    assert metrics["test/acc"] == student.data.metrics["test/acc"] and "test/agreement" in metrics
    assert not any(key.startswith("teacher/") for key in metrics)  # the teacher's accuracies stay on the run


def test_the_test_split_is_an_evaluation_input(registered):
    inputs = registered["student"].inputs.dataset_inputs
    contexts = {i.dataset.name: next(t.value for t in i.tags if t.key == "mlflow.data.context") for i in inputs}
    assert contexts == {"mnist5k-train": "training", "mnist5k-test": "evaluation"}


def test_system_metrics_are_logged_unless_turned_off(registered, monkeypatch):
    # MLflow samples every 10 s by default, longer than a tiny run takes on an idle machine
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
    sampled = train_teacher(from_params(TrainConfig, {**TINY, "seed": "2", "epochs": "4"}), EXPERIMENT)
    assert any(name.startswith("system/") for name in tracking.get_run(sampled).data.metrics)
    quiet = train_teacher(from_params(TrainConfig, {**TINY, "seed": "1", "epochs": "4", "system_metrics": "false"}),
                          EXPERIMENT)
    assert not any(name.startswith("system/") for name in tracking.get_run(quiet).data.metrics)
    assert not [t for t in threading.enumerate() if t.name == "SystemMetricsMonitor"]  # stopped at run end


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def ui_server(store, registered):
    """`mlflow server` on the test store, on a free localhost port."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                               "--backend-store-uri", tracking.tracking_uri(), "--workers", "1"],
                              # MLflow 3's job runner (8 more processes) serves nothing the UI test opens
                              env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # generous: a loaded machine starts it slowly
            try:
                urllib.request.urlopen(f"{address}/health", timeout=5)
                break
            except OSError:
                assert server.poll() is None, "mlflow server exited"
                time.sleep(1)
        yield address
    finally:
        server.terminate()
        server.wait(60)


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_ui_shows_a_students_lineage_in_headless_chromium(registered, ui_server, tmp_path):
    student = registered["student"]
    experiment = student.info.experiment_id
    page = f"{ui_server}/{link(experiment, student.info.run_id)}"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=30000"]

    def chromium(*args: str) -> str:
        return subprocess.run(["chromium", *flags, *args], check=True, capture_output=True, text=True,
                              timeout=300).stdout

    dom = chromium("--dump-dom", page)
    assert student.info.run_name in dom
    assert f'href="{link(experiment, registered["teacher"].info.run_id)}"' in dom  # the description, rendered
    for name, address in (("student.png", page), ("runs.png", f"{ui_server}/#/experiments/{experiment}/runs")):
        chromium(f"--screenshot={tmp_path / name}", address)
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_address_kdtrack_prints_opens_the_runs_table_in_headless_chromium(registered, ui_server, tmp_path):
    """The experiment's address (the demo prints it) shows its training runs on first load: the
    student's row in the runs table, not the GenAI overview ("Detect issues"), which MLflow 3.17
    showed on `#/experiments/<id>` in a probe here even with the kind set."""
    student = registered["student"]
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=30000", "--dump-dom"]
    page = f"{ui_server}/{experiment_link(student.info.experiment_id)}"
    dom = subprocess.run(["chromium", *flags, page], check=True, capture_output=True, text=True, timeout=300).stdout
    assert student.info.run_name in dom and registered["teacher"].info.run_name in dom  # rows of the runs table
    assert "Detect issues" not in dom
