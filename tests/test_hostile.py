"""Hostile and unlucky input (issue 30), kept so that none of it comes back. Cases that belong to
one layer live beside its tests and are listed here:
- a crafted CIFAR batch runs nothing: tests/data/test_data.py (restricted unpickler);
- a tokenizer folder with custom code runs nothing: tests/data/test_paper_data.py;
- depth=1000000 and width=1e10 are refused by arithmetic: tests/primitives/test_config.py;
- `suite run --workers 1000` is refused before a fork: tests/studies/test_launch.py;
- a checkpoint never overwrites the one the resume tag names: tests/tracking/test_storage.py;
- a finished run drops a stale failure tag: tests/tracking/test_lifecycle.py;
- SIGTERM (a scheduler's preemption) ends a training run KILLED, resumable: tests/pipeline/test_resume.py.
The cases below cross layers: user text that reaches Markdown a browser renders; a full disk or a
store that refuses writes mid-run; metrics lost before a resume; the reuse key's snapshot_every."""
import hashlib
import os

import pytest
from click.testing import CliRunner
from mlflow.entities import Metric, Param

from kdtrack import code_version, tracking
from kdtrack.cli.main import main
from kdtrack.contract import CODE_VERSION, NOTE, ROLE, SUITE
from kdtrack.markdown import inert, inert_html
from kdtrack.tracking import ui

SCRIPT = "<script>alert('kd')</script>"


def test_inert_text_shows_markup_as_typed():
    assert inert(f"x{SCRIPT}[a](b)`c`\\") == "x\\<script>alert('kd')\\</script>\\[a\\](b)\\`c\\`\\\\"
    assert inert_html(f"{SCRIPT} [0.1, 0.2]") == "\\<script>alert('kd')\\</script> [0.1, 0.2]"


