"""The eigenspace evidence of an analysis (paper §4.1, §D.2-D.3, §D.7): teacher and student weight
trajectories compared pair by pair, and the student's accuracy with its first layer truncated
to the top directions.

The pair statistic (kdtrack.metrics.eigenspace: delta on the teacher's shared scale) needs the
displacement from the initialization, which runs record since `eigen/displacement.parquet` exists;
for runs recorded before, the analysis says so in its note and logs only the own-scale metrics."""
from __future__ import annotations

from functools import partial

import numpy as np
import polars as pl

from kdtrack import tracking
from kdtrack.analysis import figures
from kdtrack.analysis.evidence import Evidence, caption
from kdtrack.config import AnalyzeConfig
from kdtrack.contract import ANALYSIS_RUN, RECORDED, SAME_INIT, SOURCE, TEACHER_RUN, TEACHER_SOURCE
from kdtrack.metrics.eigen import (
    EIGEN_POINTS,
    components,
    eigendirections,
    hidden_representation,
    last_layer,
    layer_inputs,
    truncated_to_top,
)
from kdtrack.metrics.eigenspace import (
    delta_summary,
    delta_table,
    own_scale_summary,
    own_scale_table,
    sample_pairs,
    top_k_sweep,
)
from kdtrack.pipeline.rebuild import data_of, rebuild_model
from kdtrack.training.loop import predict

TRAJECTORY, DISPLACEMENT = "eigen/trajectory.parquet", "eigen/displacement.parquet"
EIGENVALUES, LAST_LAYER = "eigen/eigenvalues.parquet", "eigen/last_layer_weights.pt"
FINAL, TOP_K = "checkpoints/final.pt", "eigen/top_k_accuracy.parquet"
SHOWN_PAIRS = 12  # pairs drawn in a figure


def earlier(student, path: str) -> pl.DataFrame | None:
    """Table `path` of the student's latest analysis (its `kdtrack.analysis_run_id`), where the
    student no longer keeps the weights it was computed from (a suite drops them once analyzed:
    studies.suite.drop_analyzed_weights); None where there is none. What it holds depends on the
    student's weights and data alone, not on the analysis's parameters, so any analysis's will do."""
    analysis = student.data.tags.get(ANALYSIS_RUN)
    if analysis and tracking.has_artifact(analysis, path):
        return tracking.load_table(analysis, path)
    return None


def pair_evidence(prefix: str, trajectories: tuple[pl.DataFrame, pl.DataFrame],
                  displacements: tuple[pl.DataFrame, pl.DataFrame] | None, eigenvalues: np.ndarray,
                  pairs: list[tuple[int, int]], title: str, figure_path: str) -> Evidence:
    """The own-scale statistic of each model (§D.2) from the `trajectories` (teacher, student);
    with `displacements`, the pair statistic delta (§D.3), stratified by eigenvalue ratio, and its
    figure on the shared scale; without, a note saying that it could not be computed. Metrics are
    named `<prefix><name>`; the pairs table is `<prefix>pairs.parquet`."""
    directions = sum(c.startswith("v") for c in trajectories[0].columns)
    own = own_scale_table(*trajectories, pairs)
    metrics = {f"{prefix}{k}": v for k, v in own_scale_summary(own).items()}
    shown = sample_pairs(directions, SHOWN_PAIRS, seed=1)
    if displacements is None:
        note = (f"{prefix}exaggerated_pair_frac not computed: the teacher's or the student's displacement from "
                f"its initialization is not recorded (a run recorded before {DISPLACEMENT} existed, or one "
                f"started from another run's checkpoint). Only the own-scale metrics ({prefix}*_top_biased_frac) "
                f"are logged, and {figure_path} shows the raw ||W^T v|| trajectories.")
        return Evidence(metrics, tables={f"{prefix}pairs.parquet": own},
                        figures={figure_path: partial(figures.eigen_grid, *trajectories, shown, title)}, notes=(note,))
    deltas = delta_table(*displacements, pairs, eigenvalues)
    metrics.update({f"{prefix}{k}": v for k, v in delta_summary(deltas).items()})
    title = f"{title}; displacement on the teacher's final scale"
    return Evidence(metrics, tables={f"{prefix}pairs.parquet": deltas.join(own, on=["top", "bottom"], how="left")},
                    figures={figure_path: partial(figures.eigen_grid, *displacements, shown, title, shared_scale=True)})


