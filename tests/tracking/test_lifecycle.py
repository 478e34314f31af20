"""One run lifecycle: every run kdtrack creates ends FINISHED, KILLED (Ctrl-C, SIGTERM, a
StopRun) or FAILED with its reason, whatever created it; and what a run inherits (its parent,
extra tags, metric hooks) is handed down as a RunContext, not through global state."""
from contextlib import nullcontext

import matplotlib.figure
import pytest
from conftest import LINEAGE_EXPERIMENT, TINY

from kdtrack import tracking
from kdtrack.analysis.analyze import analyze
from kdtrack.analysis.theory import theory
from kdtrack.config import AnalyzeConfig, DistillConfig, TheoryConfig, from_params
from kdtrack.errors import StopRun
from kdtrack.pipeline.stages import distill
from kdtrack.report.dashboard import load
from kdtrack.report.render import report


def runs_of(experiment: str, role: str) -> list:
    found = tracking.client().get_experiment_by_name(experiment)
    return tracking.search_all([found.experiment_id], f"tags.`kdtrack.role` = '{role}'") if found else []


def failing_savefig(error: BaseException):
    def savefig(self, *args, **kwargs):
        raise error
    return savefig


class Refused(StopRun):
    status = "KILLED"


@pytest.mark.parametrize("error, status, failure", [
    (None, "FINISHED", None),
    (RuntimeError("disk on fire"), "FAILED", "RuntimeError: disk on fire"),
    (KeyboardInterrupt("signal 15"), "KILLED", "KeyboardInterrupt: signal 15"),
    (Refused("pruned at step 3"), "KILLED", "Refused: pruned at step 3"),
])
def test_the_with_block_owns_the_status(store, error, status, failure):
    experiment = tracking.resolve_experiment("lifecycle")
    with pytest.raises(type(error)) if error else nullcontext():
        with tracking.run(experiment, "probe", "theory", {"a": "1"}) as run:
            run.metrics({"x": 1.0}, 0)
            if error:
                raise error
    ended = tracking.get_run(run.run_id)
    assert ended.info.status == status and ended.data.metrics == {"x": 1.0} and ended.data.params == {"a": "1"}
    assert ended.data.tags.get("kdtrack.failure") == failure


def test_a_resumed_run_that_finishes_drops_the_failure_of_its_earlier_attempt(store):
    experiment = tracking.resolve_experiment("lifecycle")
    with pytest.raises(RuntimeError), tracking.run(experiment, "twice", "theory") as run:
        raise RuntimeError("store went read-only")
    assert tracking.get_run(run.run_id).data.tags["kdtrack.failure"] == "RuntimeError: store went read-only"
    with tracking.reopen(run.run_id, "theory"):
        pass
    again = tracking.get_run(run.run_id)
    assert again.info.status == "FINISHED" and "kdtrack.failure" not in again.data.tags


def test_a_context_hands_down_parent_tags_and_hooks(store):
    experiment = tracking.resolve_experiment("lifecycle-context")
    seen = []
    with tracking.run(experiment, "parent", "study", fluent=False) as parent:
        context = tracking.RunContext().within(parent.run_id).tagged({"kdtrack.suite": "s/a"})
        with tracking.run(experiment, "child", "theory", {}, context.hooked(lambda *call: seen.append(call))) as child:
            child.metrics({"loss": 0.5}, 3)
    tags = tracking.get_run(child.run_id).data.tags
    assert tags["mlflow.parentRunId"] == parent.run_id and tags["kdtrack.suite"] == "s/a"
    assert seen == [("theory", {"loss": 0.5}, 3)]
    assert tracking.get_run(parent.run_id).data.tags["kdtrack.result_run_id"] == child.run_id
    assert tracking.RunContext().tags == {}  # nothing leaked into the default


def test_a_failing_figure_fails_the_theory_run(store, monkeypatch):
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", failing_savefig(OSError("no space left")))
    with pytest.raises(OSError):
        theory(TheoryConfig(n=8, p=32, steps=50, pairs=8, experiment="lifecycle-theory"))
    [run] = runs_of("lifecycle-theory", "theory")
    assert run.info.status == "FAILED" and "no space left" in run.data.tags["kdtrack.failure"]


@pytest.fixture(scope="module")
def student(store):
    return distill(from_params(DistillConfig, TINY), "lifecycle-analyze")


def test_a_failing_figure_fails_the_report_run(lineage, tmp_path, monkeypatch):
    earlier = {r.info.run_id for r in runs_of(LINEAGE_EXPERIMENT, "report")}
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", failing_savefig(OSError("no space left")))
    with pytest.raises(OSError):
        report([LINEAGE_EXPERIMENT], "", load("paper"), tmp_path / "report")
    [run] = [r for r in runs_of(LINEAGE_EXPERIMENT, "report") if r.info.run_id not in earlier]
    assert run.info.status == "FAILED" and "no space left" in run.data.tags["kdtrack.failure"]


def test_ctrl_c_during_analyze_kills_the_analysis_run(student, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(matplotlib.figure.Figure, "savefig", failing_savefig(KeyboardInterrupt("ctrl-c")))
        with pytest.raises(KeyboardInterrupt):
            analyze(AnalyzeConfig(student_run_id=student))
    [run] = runs_of("lifecycle-analyze", "analysis")
    assert run.info.status == "KILLED" and run.data.tags["kdtrack.failure"] == "KeyboardInterrupt: ctrl-c"
    assert "kdtrack.analysis_run_id" not in tracking.get_run(student).data.tags
    # Killed is not finished: the next analyze runs again and finishes.
    [again] = analyze(AnalyzeConfig(student_run_id=student))
    assert again != run.info.run_id and tracking.get_run(again).info.status == "FINISHED"