def test_report_md_escapes_a_script_in_an_experiment_name(store, tmp_path):
    client = tracking.client()
    experiment_id = client.create_experiment(f"exp{SCRIPT}")
    run_id = client.create_run(experiment_id, tags={ROLE: "teacher", CODE_VERSION: code_version()}).info.run_id
    client.log_batch(run_id, params=[Param("preset", "mnist_mlp"), Param("seed", "0")],
                     metrics=[Metric("test/acc", 0.5, 0, 0)])
    client.set_terminated(run_id, "FINISHED")
    result = CliRunner().invoke(main, ["report", "--experiment", f"exp{SCRIPT}", "--format", "md",
                                       "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "report.md").read_text()
    assert "exp\\<script>" in text and "<script>" not in text.replace("\\<script>", "")


def test_run_descriptions_make_names_inert():
    note = ui.linked("", {"kdtrack.teacher_run_id": "a" * 32}, lambda run_id: ("1", f"t]({SCRIPT})"))
    assert "\\<script>" in note and "t\\](" in note
    tags = ui.experiment_tags({}, {}, {SUITE: f"s`{SCRIPT}/setting"})
    assert "\\`\\<script>" in tags[NOTE]


def test_a_spec_file_too_big_or_too_deep_is_one_line(tmp_path):
    import pytest

    from kdtrack.errors import UserError
    from kdtrack.studies.suite import load

    huge = tmp_path / "seeds.yaml"
    huge.write_text("experiment: x\nsettings:\n  - name: a\n    preset: mnist_mlp\n    seeds:\n"
                    + "".join(f"      - {seed}\n" for seed in range(100_000)))
    with pytest.raises(UserError, match=r"seeds.yaml' is [\d,]+ bytes; allowed: at most 1,000,000"):
        load(str(huge))
    deep = tmp_path / "deep.yaml"
    deep.write_text("experiment: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(UserError, match=r"deep.yaml' nests too deep to read") as refused:
        load(str(deep))
    assert "\n" not in str(refused.value)


def test_a_5000_character_experiment_name_is_one_line(store):
    import pytest

    from kdtrack.errors import UserError

    with pytest.raises(UserError, match=r"has 5000 characters; allowed: at most 256"):
        tracking.resolve_experiment("x" * 5000)


def test_theory_with_a_huge_instance_is_refused_before_it_runs():
    import pytest

    from kdtrack.config import TheoryConfig, from_params
    from kdtrack.errors import UserError

    with pytest.raises(UserError, match=r"n=100000 is out of range; allowed: an integer from 2 to 2000"):
        from_params(TheoryConfig, {"n": "100000", "p": "200000"})
    with pytest.raises(UserError, match=r"p=100000000 is out of range; allowed: p \* steps \* classes small enough"):
        from_params(TheoryConfig, {"p": "100000000"})


def test_a_suite_task_done_by_other_code_is_not_done(tmp_path):
    """Issue 30, case 8: `suite` called a task done from its params alone, while training, whose
    reuse key holds the code version, would train it again."""
    from types import SimpleNamespace

    from kdtrack.config import key_params
    from kdtrack.studies import suite as suites

    path = tmp_path / "one.yaml"
    path.write_text("experiment: x\nsettings:\n  - {name: a, preset: mnist_mlp}\n")
    [task] = suites.load(str(path)).tasks

    def student(version):
        return SimpleNamespace(data=SimpleNamespace(params=key_params(task.config()), tags={CODE_VERSION: version}),
                               info=SimpleNamespace(status="FINISHED", start_time=1))

    assert suites.task_state([student(code_version())], task) == "done"
    assert suites.task_state([student("0ldc0de0ld00")], task) == "missing"


@pytest.mark.slow
def test_two_analyses_of_one_student_started_together_write_one_run(lineage):
    """Issue 30, case 6: both wrote a run, and the report then said the second was 'trained again
    (force)'. Now one writes; the other waits for it, or withdraws its run, and reuses it."""
    import subprocess
    import sys
    from pathlib import Path

    from kdtrack.contract import STUDENT_RUN

    kdtrack = str(Path(sys.executable).parent / "kdtrack")
    command = [kdtrack, "analyze", "-P", f"student_run_id={lineage.student}", "-P", "bins=33", "-P", "figures=false"]
    both = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [process.communicate() for process in both]
    assert [process.returncode for process in both] == [0, 0], [err[-2000:] for _, err in outputs]
    [first], [second] = (out.split()[-1:] for out, _ in outputs)
    assert first == second  # the same analysis run, reused by the one that did not write it
    experiment = tracking.get_run(lineage.student).info.experiment_id
    written = [r for r in tracking.search_all([experiment], "tags.`kdtrack.role` = 'analysis'")
               if r.data.tags.get(STUDENT_RUN) == lineage.student and r.data.params.get("bins") == "33"]
    assert [r.info.run_id for r in written] == [first] and written[0].info.status == "FINISHED"


def test_a_roberta_folder_whose_weights_are_a_pickle_is_one_line(tmp_path):
    """Issue 30, point 10: an UnpicklingError traceback; and the pickle's code never runs."""
    import pickle

    from transformers import RobertaConfig

    from kdtrack.errors import UserError
    from kdtrack.models.roberta import _from_pretrained

    class Planted:
        def __reduce__(self):
            return (open, (str(tmp_path / "ran"), "w"))

    RobertaConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=1, intermediate_size=64,
                  vocab_size=100).save_pretrained(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(pickle.dumps(Planted()))
    with pytest.raises(UserError, match=r"could not be loaded as a RoBERTa model") as refused:
        _from_pretrained(str(tmp_path), 2)
    assert "\n" not in str(refused.value) and not (tmp_path / "ran").exists()


def disk_full_from(first: str, armed):
    """MLflow's local artifact writes, torn by a full disk (10 bytes, then ENOSPC) from the file
    named `first` on, while `armed` is set: the real upload path, through MLflow's own temporary
    name, only the bytes refused."""
    import errno

    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    write = LocalArtifactRepository._write_to_destination_path

    def torn(self, name, writer, artifact_path=None, finalize_temp_path=None):
        if os.path.basename(name) == first:
            armed.set()

        def full(handle):
            handle.write(b"x" * 10)
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(self, name, full if armed.is_set() else writer, artifact_path, finalize_temp_path)
    return torn


def test_a_full_disk_mid_run_is_one_line_leaves_no_torn_file_and_resumes(store, monkeypatch, tmp_path):
    """Issue 30, case 5: 23 tracebacks, a 0-byte step file in the store, a run RUNNING forever."""
    import tempfile
    import threading
    from pathlib import Path

    from conftest import TINY
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    from kdtrack.config import TrainConfig, from_params
    from kdtrack.errors import UserError
    from kdtrack.pipeline.stages import train_teacher
    from kdtrack.tracking.uploader import Uploader

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the scratch folders, to check they went
    monkeypatch.setattr(Uploader, "BUDGET_SECONDS", 1.0)
    armed, write = threading.Event(), LocalArtifactRepository._write_to_destination_path
    monkeypatch.setattr(LocalArtifactRepository, "_write_to_destination_path", disk_full_from("step_4.pt.sha256",
                                                                                                armed))
    config = from_params(TrainConfig, {**TINY, "epochs": "4", "log_every": "1", "checkpoint_every": "2"})
    with pytest.raises(UserError, match="No space left on device") as refused:
        train_teacher(config, "hostile-full-disk")
    message = str(refused.value)
    [run] = tracking.search_all([tracking.experiment_id("hostile-full-disk")], "")
    assert "\n" not in message and f"teacher run {run.info.run_id}" in message
    assert tracking.tracking_uri() in message and "the same command resumes it" in message
    assert run.info.status == "FAILED" and run.data.tags["kdtrack.resume_checkpoint"] == "checkpoints/step_2.pt"
    stored = Path(run.info.artifact_uri.removeprefix("file://"))
    files = {p.relative_to(stored).as_posix(): p for p in stored.rglob("*") if p.is_file()}
    assert files and not [name for name in files if ".artifact.uploading." in name]
    for name, path in files.items():  # no torn file: each is whole, as its checksum says
        if not name.endswith(".sha256"):
            assert hashlib.sha256(path.read_bytes()).hexdigest() == files[f"{name}.sha256"].read_text()
    assert list(tmp_path.glob("kdtrack-scratch-*")) == []
    # the disk has room again: the same command resumes the run and finishes it
    monkeypatch.setattr(LocalArtifactRepository, "_write_to_destination_path", write)
    assert train_teacher(config, "hostile-full-disk") == run.info.run_id
    assert tracking.get_run(run.info.run_id).info.status == "FINISHED"
    assert [step for step, _ in tracking.metric_history(run.info.run_id, "train/loss")] == list(range(1, 9))


def test_a_full_scratch_disk_leaves_no_torn_checkpoint(tmp_path, monkeypatch):
    """torch.save on a full disk raises RuntimeError, mid-file: the file goes, and a checkpoint
    that cannot be kept beside the working directory leaves no torn copy there either."""
    import errno
    import shutil

    import torch

    from kdtrack.tracking.checkpoints import keep_unsaved, stage

    def torn_save(state, path):
        open(path, "wb").write(b"PK")
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    with monkeypatch.context() as patch:
        patch.setattr(torch, "save", torn_save)
        with pytest.raises(RuntimeError, match="file write failed"):
            stage({"step": 1}, tmp_path)
    assert list(tmp_path.iterdir()) == []
    staged = stage({"step": 2}, tmp_path)
    monkeypatch.chdir(tmp_path)

    def torn_move(source, target):
        open(target, "wb").write(b"PK")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "move", torn_move)
    clause = keep_unsaved("r1", "checkpoints/last_a.pt", staged)
    assert clause.startswith("; its last checkpoint could not be kept at ") and "No space left" in clause
    assert list((tmp_path / "kdtrack-unsaved" / "r1").iterdir()) == []


def test_a_store_that_refuses_the_status_leaves_a_run_the_next_command_reaps(store, monkeypatch):
    """A database that refuses every write (full, read-only): the run cannot be marked ended, so
    the message says how it will be; the next command marks it KILLED once its lease lapsed."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from kdtrack.errors import UserError
    from kdtrack.tracking import lease

    def refuse(*args, **kwargs):
        raise MlflowException("(sqlite3.OperationalError) attempt to write a readonly database")

    experiment = tracking.resolve_experiment("hostile-read-only")
    with pytest.raises(UserError, match="readonly database") as refused:
        with tracking.run(experiment, "probe", "teacher", fluent=False) as run:
            for call in ("set_terminated", "log_batch", "set_tag", "delete_tag"):
                monkeypatch.setattr(MlflowClient, call, refuse)
    monkeypatch.undo()
    message = str(refused.value)
    assert "\n" not in message and f"teacher run {run.run_id}" in message
    assert "shows RUNNING until its lease lapses" in message
    later = tracking.now_ms() + int(2 * lease.EXPIRY_SECONDS * 1000)
    monkeypatch.setattr(lease, "now_ms", lambda: later)
    assert lease.reap(tracking.get_run(run.run_id)).info.status == "KILLED"


def test_snapshot_every_is_in_a_students_reuse_key_and_teachers_stay_shared():
    """Issue 30, case 8: a student recorded with other confidence snapshots (which `analyze` draws
    its timeline from) was reused as if identical. Teachers take none, so both share one."""
    from conftest import TINY

    from kdtrack.config import DistillConfig, from_params, key_params

    with_snapshots = from_params(DistillConfig, {**TINY, "snapshot_every": "2"})
    without = from_params(DistillConfig, TINY)
    assert key_params(with_snapshots)["snapshot_every"] == "2" and key_params(without)["snapshot_every"] == "0"
    assert tracking.run_key("student", key_params(with_snapshots)) != tracking.run_key("student", key_params(without))
    assert key_params(with_snapshots.teacher_config) == key_params(without.teacher_config)
    assert with_snapshots.teacher_config.snapshot_every == 0


def test_a_resume_fills_a_lost_batch_and_marks_a_gap_it_cannot_fill(store, monkeypatch):
    """Issue 30, case 1: a resume skipped every step up to the last one in the store, so a batch
    lost before it stayed a hole, and the run ended FINISHED with it. Now a lost batch after the
    resume checkpoint is logged again; one before it (here deleted from the database: a store that
    lost rows) cannot be, and the run says so, is tagged, and claims leave it out."""
    import sqlite3
    import time

    from conftest import TINY
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from kdtrack.config import TrainConfig, from_params
    from kdtrack.contract import INCOMPLETE
    from kdtrack.errors import UserError
    from kdtrack.pipeline.stages import train_teacher
    from kdtrack.report.collect import counted, runs_table
    from kdtrack.report.tables import runs_summary
    from kdtrack.tracking.runs import TrackedRun
    from kdtrack.tracking.uploader import Uploader

    monkeypatch.setattr(TrackedRun, "FLUSH_SECONDS", -1.0)  # every step's metrics a batch of their own
    monkeypatch.setattr(Uploader, "BUDGET_SECONDS", 1.0)
    log_batch = MlflowClient.log_batch

    def refuse_step_5(self, run_id, metrics=(), *args, **kwargs):
        if any(metric.step == 5 for metric in metrics):
            raise MlflowException("(sqlite3.OperationalError) database is locked")
        return log_batch(self, run_id, metrics, *args, **kwargs)

    def after_a_resume_checkpoint(role, values, step):
        """Step 3 waits for step 2's checkpoint to be named (else the refusal could come first)."""
        experiment = tracking.experiment_id("hostile-gap")
        for _ in range(3000):
            if step != 3 or tracking.search_all([experiment], "tags.`kdtrack.resume_checkpoint` != ''"):
                return
            time.sleep(0.1)

    config = from_params(TrainConfig, {**TINY, "epochs": "4", "log_every": "1", "checkpoint_every": "2"})
    with monkeypatch.context() as patch:
        patch.setattr(MlflowClient, "log_batch", refuse_step_5)
        with pytest.raises(UserError, match="metrics up to step 5: .*database is locked"):
            train_teacher(config, "hostile-gap", context=tracking.RunContext().hooked(after_a_resume_checkpoint))
    [run] = tracking.search_all([tracking.experiment_id("hostile-gap")], "")
    assert run.info.status == "FAILED" and 5 not in dict(tracking.metric_history(run.info.run_id, "train/loss"))
    with sqlite3.connect(store / "mlflow.db") as database:  # step 1, before any resume checkpoint, lost
        database.execute("DELETE FROM metrics WHERE run_uuid = ? AND step = 1", (run.info.run_id,))
    assert train_teacher(config, "hostile-gap") == run.info.run_id
    resumed = tracking.get_run(run.info.run_id)
    assert resumed.info.status == "FINISHED"
    assert resumed.data.tags[INCOMPLETE] == "metrics of 1 log step(s) lost before a resume: 1"
    for key in ("train/loss", "lr"):  # step 5 logged again, once; step 1 cannot be
        assert sorted(step for step, _ in tracking.metric_history(run.info.run_id, key)) == list(range(2, 9)), key
    table = runs_table(["hostile-gap"])
    kept, left_out = counted(table, tracking.get_run(run.info.run_id).data.tags["kdtrack.code_version"])
    assert kept.height == 0 and left_out == ["1 incomplete teacher run (metrics lost before a resume)"]
    assert runs_summary(table)["status"].to_list() == ["FINISHED incomplete"]


def test_report_on_a_store_or_folder_that_refuses_writes_is_one_line_and_leaves_no_run(store, tmp_path, monkeypatch):
    """Issue 30, point 10: a read-only store gave a traceback, after the report had created its run."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = tracking.client()
    experiment_id = client.create_experiment("hostile-report")
    run_id = client.create_run(experiment_id, tags={ROLE: "teacher", CODE_VERSION: code_version()}).info.run_id
    client.log_batch(run_id, params=[Param("preset", "mnist_mlp"), Param("seed", "0")],
                     metrics=[Metric("test/acc", 0.5, 0, 0)])
    client.set_terminated(run_id, "FINISHED")
    blocker = tmp_path / "a-file"
    blocker.write_text("no folder can be made below a file")
    command = ["report", "--experiment", "hostile-report", "--format", "md", "--out"]
    result = CliRunner().invoke(main, [*command, str(blocker / "report")])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "a-file/report' cannot be written: Not a directory" in result.output

    def read_only(*args, **kwargs):
        raise MlflowException("(sqlite3.OperationalError) attempt to write a readonly database")

    monkeypatch.setattr(MlflowClient, "create_run", read_only)
    result = CliRunner().invoke(main, [*command, str(tmp_path / "report")])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    last = result.output.splitlines()[-1]  # after the lines on what was read
    assert last.startswith("kdtrack: error: no report run can be created: tracking store ")
    assert "readonly database" in last
    assert [r.info.run_id for r in tracking.search_all([experiment_id], "")] == [run_id]


def test_mlflow_system_metrics_warnings_are_quiet_while_the_store_refuses():
    """Issue 30, point 11: one warning every 10 s while the database was locked or full."""
    import logging

    import kdtrack.tracking  # noqa: F401  (installs the filter)

    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger = logging.getLogger("mlflow.system_metrics.system_metrics_monitor")
    logger.addHandler(handler)
    try:
        logger.warning("Failed to log system metrics: (sqlite3.OperationalError) database is locked")
        logger.warning("Skip logging GPU metrics.")
    finally:
        logger.removeHandler(handler)
    assert seen == ["Skip logging GPU metrics."]