def eigen_evidence(student, config: AnalyzeConfig) -> Evidence:
    """Fig. 19-21 and the pair statistics (teacher vs student), Fig. 17 (top-K truncation accuracy
    on clean and mislabeled training points) and §D.7's next layer; nothing without trajectories (a
note for an outside pair, whose training kdtrack never saw)."""
    student_id, teacher_id = student.info.run_id, student.data.tags.get(TEACHER_RUN, "")
    if TEACHER_SOURCE in student.data.tags:
        return Evidence({}, notes=("eigen/: no eigen-evidence: this pair was trained outside kdtrack, which "
                                   "recorded no first-layer trajectories of its training (only the finished models "
                                   "were evaluated)",))
    if not (teacher_id and tracking.has_artifact(student_id, TRAJECTORY)
            and tracking.has_artifact(teacher_id, TRAJECTORY)):
        return Evidence({})
    if student.data.tags.get(SOURCE) == RECORDED:  # a model kdtrack cannot rebuild from the run's params
        return first_layer_evidence(student, teacher_id, config) + Evidence({}, notes=(
            "eigen/: a recorded run (kdtrack.record): no Fig. 17 top-K truncation nor §D.7 next layer, which "
            "rebuild the model from kdtrack's own architectures",))
    data = data_of(student)
    return (first_layer_evidence(student, teacher_id, config) + top_k_evidence(student, data)
            + hidden_layer_evidence(student, teacher_id, data, config))


def first_layer_evidence(student, teacher_id: str, config: AnalyzeConfig) -> Evidence:
    """The pair statistics of the first layer, where teacher and student share its eigendirections
    (the same eigenvalues: the same inputs to the layer); else a note and nothing."""
    student_id = student.info.run_id
    eigenvalues, own = (tracking.load_table(run_id, EIGENVALUES)["eigenvalue"].to_numpy()
                        for run_id in (teacher_id, student_id))
    if len(eigenvalues) != len(own) or not np.allclose(eigenvalues, own, rtol=1e-6):
        return Evidence({}, notes=("eigen/: no first-layer pair statistics: the teacher's first layer sees other "
                                   "inputs than the student's (other architectures, or other random features or "
                                   "patches), so their eigendirections differ",))
    trajectories = (tracking.load_table(teacher_id, TRAJECTORY), tracking.load_table(student_id, TRAJECTORY))
    displacements = None
    if tracking.has_artifact(student_id, DISPLACEMENT) and tracking.has_artifact(teacher_id, DISPLACEMENT):
        displacements = (tracking.load_table(teacher_id, DISPLACEMENT), tracking.load_table(student_id, DISPLACEMENT))
    same = student.data.tags.get(SAME_INIT) == "teacher"
    title = f"{caption(student)}: first-layer eigen-trajectories (Fig. 19-21)" + (
        "" if same else "; NOT the same initialization")
    pairs = sample_pairs(len(eigenvalues), config.eigen_pairs, seed=0)
    return pair_evidence("eigen/", trajectories, displacements, eigenvalues, pairs, title, "figures/eigen_pairs.png")


def top_k_evidence(student, data) -> Evidence:
    """Fig. 17: the student's train accuracy with its first layer truncated to the top K directions,
    on clean and mislabeled points; from its earlier analysis where its weights are gone."""
    if tracking.has_artifact(student.info.run_id, FINAL):
        top_k = top_k_table(student, data)
    else:
        top_k = earlier(student, TOP_K)
        if top_k is None:
            return Evidence({}, notes=(f"{TOP_K} (Fig. 17) not computed: the student keeps no {FINAL} and no "
                                       "earlier analysis of it recorded the table",))
    title = f"{caption(student)}: accuracy with the top-K first-layer components (Fig. 17)"
    return Evidence({}, tables={TOP_K: top_k},
                    figures={"figures/top_k_accuracy.png": partial(figures.top_k_accuracy, top_k, title)})


