"""The `analyze` entry point's work: fetch a student's confidence tables, compute the paper's
statistics and figures, log them in an `analysis` run and copy the key numbers onto the student."""
from __future__ import annotations

import re
import time

import polars as pl

from kdtrack import tracking
from kdtrack.analysis import figures
from kdtrack.analysis.metrics import quantile_slope, summary
from kdtrack.config import AnalyzeConfig, to_params
from kdtrack.errors import UserError

SPLITS = ("train", "test")


def _students(config: AnalyzeConfig) -> list:
    if config.student_run_id:
        run = tracking.get_run(tracking.follow_launcher(config.student_run_id))
        role = run.data.tags.get(tracking.ROLE)
        if role != "student":
            raise UserError(f"student_run_id={config.student_run_id!r} is a {role or 'non-kdtrack'} run; "
                            "a distilled student run (role 'student', from distill) is required")
        if run.info.status != "FINISHED":
            raise UserError(f"student_run_id={config.student_run_id!r} has status {run.info.status}; "
                            "a FINISHED run is required")
        if config.experiment:
            named = tracking.client().get_experiment_by_name(config.experiment)
            if named is None or named.experiment_id != run.info.experiment_id:
                raise UserError(f"student_run_id={config.student_run_id!r} belongs to experiment "
                                f"{tracking.client().get_experiment(run.info.experiment_id).name!r}, "
                                f"not to experiment={config.experiment!r}")
        return [run]
    if not config.experiment:
        raise UserError("analyze needs student_run_id=<run id> or experiment=<name>; both are empty")
    experiment = tracking.client().get_experiment_by_name(config.experiment)
    if experiment is None:
        raise UserError(f"experiment={config.experiment!r} does not exist in {tracking.mlflow.get_tracking_uri()!r}")
    ids = [experiment.experiment_id]
    analyzed = {r.data.tags.get("kdtrack.student_run_id") for r in tracking.search_all(
        ids, f"tags.`{tracking.ROLE}` = 'analysis' and attributes.status = 'FINISHED'")}
    students = tracking.search_all(ids, f"tags.`{tracking.ROLE}` = 'student' and attributes.status = 'FINISHED'")
    return [s for s in students if s.info.run_id not in analyzed]


def accuracy_row(student) -> dict[str, float]:
    """Table 2's row: teacher, one-hot student and distilled student, train and test accuracy."""
    tags = student.data.tags
    sources = {"teacher": tags.get("kdtrack.teacher_run_id"), "student_onehot": tags.get("kdtrack.onehot_run_id"),
               "student_distill": student.info.run_id}
    row = {}
    for name, run_id in sources.items():
        if not run_id:
            continue
        metrics = tracking.get_run(run_id).data.metrics
        for split in SPLITS:
            if f"{split}/acc" in metrics:
                row[f"table2/{name}_{split}_acc"] = metrics[f"{split}/acc"]
    return row


def snapshot_tables(student_id: str) -> list[tuple[int, dict[str, pl.DataFrame]]]:
    """The `confidences/step_<N>/` snapshots of a run, by step."""
    out = []
    for entry in tracking.client().list_artifacts(student_id, "confidences"):
        match = re.fullmatch(r"confidences/step_(\d+)", entry.path)
        if entry.is_dir and match:
            out.append((int(match.group(1)), {split: tracking.load_table(student_id, f"{entry.path}/{split}.parquet")
                                              for split in SPLITS}))
    return sorted(out, key=lambda item: item[0])


def snapshot_slopes(snapshots, fraction: float) -> list[tuple[int, dict[str, float]]]:
    """Bottom and top slopes per snapshot, logged as `timeline/...` metrics at the snapshot's step."""
    pct = round(fraction * 100)
    return [(step, {f"timeline/{split}/slope_{side}{pct}": quantile_slope(tables[split], side, fraction)
                    for split in SPLITS for side in ("bottom", "top")}) for step, tables in snapshots]


def test_accuracy(run_id: str, until: int | None = None) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in tracking.client().get_metric_history(run_id, "test/acc")
            if until is None or m.step <= until]


def accuracy_trajectories(student) -> tuple[dict, dict]:
    """Fig. 24's curves: this student (its `from_run_id` run's curve up to the switch prepended),
    the one-hot teacher, and the other students of the same teacher in the experiment."""
    tags = student.data.tags
    teacher_id = tags.get("kdtrack.teacher_run_id", "")
    runs = [student] + [r for r in tracking.search_all(
        [student.info.experiment_id], f"tags.`{tracking.ROLE}` = 'student' and "
        f"tags.`kdtrack.teacher_run_id` = '{teacher_id}' and attributes.status = 'FINISHED'")
        if r.info.run_id != student.info.run_id]
    curves, marks = {}, {}
    if teacher_id:
        curves["one-hot teacher"] = test_accuracy(teacher_id)
    for run in runs:
        label = f"{run.info.run_name} ({run.info.run_id[:6]})"
        points = test_accuracy(run.info.run_id)
        switch_step = run.data.tags.get("kdtrack.switch_step")
        if switch_step:
            marks[label] = int(switch_step)
            if run.data.tags.get("kdtrack.from_run_id"):
                points = test_accuracy(run.data.tags["kdtrack.from_run_id"], int(switch_step)) + points
        curves[label] = points
    return {k: v for k, v in curves.items() if v}, marks


