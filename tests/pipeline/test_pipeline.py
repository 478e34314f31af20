"""End to end in-process against a temporary store: teacher -> student -> analysis."""
import mlflow
import polars as pl
import pytest
from conftest import LINEAGE, LINEAGE_EXPERIMENT, TINY

from kdtrack import tracking
from kdtrack.analysis.analyze import analyze
from kdtrack.config import AnalyzeConfig, DistillConfig, from_params
from kdtrack.contract import known_metric
from kdtrack.errors import UserError
from kdtrack.pipeline.stages import distill


def _unknown_metrics(experiment: str) -> set[str]:
    """Metrics the runs of `experiment` logged that contract.METRIC_PATTERNS does not know."""
    runs = tracking.search_all([tracking.experiment_id(experiment)], "")
    return {name for run in runs for name in run.data.metrics if not known_metric(name)}


def test_distill_then_analyze(lineage):
    """The shared lineage (conftest): TINY with snapshots every 2 steps, distilled and analyzed."""
    student_id = lineage.student
    student = tracking.get_run(student_id)
    assert student.data.tags["kdtrack.role"] == "student"
    assert student.data.params["lr"] == "0.0001" and student.data.params["width"] == "32"
    for name in ("train/acc", "test/acc", "train/agreement", "test/agreement", "train/kl", "test/kl", "train/kd"):
        assert name in student.data.metrics
    teacher_id = student.data.tags["kdtrack.teacher_run_id"]
    assert teacher_id == lineage.teacher and tracking.get_run(teacher_id).data.tags["kdtrack.role"] == "teacher"

    train = tracking.load_table(student_id, "confidences/train.parquet")
    test = tracking.load_table(student_id, "confidences/test.parquet")
    assert train.height == 64 and test.height == 5000 - 64
    assert {"phi_teacher", "phi_student", "kl", "teacher_pred"} <= set(train.columns)
    assert tracking.load_table(student_id, "confidences/step_2/train.parquet").height == 64
    teacher_table = tracking.load_table(teacher_id, "confidences/train.parquet")
    assert {"phi_pred", "phi_label"} <= set(teacher_table.columns)
    model = mlflow.pytorch.load_model(f"runs:/{student_id}/student")
    assert model is not None

    # Same parameters again: the teacher and the student are reused, not retrained.
    assert distill(from_params(DistillConfig, LINEAGE), LINEAGE_EXPERIMENT) == student_id

    analysis = tracking.get_run(lineage.analysis)
    assert analysis.data.tags["kdtrack.student_run_id"] == student_id
    for name in ("train/slope_bottom25", "test/slope_bottom25", "train/slope_top25", "test/slope_top25",
                 "table2/teacher_test_acc", "table2/student_distill_test_acc"):
        assert name in analysis.data.metrics
    assert "timeline/train/slope_bottom25" in analysis.data.metrics
    figures = {f.path for f in tracking.client().list_artifacts(lineage.analysis, "figures")}
    assert "figures/confidence.png" in figures and "figures/groups_test.png" in figures
    assert "train/slope_bottom25" in tracking.get_run(student_id).data.metrics  # copied for sorting
    assert _unknown_metrics(LINEAGE_EXPERIMENT) == set()


