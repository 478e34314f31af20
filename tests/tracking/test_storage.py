"""What a store keeps (issue 16, item 10): random features' fixed projection is rebuilt from the
seed and checked by its digest, not stored; `keep_checkpoints` decides which checkpoints stay."""
import io

import mlflow
import pytest
import torch
from conftest import TINY

from kdtrack import tracking
from kdtrack.analysis.analyze import analyze
from kdtrack.config import AnalyzeConfig, DistillConfig, SwitchConfig, TrainConfig, from_params
from kdtrack.contract import INIT_DIGEST, TEACHER_RUN
from kdtrack.errors import UserError
from kdtrack.models import build_model
from kdtrack.pipeline.rebuild import data_of, initial_state, rebuild_model, state_digest
from kdtrack.pipeline.stages import distill, switch, train_teacher
from kdtrack.training.state import Plan

# 64 points, batch 32, 4 epochs: 8 steps; kept checkpoints at 2, 4, 6; an evaluation, and so a
# checkpoint, at every step: the odd ones go to last_a (the resume tag then names a kept one), and
# with keep_checkpoints=last all of 1-7 alternate between last_a and last_b.
EIGHT_STEPS = {**TINY, "epochs": "4", "eval_every": "1"}
RANDOM_FEATURES = {**EIGHT_STEPS, "preset": "noisy_mnist_rf", "width": "300", "batch_size": "32"}


def saved_size(state: dict) -> int:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return len(buffer.getvalue())


def test_a_random_features_state_holds_no_projection_and_reloads_bit_identically():
    model = build_model("random_features", (1, 28, 28), 10, seed=5)  # 5000 x 784: 16 MB of projection
    state = model.state_dict()
    assert set(state) == {"features_digest", "head.weight", "head.bias"}
    assert saved_size(state) < 300_000  # the head's 5000 x 10 weights and the digest

    again = build_model("random_features", (1, 28, 28), 10, seed=5)
    again.load_state_dict(state)
    assert torch.equal(again.projection, model.projection) and torch.equal(again.offset, model.offset)
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(again(x), model(x))
    assert torch.equal(model.portable()(x), model(x))  # the logged model draws the same projection


def test_a_digest_mismatch_is_refused_in_one_line():
    state = build_model("random_features", (1, 8, 8), 3, width=20, seed=5).state_dict()
    other = build_model("random_features", (1, 8, 8), 3, width=20, seed=6)
    with pytest.raises(UserError, match="rebuilt from seed 6") as refused:
        other.load_state_dict(state)
    assert "\n" not in str(refused.value)


def test_a_state_that_stores_its_projection_still_loads():
    """Checkpoints written before the projection was rebuilt from the seed carry it: it is used."""
    model = build_model("random_features", (1, 8, 8), 3, width=20, seed=5)
    old = {"projection": torch.randn(20, 64), "offset": torch.randn(20),
           **{k: v for k, v in model.state_dict().items() if k.startswith("head.")}}
    model.load_state_dict(old)
    assert torch.equal(model.projection, old["projection"]) and torch.equal(model.offset, old["offset"])


def test_keep_checkpoints_is_validated():
    with pytest.raises(UserError, match=r"keep_checkpoints='none' is not allowed; choose one of: all, last, switch"):
        from_params(TrainConfig, {"keep_checkpoints": "none"})
    assert from_params(TrainConfig, {}).keep_checkpoints == "switch"


def test_the_plan_keeps_step_checkpoints_except_with_last():
    plan = Plan.of(from_params(TrainConfig, EIGHT_STEPS), 64)
    for policy, kept in (("all", [2, 3, 4, 6]), ("switch", [2, 3, 4, 6]), ("last", [])):
        assert [step for step in range(1, 9) if plan.keeps_checkpoint(step, 3, policy)] == kept


def checkpoints(run_id: str) -> set[str]:
    return {path.split("/")[-1] for path, _ in tracking.artifact_paths(run_id, "checkpoints")
            if not path.endswith(".sha256")}


@pytest.mark.parametrize("policy, kept", [
    ("all", {"init.pt", "final.pt", "step_2.pt", "step_4.pt", "step_6.pt", "last_a.pt"}),
    ("switch", {"init.pt", "final.pt", "step_2.pt", "step_4.pt", "step_6.pt"}),
    ("last", {"final.pt"}),  # and the initialization's digest, below
])
def test_a_finished_run_keeps_what_its_policy_names(store, policy, kept):
    # The policy is not part of the reuse key: a seed of its own per policy keeps the runs apart.
    seed = str(["all", "switch", "last"].index(policy) + 10)
    run_id = train_teacher(from_params(TrainConfig, {**EIGHT_STEPS, "seed": seed, "keep_checkpoints": policy}),
                           "keep")
    assert checkpoints(run_id) == kept
    sums = {path.split("/")[-1] for path, _ in tracking.artifact_paths(run_id, "checkpoints")} - kept
    assert sums == {f"{name}.sha256" for name in kept}  # the checksums went with their files