def top_k_table(student, data) -> pl.DataFrame:
    model = rebuild_model(student, data)
    _, vectors = eigendirections(layer_inputs(model, data.x_train[:EIGEN_POINTS], int(student.data.params["seed"])))
    rows = []
    for k in top_k_sweep(vectors.shape[1]):
        correct = predict(truncated_to_top(model, vectors, k), data.x_train).argmax(1) == data.y_train
        for name, mask in (("clean", ~data.is_noisy), ("mislabeled", data.is_noisy)):
            if mask.any():
                rows.append({"k": k, "points": name, "accuracy": correct[mask].float().mean().item()})
    return pl.DataFrame(rows)


def layer_tables(saved: dict, vectors) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """A run's saved final-layer weights projected on `vectors`: ||W^T v_k|| per step, and the
    displacement ||(W - W_0)^T v_k|| where the saved steps begin at step 0 (W_0, the initialization;
    a run started from another's checkpoint has no step 0: None)."""
    steps, weights = [int(step) for step in saved["step"]], saved["values"]

    def table(values):
        return pl.DataFrame([{"step": step, **{f"v{k + 1}": float(c) for k, c in enumerate(components(w, vectors))}}
                             for step, w in zip(steps, values)])

    return table(weights), (table(weights - weights[0]) if steps[0] == 0 else None)


def hidden_layer_evidence(student, teacher_id: str, data, config: AnalyzeConfig) -> Evidence:
    """§D.7: the eigenspace of the teacher's final hidden representation (fixed: the teacher at
    the end of training), and both models' final-layer weights projected onto it over training,
    compared with the same pair statistics as the first layer. The student's projections come
    from its earlier analysis where its weights are gone."""
    if not tracking.has_artifact(teacher_id, LAST_LAYER):
        return Evidence({})
    teacher_model = rebuild_model(tracking.get_run(teacher_id), data)
    number, _ = last_layer(teacher_model)
    names = {kind: f"eigen/layer{number}_{kind}.parquet" for kind in ("trajectory", "displacement")}
    if tracking.has_artifact(student.info.run_id, LAST_LAYER):
        student_tables = None
    else:
        student_tables = {kind: earlier(student, name) for kind, name in names.items()}
        if student_tables["trajectory"] is None:
            return Evidence({})
    values, vectors = eigendirections(hidden_representation(teacher_model, data.x_train[:EIGEN_POINTS]))
    teacher, teacher_moved = layer_tables(tracking.load_state(teacher_id, LAST_LAYER), vectors)
    if student_tables is None:
        mine, moved = layer_tables(tracking.load_state(student.info.run_id, LAST_LAYER), vectors)
    else:
        mine, moved = (None if table is None else table.filter(pl.col("model") == "student").drop("model")
                       for table in student_tables.values())
    displacements = (teacher_moved, moved) if teacher_moved is not None and moved is not None else None
    title = f"{caption(student)}: layer {number} weights on the teacher's final representation (Fig. 22-23)"
    pairs = sample_pairs(vectors.shape[1], config.eigen_pairs, seed=0)
    found = pair_evidence(f"eigen/layer{number}_", (teacher, mine), displacements, values.numpy(), pairs, title,
                          f"figures/eigen_pairs_layer{number}.png")
    kept = {names["trajectory"]: (teacher, mine), **({names["displacement"]: displacements} if displacements else {})}
    return found + Evidence({}, tables={name: both_models(*pair) for name, pair in kept.items()})


def both_models(teacher: pl.DataFrame, student: pl.DataFrame) -> pl.DataFrame:
    """A teacher's and a student's tables as one, told apart by a `model` column."""
    return pl.concat([t.with_columns(pl.lit(name).alias("model")) for name, t in (("teacher", teacher),
                                                                                   ("student", student))])
