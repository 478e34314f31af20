"""The switch entry point (paper §5.2, §E): weights per step, both directions, from_run_id."""
import pytest
import torch
from conftest import TINY

from kdtrack import tracking
from kdtrack.analysis.analyze import analyze
from kdtrack.analysis.evidence import accuracy_trajectories
from kdtrack.config import AnalyzeConfig, DistillConfig, SwitchConfig, from_params
from kdtrack.contract import known_metric
from kdtrack.errors import UserError
from kdtrack.metrics.deviations import quantile_gap
from kdtrack.pipeline.stages import distill, switch
from kdtrack.schedules import switch_weights
from kdtrack.training.loop import fit_indices

# 64 points, batch 32, 4 epochs: 8 steps; kept checkpoints at 2, 4, 6 (25/50/75%).
SWITCH = {**TINY, "epochs": "4", "log_every": "1", "eval_every": "2"}


def test_switch_weights_by_hand():
    assert list(map(switch_weights(6, 1.0, 0.0, 2, 0), range(6))) == [1, 1, 0, 0, 0, 0]
    assert list(map(switch_weights(7, 1.0, 0.0, 2, 4), range(7))) == [1, 1, 0.75, 0.5, 0.25, 0, 0]
    assert list(map(switch_weights(4, 0.0, 0.8, 1, 2), range(4))) == pytest.approx([0, 0.4, 0.8, 0.8])


def test_fit_fraction_is_stratified_and_seeded():
    labels = torch.arange(10).repeat(10)
    chosen = fit_indices(labels, 0.5, seed=3)
    assert len(chosen) == 50 and torch.bincount(labels[chosen]).tolist() == [5] * 10
    assert torch.equal(chosen, fit_indices(labels, 0.5, seed=3))


def applied_weights(run_id: str) -> list[float]:
    history = tracking.client().get_metric_history(run_id, "distill_weight")
    return [m.value for m in sorted(history, key=lambda m: m.step)], sorted(m.step for m in history)


def test_gradual_switch_to_onehot_applies_the_window_step_by_step(store):
    run_id = switch(from_params(SwitchConfig, {**SWITCH, "switch_at": "0.25", "switch_window": "4"}), "switch")
    run = tracking.get_run(run_id)
    assert run.data.tags["kdtrack.switch_step"] == "2" and "·switch-to-onehot" in run.info.run_name
    weights, steps = applied_weights(run_id)
    assert steps == list(range(1, 9))
    assert weights == pytest.approx([1, 1, 0.75, 0.5, 0.25, 0, 0, 0])
    assert "teacher/train_acc" in run.data.metrics and "test/acc" in run.data.metrics
    snapshots = {a.path for a in tracking.client().list_artifacts(run_id, "confidences")}
    assert {"confidences/step_2", "confidences/step_6", "confidences/step_8"} <= snapshots


def test_switch_to_distill_extends_training(store):
    run_id = switch(from_params(SwitchConfig, {**SWITCH, "switch_to": "distill", "switch_at": "4",
                                               "extend_to": "10"}), "switch")
    weights, steps = applied_weights(run_id)
    assert steps[-1] == 10 and weights == [0] * 4 + [1] * 6


