"""`kdtrack gc` and what studies keep: the plan by hand, then a tiny store pruned end to end."""
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import pytest
from click.testing import CliRunner

from kdtrack import tracking
from kdtrack.cli.main import main
from kdtrack.config import AblateConfig, DistillConfig, SwitchConfig, from_params, key_params
from kdtrack.errors import UserError
from kdtrack.pipeline.stages import distill, switch
from kdtrack.studies.ablate import trial_setting
from kdtrack.studies.suite import SettingSpec, StudentSpec, _expand
from kdtrack.tracking.prune import RESUMING, STEP, Stored, plan
from tests.conftest import TINY

FILES = [Stored("a", "FINISHED", "checkpoints/init.pt", 7), Stored("a", "FINISHED", "checkpoints/final.pt", 7),
         Stored("a", "FINISHED", "checkpoints/step_1.pt", 20), Stored("a", "FINISHED", "checkpoints/step_2.pt", 21),
         Stored("a", "FINISHED", "checkpoints/last_a.pt", 22), Stored("b", "RUNNING", "checkpoints/step_1.pt", 20),
         Stored("c", "KILLED", "checkpoints/last_b.pt", 22)]


def test_switch_prunes_resume_checkpoints_and_last_also_step_ones_never_init_or_final():
    assert [f.path for f in plan(FILES, "switch", {}).delete] == ["checkpoints/last_a.pt", "checkpoints/last_b.pt"]
    pruning = plan(FILES, "last", {})
    assert [(f.run_id, f.path) for f in pruning.delete] == [
        ("a", "checkpoints/step_1.pt"), ("a", "checkpoints/step_2.pt"), ("a", "checkpoints/last_a.pt"),
        ("c", "checkpoints/last_b.pt")]
    assert pruning.freed() == {STEP: 20 + 21, RESUMING: 22 + 22}
    assert pruning.refused == ("keeping every checkpoint of run b: it is RUNNING",)


def test_what_a_recorded_run_needs_is_refused_in_one_line_each():
    needed = {("a", "checkpoints/step_2.pt"): "switch run s starts from it",
              ("c", "checkpoints/last_b.pt"): "the run is KILLED and resumes from it"}
    pruning = plan(FILES, "last", needed)
    assert [f.path for f in pruning.delete] == ["checkpoints/step_1.pt", "checkpoints/last_a.pt"]
    assert pruning.refused == ("keeping checkpoints/step_2.pt of run a: switch run s starts from it",
                               "keeping checkpoints/last_b.pt of run c: the run is KILLED and resumes from it",
                               "keeping every checkpoint of run b: it is RUNNING")
    with pytest.raises(UserError, match="keep='all' is not a policy gc prunes to; allowed: last, switch"):
        plan(FILES, "all", {})


def test_suites_and_ablations_keep_no_step_checkpoint_and_no_logged_model_unless_told():
    plain, told = _expand(SettingSpec(name="s", preset="mnist_mlp", overrides={"keep_checkpoints": "switch"},
                                      students=[StudentSpec(), StudentSpec(log_model=True)]))
    assert (plain.config().keep_checkpoints, plain.config().log_model) == ("switch", False)
    assert (told.config().keep_checkpoints, told.config().log_model) == ("switch", True)
    [default] = _expand(SettingSpec(name="s", preset="mnist_mlp"))
    assert (default.config().keep_checkpoints, default.config().log_model) == ("last", False)
    trial = trial_setting(AblateConfig(), 64, 0)
    assert (trial.keep_checkpoints, trial.log_model) == ("last", False)
    assert (DistillConfig().keep_checkpoints, DistillConfig().log_model) == ("switch", True)  # a single distill's
    # storage is not science: a run kept either way is the same run to reuse
    assert key_params(trial) == key_params(DistillConfig(**{**trial.__dict__, "keep_checkpoints": "all",
                                                            "log_model": True}))


def checkpoint_names(run_id):
    return sorted(p.rsplit("/", 1)[-1] for p, is_dir in tracking.artifact_paths(run_id, "checkpoints") if not is_dir)


def test_gc_prunes_a_store_and_keeps_what_runs_still_need(store):
    """A student kept with `switch` (steps 1-3 of 4), a switch run that starts from its step 2,
    and a RUNNING run: `gc --keep last` frees the rest, and the student is still reused."""
    student = distill(from_params(DistillConfig, TINY), "gc")
    teacher = tracking.get_run(student).data.tags["kdtrack.teacher_run_id"]
    switched = switch(from_params(SwitchConfig, {**TINY, "switch_at": "0.5", "from_run_id": student,
                                                 "log_model": "false"}), "gc")
    assert not mlflow.search_logged_models(experiment_ids=[tracking.experiment_id("gc")], output_format="list",
                                           filter_string=f"source_run_id = '{switched}'")
    running = tracking.client().create_run(tracking.experiment_id("gc"), tags={"kdtrack.role": "student"})
    tracking.client().log_text(running.info.run_id, "x", "checkpoints/step_1.pt")
    before = {run: checkpoint_names(run) for run in (teacher, student, switched)}
    assert before[student] == ["final.pt", "final.pt.sha256", *(f"step_{n}.pt{s}" for n in (1, 2, 3)
                                                                for s in ("", ".sha256"))]

    expected_bytes = sum((Path(urlparse(tracking.get_run(run).info.artifact_uri).path) / "checkpoints" / name)
                         .stat().st_size for run in before for name in before[run] if name.startswith("step_"))
    expected_bytes -= sum((Path(urlparse(tracking.get_run(student).info.artifact_uri).path) / "checkpoints" / name)
                          .stat().st_size for name in ("step_2.pt", "step_2.pt.sha256"))
    dry = CliRunner().invoke(main, ["gc", "--experiment", "gc", "--keep", "last", "--dry-run"])
    assert dry.exit_code == 0 and "would free" in dry.stdout
    assert {run: checkpoint_names(run) for run in before} == before

    result = CliRunner().invoke(main, ["gc", "--experiment", "gc", "--keep", "last"])
    assert result.exit_code == 0, result.output
    assert f"keeping checkpoints/step_2.pt of run {student}: switch run {switched} starts from it" in result.stderr
    assert f"keeping every checkpoint of run {running.info.run_id}: it is RUNNING" in result.stderr
    assert checkpoint_names(student) == ["final.pt", "final.pt.sha256", "step_2.pt", "step_2.pt.sha256"]
    assert checkpoint_names(teacher) == ["final.pt", "final.pt.sha256", "init.pt", "init.pt.sha256"]
    assert checkpoint_names(switched) == ["final.pt", "final.pt.sha256"]
    assert checkpoint_names(running.info.run_id) == ["step_1.pt"]
    gone = [Path(urlparse(tracking.get_run(run).info.artifact_uri).path) / "checkpoints" / name
            for run in before for name in set(before[run]) - set(checkpoint_names(run))]
    steps = [path for path in gone if path.suffix == ".pt"]
    assert steps and all(path.name.startswith("step_") for path in steps)  # no last_a/b: finished runs drop them
    assert f"freed {expected_bytes / 1e6:.1f} MB in {len(steps)} files (step checkpoints" in result.stdout
    assert distill(from_params(DistillConfig, {**TINY, "keep_checkpoints": "last"}), "gc") == student