def has_artifact(run_id: str, path: str) -> bool:
    folder = path.rsplit("/", 1)[0]
    return any(a.path == path for a in tracking.client().list_artifacts(run_id, folder))


def eigen_evidence(student, config: AnalyzeConfig, run: tracking.TrackedRun) -> dict[str, float]:
    """Fig. 19-21 and the exaggerated-pair fraction (teacher vs student trajectories), Fig. 17
    (top-K truncation accuracy on clean and mislabeled training points) and §D.7's next layer;
    {} without trajectories."""

    from kdtrack.analysis.eigenspace import exaggerated_fraction, pair_table, sample_pairs, top_k_sweep
    from kdtrack.eigen import eigendirections, layer_inputs, truncated_to_top
    from kdtrack.pipeline import EIGEN_POINTS, data_of, rebuild_model
    from kdtrack.training import predict

    student_id, teacher_id = student.info.run_id, student.data.tags.get("kdtrack.teacher_run_id", "")
    path = "eigen/trajectory.parquet"
    if not (teacher_id and has_artifact(student_id, path) and has_artifact(teacher_id, path)):
        return {}
    teacher, mine = tracking.load_table(teacher_id, path), tracking.load_table(student_id, path)
    directions = sum(c.startswith("v") for c in mine.columns)
    pairs = pair_table(teacher, mine, sample_pairs(directions, config.eigen_pairs, seed=0))
    fraction, decided = exaggerated_fraction(pairs)
    run.log_table(pairs, "eigen/pairs.parquet")
    shown = sample_pairs(directions, 12, seed=1)
    same = student.data.tags.get("kdtrack.same_init") == "teacher"
    run.log_figure(figures.eigen_grid(teacher, mine, shown, "first-layer eigen-trajectories (Fig. 19-21)"
                                      + ("" if same else "; NOT the same initialization")), "figures/eigen_pairs.png")

    data = data_of(student)
    model = rebuild_model(student, data)
    _, vectors = eigendirections(layer_inputs(model, data.x_train[:EIGEN_POINTS], int(student.data.params["seed"])))
    rows = []
    for k in top_k_sweep(vectors.shape[1]):
        correct = predict(truncated_to_top(model, vectors, k), data.x_train).argmax(1) == data.y_train
        for name, mask in (("clean", ~data.is_noisy), ("mislabeled", data.is_noisy)):
            if mask.any():
                rows.append({"k": k, "points": name, "accuracy": correct[mask].float().mean().item()})
    table = pl.DataFrame(rows)
    run.log_table(table, "eigen/top_k_accuracy.parquet")
    run.log_figure(figures.top_k_accuracy(table, "accuracy with the top-K first-layer components (Fig. 17)"),
                   "figures/top_k_accuracy.png")
    out = {"eigen/exaggerated_pair_frac": fraction, "eigen/pairs": float(decided)}
    out.update(hidden_layer_evidence(student, teacher_id, data, config, run))
    return out


def hidden_layer_evidence(student, teacher_id: str, data, config: AnalyzeConfig, run) -> dict[str, float]:
    """§D.7: the eigenspace of the teacher's final hidden representation (fixed: the teacher at
    the end of training), and both models' final-layer weights projected onto it over training."""
    from kdtrack.analysis.eigenspace import exaggerated_fraction, pair_table, sample_pairs
    from kdtrack.eigen import components, eigendirections, hidden_representation, last_layer
    from kdtrack.pipeline import EIGEN_POINTS, rebuild_model

    path = "eigen/last_layer_weights.pt"
    if not (has_artifact(student.info.run_id, path) and has_artifact(teacher_id, path)):
        return {}
    teacher_model = rebuild_model(tracking.get_run(teacher_id), data)
    number, _ = last_layer(teacher_model)
    _, vectors = eigendirections(hidden_representation(teacher_model, data.x_train[:EIGEN_POINTS]))
    tables = {}
    for name, run_id in (("teacher", teacher_id), ("student", student.info.run_id)):
        saved = tracking.load_state(run_id, path)
        rows = [{"step": int(step), **{f"v{k + 1}": float(c) for k, c in enumerate(components(w, vectors))}}
                for step, w in zip(saved["step"], saved["values"])]
        tables[name] = pl.DataFrame(rows)
    both = pl.concat([t.with_columns(pl.lit(name).alias("model")) for name, t in tables.items()])
    run.log_table(both, f"eigen/layer{number}_trajectory.parquet")
    directions = vectors.shape[1]
    pairs = pair_table(tables["teacher"], tables["student"], sample_pairs(directions, config.eigen_pairs, seed=0))
    run.log_figure(figures.eigen_grid(tables["teacher"], tables["student"], sample_pairs(directions, 12, seed=1),
                                      f"layer {number} weights on the teacher's final representation (Fig. 22-23)"),
                   f"figures/eigen_pairs_layer{number}.png")
    fraction, decided = exaggerated_fraction(pairs)
    return {f"eigen/layer{number}_exaggerated_pair_frac": fraction, f"eigen/layer{number}_pairs": float(decided)}