def test_from_run_id_continues_the_distilled_run_at_the_switch_step(store):
    distilled = distill(from_params(DistillConfig, SWITCH), "switch")
    scratch = switch(from_params(SwitchConfig, {**SWITCH, "switch_at": "0.5"}), "switch")
    resumed = switch(from_params(SwitchConfig, {**SWITCH, "switch_at": "0.5", "from_run_id": distilled}), "switch")
    assert tracking.get_run(resumed).data.tags["kdtrack.from_run_id"] == distilled
    _, steps = applied_weights(resumed)
    assert steps == [5, 6, 7, 8]  # the first logged step follows the checkpoint's (step 4)
    final = [tracking.load_state(r, "checkpoints/final.pt") for r in (scratch, resumed)]
    for name, tensor in final[0].items():
        assert torch.equal(tensor, final[1][name]), name  # same steps, same weights, bit for bit
    assert "confidences/step_4" in {a.path for a in tracking.client().list_artifacts(resumed, "confidences")}

    # The deviation timeline of the switched run, and Fig. 24's curves with its siblings.
    [analysis] = analyze(AnalyzeConfig(student_run_id=resumed))
    figures = {a.path for a in tracking.client().list_artifacts(analysis, "figures")}
    assert {"figures/timeline.png", "figures/accuracy_trajectory.png"} <= figures
    slopes = tracking.client().get_metric_history(analysis, "timeline/train/slope_bottom25")
    assert {m.step for m in slopes} >= {4, 8}
    curves, marks = accuracy_trajectories(tracking.get_run(resumed))
    [label] = [label for label in curves if resumed[:6] in label]
    mine = curves[label]
    assert [step for step, _ in mine] == [2, 4, 6, 8]  # the distilled run's curve up to the switch first
    assert marks[label] == 4


def test_the_switch_analysis_reads_the_gap_change_beside_its_kd_sibling(store):
    params = {**SWITCH, "snapshot_every": "2"}  # snapshots at 2, 4, 6, 8; the switch at step 4
    kd = distill(from_params(DistillConfig, params), "switch-gap")
    switched = switch(from_params(SwitchConfig, {**params, "switch_at": "0.5"}), "switch-gap")
    [analysis] = analyze(AnalyzeConfig(student_run_id=switched, figures=False))
    metrics = tracking.get_run(analysis).data.metrics

    def gap(run_id: str, step: int) -> float:
        return quantile_gap(tracking.load_table(run_id, f"confidences/step_{step}/test.parquet"), "bottom")

    assert metrics["switch/test/gap_bottom25_before"] == pytest.approx(gap(switched, 4))
    assert metrics["switch/test/gap_bottom25_change"] == pytest.approx(gap(switched, 8) - gap(switched, 4))
    assert metrics["switch/test/kd_gap_bottom25_change"] == pytest.approx(gap(kd, 8) - gap(kd, 4))
    # Same teacher, init, data order and loss up to the switch: the two students coincide there.
    assert metrics["switch/test/kd_gap_bottom25_before"] == metrics["switch/test/gap_bottom25_before"]
    assert [name for name in metrics if not known_metric(name)] == []  # the run contract names them
    [of_kd] = analyze(AnalyzeConfig(student_run_id=kd, figures=False))
    assert not any(name.startswith("switch/") for name in tracking.get_run(of_kd).data.metrics)


def test_from_run_id_without_the_checkpoint_lists_the_steps_it_has(store):
    distilled = distill(from_params(DistillConfig, SWITCH), "switch")
    with pytest.raises(UserError, match=r"no checkpoint at the switch step 3; it has steps \[2, 4, 6\]"):
        switch(from_params(SwitchConfig, {**SWITCH, "switch_at": "3", "from_run_id": distilled}), "switch")
    with pytest.raises(UserError, match="switch_to=distill starts from a teacher run"):
        switch(from_params(SwitchConfig, {**SWITCH, "switch_to": "distill", "from_run_id": distilled}), "switch")


def test_a_teacher_on_half_the_data_is_recorded_on_the_student(store):
    run_id = distill(from_params(DistillConfig, {**TINY, "teacher_fit_fraction": "0.5"}), "switch")
    run = tracking.get_run(run_id)
    teacher = tracking.get_run(run.data.tags["kdtrack.teacher_run_id"])
    assert teacher.data.params["fit_fraction"] == "0.5" and run.data.params["fit_fraction"] == "1.0"
    assert 0 <= run.data.metrics["teacher/train_acc"] <= 1
    # Evidence 1's baseline: one-hot on the whole data, not the half-data teacher
    onehot = tracking.get_run(run.data.tags["kdtrack.onehot_run_id"])
    assert onehot.info.run_id != teacher.info.run_id and onehot.data.params["fit_fraction"] == "1.0"
