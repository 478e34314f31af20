"""The eigenspace evidence of an analysis (paper §4.1, §D.3, §D.7): teacher and student weight
trajectories compared pair by pair, and the student's accuracy with its first layer truncated
to the top directions."""
from __future__ import annotations

import polars as pl

from kdtrack import tracking
from kdtrack.analysis import figures
from kdtrack.analysis.evidence import Evidence, caption
from kdtrack.config import AnalyzeConfig
from kdtrack.contract import SAME_INIT, TEACHER_RUN
from kdtrack.metrics.eigen import (
    EIGEN_POINTS,
    components,
    eigendirections,
    hidden_representation,
    last_layer,
    layer_inputs,
    truncated_to_top,
)
from kdtrack.metrics.eigenspace import exaggerated_fraction, pair_table, sample_pairs, top_k_sweep
from kdtrack.pipeline.rebuild import data_of, rebuild_model
from kdtrack.training.loop import predict

TRAJECTORY, LAST_LAYER = "eigen/trajectory.parquet", "eigen/last_layer_weights.pt"


def eigen_evidence(student, config: AnalyzeConfig) -> Evidence:
    """Fig. 19-21 and the exaggerated-pair fraction (teacher vs student trajectories), Fig. 17
    (top-K truncation accuracy on clean and mislabeled training points) and §D.7's next layer;
    nothing without trajectories."""
    student_id, teacher_id = student.info.run_id, student.data.tags.get(TEACHER_RUN, "")
    if not (teacher_id and tracking.has_artifact(student_id, TRAJECTORY)
            and tracking.has_artifact(teacher_id, TRAJECTORY)):
        return Evidence({})
    teacher, mine = tracking.load_table(teacher_id, TRAJECTORY), tracking.load_table(student_id, TRAJECTORY)
    directions = sum(c.startswith("v") for c in mine.columns)
    pairs = pair_table(teacher, mine, sample_pairs(directions, config.eigen_pairs, seed=0))
    fraction, decided = exaggerated_fraction(pairs)
    same = student.data.tags.get(SAME_INIT) == "teacher"
    title = f"{caption(student)}: first-layer eigen-trajectories (Fig. 19-21)" + (
        "" if same else "; NOT the same initialization")
    pair_figure = figures.eigen_grid(teacher, mine, sample_pairs(directions, 12, seed=1), title)

    data = data_of(student)
    model = rebuild_model(student, data)
    _, vectors = eigendirections(layer_inputs(model, data.x_train[:EIGEN_POINTS], int(student.data.params["seed"])))
    rows = []
    for k in top_k_sweep(vectors.shape[1]):
        correct = predict(truncated_to_top(model, vectors, k), data.x_train).argmax(1) == data.y_train
        for name, mask in (("clean", ~data.is_noisy), ("mislabeled", data.is_noisy)):
            if mask.any():
                rows.append({"k": k, "points": name, "accuracy": correct[mask].float().mean().item()})
    top_k = pl.DataFrame(rows)
    first = Evidence(
        {"eigen/exaggerated_pair_frac": fraction, "eigen/pairs": float(decided)},
        tables={"eigen/pairs.parquet": pairs, "eigen/top_k_accuracy.parquet": top_k},
        figures={"figures/eigen_pairs.png": pair_figure,
                 "figures/top_k_accuracy.png": figures.top_k_accuracy(
                     top_k, f"{caption(student)}: accuracy with the top-K first-layer components (Fig. 17)")})
    return first + hidden_layer_evidence(student, teacher_id, data, config)


def hidden_layer_evidence(student, teacher_id: str, data, config: AnalyzeConfig) -> Evidence:
    """§D.7: the eigenspace of the teacher's final hidden representation (fixed: the teacher at
    the end of training), and both models' final-layer weights projected onto it over training."""
    if not (tracking.has_artifact(student.info.run_id, LAST_LAYER) and tracking.has_artifact(teacher_id, LAST_LAYER)):
        return Evidence({})
    teacher_model = rebuild_model(tracking.get_run(teacher_id), data)
    number, _ = last_layer(teacher_model)
    _, vectors = eigendirections(hidden_representation(teacher_model, data.x_train[:EIGEN_POINTS]))
    tables = {}
    for name, run_id in (("teacher", teacher_id), ("student", student.info.run_id)):
        saved = tracking.load_state(run_id, LAST_LAYER)
        rows = [{"step": int(step), **{f"v{k + 1}": float(c) for k, c in enumerate(components(w, vectors))}}
                for step, w in zip(saved["step"], saved["values"])]
        tables[name] = pl.DataFrame(rows)
    both = pl.concat([t.with_columns(pl.lit(name).alias("model")) for name, t in tables.items()])
    directions = vectors.shape[1]
    pairs = pair_table(tables["teacher"], tables["student"], sample_pairs(directions, config.eigen_pairs, seed=0))
    fraction, decided = exaggerated_fraction(pairs)
    title = f"{caption(student)}: layer {number} weights on the teacher's final representation (Fig. 22-23)"
    return Evidence(
        {f"eigen/layer{number}_exaggerated_pair_frac": fraction, f"eigen/layer{number}_pairs": float(decided)},
        tables={f"eigen/layer{number}_trajectory.parquet": both},
        figures={f"figures/eigen_pairs_layer{number}.png": figures.eigen_grid(
            tables["teacher"], tables["student"], sample_pairs(directions, 12, seed=1), title)})
