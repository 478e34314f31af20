"""What an analysis run records, gathered before the run exists: `Evidence` is a finished value
of numbers, tables and figures, and `record` logs one in a run."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Mapping

import polars as pl

from kdtrack import tracking
from kdtrack.analysis import figures
from kdtrack.config import AnalyzeConfig
from kdtrack.contract import FROM_RUN, ONEHOT_RUN, ROLE, SWITCH_STEP, TEACHER_RUN
from kdtrack.metrics.deviations import quantile_lines, quantile_slope, summary

SPLITS = ("train", "test")


@dataclass(frozen=True)
class Evidence:
    metrics: Mapping[str, float]  # logged at step 0
    timeline: tuple[tuple[int, Mapping[str, float]], ...] = ()  # metrics logged at a snapshot's step
    tables: Mapping[str, pl.DataFrame] = field(default_factory=dict)  # artifact path -> table
    # artifact path -> a function that draws the Figure: drawn only when recorded, one at a time,
    # and never where the analysis is asked for no figures
    figures: Mapping[str, Callable[[], object]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # what a reader must know about the numbers: the run's description

    def __add__(self, other: "Evidence") -> "Evidence":
        return Evidence({**self.metrics, **other.metrics}, self.timeline + other.timeline,
                        {**self.tables, **other.tables}, {**self.figures, **other.figures},
                        self.notes + other.notes)


def record(run: tracking.TrackedRun, evidence: Evidence) -> None:
    run.metrics(dict(evidence.metrics), 0)
    for step, values in evidence.timeline:
        run.metrics(dict(values), step)
    for path, table in evidence.tables.items():
        run.log_table(table, path)
    for path, draw in evidence.figures.items():
        run.log_figure(draw(), path)


def accuracy_row(student) -> dict[str, float]:
    """Table 2's row: teacher, one-hot student and distilled student, train and test accuracy."""
    tags = student.data.tags
    sources = {"teacher": tags.get(TEACHER_RUN), "student_onehot": tags.get(ONEHOT_RUN),
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
    for path, is_dir in tracking.artifact_paths(student_id, "confidences"):
        match = re.fullmatch(r"confidences/step_(\d+)", path)
        if is_dir and match:
            out.append((int(match.group(1)), {split: tracking.load_table(student_id, f"{path}/{split}.parquet")
                                              for split in SPLITS}))
    return sorted(out, key=lambda item: item[0])


def snapshot_slopes(snapshots, fraction: float) -> list[tuple[int, dict[str, float]]]:
    """Bottom and top slopes per snapshot, logged as `timeline/...` metrics at the snapshot's step."""
    pct = round(fraction * 100)
    return [(step, {f"timeline/{split}/slope_{side}{pct}": quantile_slope(tables[split], side, fraction)
                    for split in SPLITS for side in ("bottom", "top")}) for step, tables in snapshots]


def test_accuracy(run_id: str, until: int | None = None) -> list[tuple[int, float]]:
    return [(step, value) for step, value in tracking.metric_history(run_id, "test/acc")
            if until is None or step <= until]


def accuracy_trajectories(student) -> tuple[dict, dict]:
    """Fig. 24's curves: this student (its `from_run_id` run's curve up to the switch prepended),
    the one-hot teacher, and the other students of the same teacher in the experiment."""
    tags = student.data.tags
    teacher_id = tags.get(TEACHER_RUN, "")
    runs = [student] + [r for r in tracking.search_all(
        [student.info.experiment_id], f"tags.`{ROLE}` = 'student' and "
        f"tags.`{TEACHER_RUN}` = {tracking.quoted(teacher_id)} and attributes.status = 'FINISHED'")
        if r.info.run_id != student.info.run_id]
    curves, marks = {}, {}
    if teacher_id:
        curves["one-hot teacher"] = test_accuracy(teacher_id)
    for run in runs:
        label = f"{run.info.run_name} ({run.info.run_id[:6]})"
        points = test_accuracy(run.info.run_id)
        switch_step = run.data.tags.get(SWITCH_STEP)
        if switch_step:
            marks[label] = int(switch_step)
            if run.data.tags.get(FROM_RUN):
                points = test_accuracy(run.data.tags[FROM_RUN], int(switch_step)) + points
        curves[label] = points
    return {k: v for k, v in curves.items() if v}, marks


def caption(student) -> str:
    """What a figure of `student` is titled with: its setting, as the report groups seeds
    (preset, teacher > student architecture, label noise), and its seed."""
    params = student.data.params
    arch = params.get("arch", "?")
    noise = params.get("label_noise", "0")
    noisy = f" noise={noise}" if noise and float(noise) else ""
    return (f"{params.get('preset') or params.get('dataset', '?')} {params.get('teacher_arch') or arch}>{arch}"
            f"{noisy}, seed {params.get('seed', '?')}")


def fit_lines(tables: dict[str, pl.DataFrame], fraction: float, columns: str = "") -> dict:
    """Fig. 1a's (`columns=""`) or Fig. 13's (`"_label"`) fit lines per split: the same
    `quantile_slope` as the logged `<split>/slope_bottom<pct>{columns}` metrics."""
    return {split: quantile_lines(table, fraction, f"phi_teacher{columns}", f"phi_student{columns}")
            for split, table in tables.items()}


def confidence_evidence(student, config: AnalyzeConfig) -> Evidence:
    """The slopes and underfitting statistics (Tables 3-6, Fig. 4), Table 2's accuracy row, the
    confidence figures (Fig. 1a, 13, 14, 16) and, with snapshots, their course over training
    (Fig. 25-26); the accuracy trajectories beside the teacher's other students (Fig. 24)."""
    student_id, bins, fraction = student.info.run_id, config.bins, config.quantile
    tables = {split: tracking.load_table(student_id, f"confidences/{split}.parquet") for split in SPLITS}
    values = {**summary(tables, fraction), **accuracy_row(student)}
    snapshots = snapshot_tables(student_id)
    named = caption(student)
    drawn = {
        "figures/confidence.png": partial(
            figures.confidence_grid, tables, fit_lines(tables, fraction), "phi_teacher", "phi_student",
            f"{named}: confidence on the teacher's predicted class (Fig. 1a)", bins),
        "figures/confidence_label.png": partial(
            figures.confidence_grid, tables, fit_lines(tables, fraction, "_label"), "phi_teacher_label",
            "phi_student_label",
            f"{named}: confidence on the true class (Fig. 13)", bins)}
    for split in SPLITS:
        drawn[f"figures/groups_{split}.png"] = partial(figures.groups_grid, tables[split], split, named, bins)
        drawn[f"figures/metrics_{split}.png"] = partial(figures.metrics_grid, tables[split], split, named, bins)
    if snapshots:
        title = f"{named}: deviations over training (Fig. 25-26)"
        drawn["figures/timeline.png"] = partial(figures.timeline_grid, snapshots, title, bins // 2)
    # Fig. 24's curves read every sibling's metric history: only for a figure that is drawn
    curves, marks = accuracy_trajectories(student) if config.figures else ({}, {})
    if len(curves) > 1 or any(len(points) > 1 for points in curves.values()):
        drawn["figures/accuracy_trajectory.png"] = partial(
            figures.accuracy_curves, curves, marks, f"{named}: test accuracy over training (Fig. 24)")
    if tables["train"]["is_noisy"].any():
        drawn["figures/noisy_train.png"] = partial(figures.noisy_scatter, tables["train"], named)
    return Evidence(values, tuple(snapshot_slopes(snapshots, config.quantile)), figures=drawn)


def analysis_name(student) -> str:
    """Named like its student, with `analysis` for the kind among the `·`-separated parts:
    `mnist_mlp·s0·student·3fa1` -> `mnist_mlp·s0·analysis·3fa1`; a name without the kind
    `student` (a switch run's `...·switch-to-onehot`) gains `·analysis`."""
    parts = student.info.run_name.split("·")
    if "student" not in parts:
        return "·".join([*parts, "analysis"])
    kind = parts.index("student")
    return "·".join([*parts[:kind], "analysis", *parts[kind + 1:]])