def test_eigen_trajectories_and_their_analysis(store):
    params = {**TINY, "label_noise": "0.25", "epochs": "4", "log_every": "1"}
    student_id = distill(from_params(DistillConfig, params), "eigen")
    student = tracking.get_run(student_id)
    trajectory = tracking.load_table(student_id, "eigen/trajectory.parquet")
    eigenvalues = tracking.load_table(student_id, "eigen/eigenvalues.parquet")
    assert trajectory["step"].to_list() == list(range(0, 9))  # the initialization, then every log step
    assert len(eigenvalues) == 64 and trajectory.width == 65  # 64 points < 784 pixels: the Gram route
    assert eigenvalues["eigenvalue"].is_sorted(descending=True)
    teacher = tracking.load_table(student.data.tags["kdtrack.teacher_run_id"], "eigen/trajectory.parquet")
    assert teacher.row(0) == trajectory.row(0)  # same_init: both start at the same point
    displacement = tracking.load_table(student_id, "eigen/displacement.parquet")
    assert displacement["step"].to_list() == list(range(0, 9)) and displacement.columns == trajectory.columns
    assert set(displacement.row(0)[1:]) == {0.0} and displacement.row(-1)[1] > 0  # from W_0, then moved

    [analysis_id] = analyze(AnalyzeConfig(student_run_id=student_id, eigen_pairs=8))
    metrics = tracking.get_run(analysis_id).data.metrics
    assert metrics["eigen/pairs"] + metrics["eigen/pairs_left_out"] == 8
    assert 0 <= metrics["eigen/exaggerated_pair_frac"] <= 1 or metrics["eigen/pairs"] == 0
    assert 0 <= metrics["eigen/teacher_top_biased_frac"] <= 1 and "eigen/median_delta_logratio_0-0.5" in metrics
    pairs = tracking.load_table(analysis_id, "eigen/pairs.parquet")
    assert len(pairs) == 8 and (pairs["top"] < pairs["bottom"]).all()
    assert {"delta", "left_out", "ratio_bin", "teacher_stat", "student_stat"} <= set(pairs.columns)
    top_k = tracking.load_table(analysis_id, "eigen/top_k_accuracy.parquet")
    assert set(top_k["points"]) == {"clean", "mislabeled"} and top_k["k"].max() == 64
    figures = {f.path for f in tracking.client().list_artifacts(analysis_id, "figures")}
    assert {"figures/eigen_pairs.png", "figures/top_k_accuracy.png", "figures/eigen_pairs_layer3.png"} <= figures
    layer = tracking.load_table(analysis_id, "eigen/layer3_trajectory.parquet")  # mlp depth 2: layer 3
    assert set(layer["model"]) == {"teacher", "student"} and layer.filter(pl.col("model") == "student").height == 9
    assert metrics["eigen/layer3_pairs"] + metrics["eigen/layer3_pairs_left_out"] == 8  # from W at step 0
    assert 0 <= metrics["eigen/layer3_student_top_biased_frac"] <= 1
    assert _unknown_metrics("eigen") == set()


def test_noisy_cross_architecture_student_gets_a_onehot_baseline(store):
    params = {**TINY, "label_noise": "0.25", "arch": "random_features", "teacher_arch": "mlp"}
    student_id = distill(from_params(DistillConfig, params), "pipeline")
    tags = tracking.get_run(student_id).data.tags
    onehot = tracking.get_run(tags["kdtrack.onehot_run_id"])
    assert onehot.data.params["arch"] == "random_features" and tags["kdtrack.teacher_run_id"] != onehot.info.run_id
    [analysis_id] = analyze(AnalyzeConfig(student_run_id=student_id, figures=False))
    metrics = tracking.get_run(analysis_id).data.metrics
    assert 0 <= metrics["train/mislabeled_underfit_frac"] <= 1
    assert "table2/student_onehot_test_acc" in metrics
    assert _unknown_metrics("pipeline") == set()


def test_a_student_is_refused_as_teacher(lineage):
    with pytest.raises(UserError, match="is a student run"):
        distill(from_params(DistillConfig, {**TINY, "teacher_run_id": lineage.student}), "refused-teacher")


def test_cifar10_cnn_preset_records_patch_eigen_trajectories(store, tmp_path):
    import pickle

    import numpy as np

    from kdtrack.config import TrainConfig
    from kdtrack.pipeline.stages import train_teacher

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (10, 3072), dtype=np.uint8), b"labels": list(range(10))}
        (folder / name).write_bytes(pickle.dumps(batch))
    config = from_params(TrainConfig, {"preset": "cifar10_cnn", "data_dir": str(tmp_path), "train_size": "0",
                                       "width": "8", "depth": "1", "epochs": "1", "batch_size": "25"})
    run_id = train_teacher(config, "cifar-fixture")
    trajectory = tracking.load_table(run_id, "eigen/trajectory.parquet")
    assert trajectory.width == 1 + 6 * 6 * 3  # one column per direction of the 6x6x3 patches
    assert trajectory["step"].to_list() == [0, 1, 2]  # 2 steps: eigen_every=0 probes each