def test_switch_from_a_run_that_kept_no_step_checkpoint_says_how_to_get_one(store):
    distilled = distill(from_params(DistillConfig, {**EIGHT_STEPS, "keep_checkpoints": "last"}), "keep-last")
    with pytest.raises(UserError, match=r"it has steps none .*keep_checkpoints=switch"):
        switch(from_params(SwitchConfig, {**EIGHT_STEPS, "from_run_id": distilled}), "keep-last")


def test_a_state_digest_tells_states_apart_by_value_name_and_dtype():
    state = {"w": torch.arange(6.0).reshape(2, 3), "steps": torch.tensor(0)}
    assert state_digest(state) == state_digest({k: v.clone() for k, v in state.items()})
    for other in ({**state, "w": state["w"] + 1e-6}, {"v": state["w"], "steps": state["steps"]},
                  {**state, "w": state["w"].double()}, {**state, "w": state["w"].reshape(3, 2)}):
        assert state_digest(other) != state_digest(state)


def test_a_last_teacher_keeps_its_initialization_as_a_digest_its_student_starts_from(store):
    """keep_checkpoints=last stores no init.pt: the same-init student starts from the weights the
    teacher's seed draws again, checked against the digest; a mismatch is refused in one line."""
    student = tracking.get_run(distill(from_params(DistillConfig, {**EIGHT_STEPS, "seed": "13",
                                                                   "keep_checkpoints": "last"}), "keep-init"))
    teacher = tracking.get_run(student.data.tags[TEACHER_RUN])
    assert checkpoints(teacher.info.run_id) == {"final.pt"}
    rebuilt = initial_state(teacher, data_of(teacher))
    assert state_digest(rebuilt) == teacher.data.tags[INIT_DIGEST]
    first = [tracking.load_table(run.info.run_id, "eigen/trajectory.parquet").row(0) for run in (teacher, student)]
    assert first[0] == first[1]  # the student started where the teacher did
    tracking.client().set_tag(teacher.info.run_id, INIT_DIGEST, "0" * 64)
    with pytest.raises(UserError, match=r"initial weights, drawn again from its seed 13, differ") as refused:
        initial_state(tracking.get_run(teacher.info.run_id), data_of(teacher))
    assert "\n" not in str(refused.value)


def test_random_features_end_to_end_without_stored_projections(store):
    """Teacher, same-init student, analysis, the logged model and a switch from the student's
    step checkpoint all work from projections rebuilt from the seed."""
    student_id = distill(from_params(DistillConfig, RANDOM_FEATURES), "rf")
    student = tracking.get_run(student_id)
    teacher_id = student.data.tags["kdtrack.teacher_run_id"]
    for run_id, name in ((teacher_id, "init.pt"), (teacher_id, "step_4.pt"), (student_id, "final.pt")):
        state = tracking.load_state(run_id, f"checkpoints/{name}")
        weights = state.get("model", state)
        assert "projection" not in weights and "features_digest" in weights, (run_id, name)

    data = data_of(student)
    model = rebuild_model(student, data)
    logged = mlflow.pytorch.load_model(f"runs:/{student_id}/student")
    x = data.x_test[:16].cpu()
    assert torch.allclose(logged(x), model.cpu()(x), atol=1e-5)

    [analysis] = analyze(AnalyzeConfig(student_run_id=student_id, figures=False))
    assert "test/slope_bottom25" in tracking.get_run(analysis).data.metrics

    scratch = switch(from_params(SwitchConfig, RANDOM_FEATURES), "rf")
    resumed = switch(from_params(SwitchConfig, {**RANDOM_FEATURES, "from_run_id": student_id}), "rf")
    final = [tracking.load_state(r, "checkpoints/final.pt") for r in (scratch, resumed)]
    for name, tensor in final[0].items():
        assert torch.equal(tensor, final[1][name]), name


def test_a_checkpoint_never_overwrites_the_one_the_resume_tag_names(store, monkeypatch):
    """Issue 30, case 1: the database refused tags while the artifact store took files. The tag
    named last_a; the next checkpoints went to last_a again and a resume skipped their steps.
    Here the tag is written once, at the first checkpoint, then never again."""
    from kdtrack.contract import RESUME
    from kdtrack.tracking.runs import TrackedRun

    pointed, real = [], TrackedRun._point
    monkeypatch.setattr(TrackedRun, "_point", lambda run, path: pointed.append(path) or (
        real(run, path) if len(pointed) == 1 else None))
    # keep_checkpoints=all: the spares stay in the finished run, to be read
    run_id = train_teacher(from_params(TrainConfig, {**EIGHT_STEPS, "seed": "20", "keep_checkpoints": "all"}),
                           "refused-tags")
    spares = [path for path in pointed if "last_" in path]
    assert spares == ["checkpoints/last_a.pt"] + ["checkpoints/last_b.pt"] * (len(spares) - 1) and len(spares) > 2
    run = tracking.get_run(run_id)
    assert run.data.tags[RESUME] == "checkpoints/last_a.pt"
    assert tracking.load_state(run_id, "checkpoints/last_a.pt")["step"] == 1  # still the first checkpoint