def analyze_student(student, config: AnalyzeConfig) -> str:
    student_id = student.info.run_id
    params = {**to_params(config), "student_run_id": student_id, "experiment": ""}
    key = tracking.run_key("analysis", params)
    found = tracking.find_finished(student.info.experiment_id, "analysis", key, params)
    if found:
        print(f"kdtrack: reusing finished analysis run {found.info.run_id} of student {student_id}")
        tracking.mark_launcher_result(found.info.run_id)
        return found.info.run_id
    tables = {split: tracking.load_table(student_id, f"confidences/{split}.parquet") for split in SPLITS}
    values = summary(tables, config.quantile)
    values.update(accuracy_row(student))
    snapshots = snapshot_tables(student_id)
    timeline = snapshot_slopes(snapshots, config.quantile)

    tags = {tracking.KEY: key, "kdtrack.student_run_id": student_id,
            "kdtrack.teacher_run_id": student.data.tags.get("kdtrack.teacher_run_id", "")}
    name = student.info.run_name.replace("student-", "analysis-", 1)
    run = tracking.TrackedRun(student.info.experiment_id, "analysis", name, params, tags)
    try:
        run.metrics(values, 0)
        for step, slopes in timeline:
            run.metrics(slopes, step)
        bins = config.bins
        run.log_figure(figures.confidence_grid(tables, "phi_teacher", "phi_student",
                       "confidence on the teacher's predicted class (Fig. 1a)", bins), "figures/confidence.png")
        run.log_figure(figures.confidence_grid(tables, "phi_teacher_label", "phi_student_label",
                       "confidence on the ground-truth class (Fig. 13)", bins), "figures/confidence_label.png")
        for split in SPLITS:
            run.log_figure(figures.groups_grid(tables[split], split, bins), f"figures/groups_{split}.png")
            run.log_figure(figures.metrics_grid(tables[split], split, bins), f"figures/metrics_{split}.png")
        eigen = eigen_evidence(student, config, run)
        run.metrics(eigen, 0)
        values.update(eigen)
        if snapshots:
            run.log_figure(figures.timeline_grid(snapshots, f"{name}: deviations over training (Fig. 25-26)", bins // 2),
                           "figures/timeline.png")
        curves, marks = accuracy_trajectories(student)
        if len(curves) > 1 or any(len(points) > 1 for points in curves.values()):
            run.log_figure(figures.accuracy_curves(curves, marks, "test accuracy over training (Fig. 24)"),
                           "figures/accuracy_trajectory.png")
        if tables["train"]["is_noisy"].any():
            run.log_figure(figures.noisy_scatter(tables["train"]), "figures/noisy_train.png")
        row = pl.DataFrame([{"metric": k, "value": v} for k, v in values.items()])
        run.log_table(row, "summary.parquet")
        run.finish("FINISHED")
    except BaseException:
        run.finish("FAILED")
        raise
    copied = {k: v for k, v in values.items() if "slope" in k or "underfit" in k or k.startswith("eigen/")}
    tracking.client().log_batch(student_id, metrics=[tracking.Metric(k, v, int(time.time() * 1000), 0) for k, v in copied.items()])
    tracking.client().set_tag(student_id, "kdtrack.analysis_run_id", run.run_id)
    print(f"kdtrack: analysis run {run.run_id} of student {student_id}: "
          + ", ".join(f"{k}={v:.3f}" for k, v in copied.items() if "slope_bottom" in k and "label" not in k))
    return run.run_id


def analyze(config: AnalyzeConfig) -> list[str]:
    tracking.check_store()
    students = _students(config)
    if not students:
        print(f"kdtrack: every finished student in experiment {config.experiment!r} is already analyzed")
    ids = [analyze_student(student, config) for student in students]
    if config.theory:  # Theorem 4.1 beside the empirical evidence, in the same experiment
        from kdtrack.config import TheoryConfig
        from kdtrack.theory import theory

        name = config.experiment or (tracking.client().get_experiment(students[0].info.experiment_id).name
                                     if students else "")
        ids.append(theory(TheoryConfig(experiment=name)))
    return ids
