"""The sections a report may have: `Section`, what a dashboard names (`SECTIONS`) and the builder
of each, which takes the runs table and the experiments compared and returns its Section."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import click
import polars as pl

from kdtrack import tracking
from kdtrack.analysis.style import styled
from kdtrack.errors import UserError
from kdtrack.report import tables


@dataclass
class Section:
    heading: str
    note: str = ""
    frames: list[pl.DataFrame] = field(default_factory=list)
    figures: list = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # what a figure lacks: the artifact and why




def seeds_phrase(seeds, pooled: bool = False) -> str:
    """"seed 0", "seeds 0, 1, 2" ("... pooled"): which runs a figure draws."""
    seeds = sorted({str(s) for s in seeds if s is not None}, key=lambda s: (len(s), s))
    if len(seeds) < 2:
        return f"seed {seeds[0]}" if seeds else "no seed recorded"
    return f"seeds {', '.join(seeds)}" + (" pooled" if pooled else "")


def confidence_grid(table: pl.DataFrame, most: int = 6):
    """Fig. 5: per setting (the first `most`), teacher vs student phi of every seed's student
    pooled, train above test; and the per-sample tables that could not be read (a figure
    without them, not a failed report)."""
    from kdtrack.analysis.figures import setting_grid

    students = table.filter(pl.col("role") == "student").sort("setting", "seed")
    settings = students["setting"].unique(maintain_order=True).head(most)
    chosen = students.filter(pl.col("setting").is_in(settings.implode()))
    loaded, missing = {}, []
    with click.progressbar(chosen.iter_rows(named=True), length=chosen.height, label="confidence tables",
                           file=click.get_text_stream("stderr")) as rows:
        for row in rows:
            try:
                splits = {split: tracking.load_table(row["run_id"], f"confidences/{split}.parquet")
                          for split in ("train", "test")}
            except UserError as error:
                missing.append(str(error))
                continue
            loaded.setdefault(row["setting"], []).append((row["seed"], splits))
    if not loaded:
        return None, missing
    columns = [(f"{setting}, {seeds_phrase((seed for seed, _ in runs), pooled=True)}",
                {split: pl.concat([splits[split] for _, splits in runs], how="diagonal_relaxed")
                 for split in ("train", "test")}) for setting, runs in loaded.items()]
    return setting_grid(columns), missing


def switch_curves(table: pl.DataFrame):
    from kdtrack.analysis.evidence import test_accuracy
    from kdtrack.analysis.figures import accuracy_curves

    runs = table.filter(pl.col("switch_step").is_not_null())
    if runs.is_empty():
        return None
    labelled = {f"{r['run_name']} ({r['run_id'][:6]})": r for r in runs.iter_rows(named=True)}
    curves = {label: test_accuracy(r["run_id"]) for label, r in labelled.items()}
    marks = {label: int(r["switch_step"]) for label, r in labelled.items()}
    settings = ", ".join(runs["setting"].drop_nulls().unique(maintain_order=True))
    title = f"{settings} ({seeds_phrase(runs['seed'])}): switch runs' test accuracy (Fig. 24)"
    return accuracy_curves({k: v for k, v in curves.items() if v}, marks, title)


# Section builders: each takes the runs table and the experiments compared (every builder gets both,
# so that one dict can call them all) and returns its Section, or None when it has nothing to show.

def runs_section(table: pl.DataFrame, experiments: list[str]) -> Section:
    return Section("Runs", frames=[tables.runs_summary(table)])


def _per_experiment(table: pl.DataFrame, experiments: list[str], tabulate) -> list[pl.DataFrame]:
    """`tabulate` of each experiment's runs; with two experiments, their difference too."""
    frames = [tabulate(table.filter(pl.col("experiment") == e)) for e in experiments]
    return [*frames, tables.difference(*frames)] if len(experiments) == 2 else frames


def table2_section(table: pl.DataFrame, experiments: list[str]) -> Section:
    return Section("Table 2: accuracy", "test and train accuracy in %, mean ± std over the seeds of each setting; "
                   "'= teacher': a self-distillation, whose one-hot student is the teacher itself",
                   _per_experiment(table, experiments, tables.table2))


def slopes_section(table: pl.DataFrame, experiments: list[str]) -> Section:
    return Section("Tables 3-6: slopes of the bottom and top 25%", "mean ± std over the seeds of each setting; "
                   "> 1 at the bottom: the student exaggerates the teacher's low confidence",
                   _per_experiment(table, experiments, tables.slopes))


def confidence_grid_section(table: pl.DataFrame, experiments: list[str]) -> Section:
    figure, missing = confidence_grid(table)
    return Section("Fig. 5: logit-logit plots", "train above test", figures=[figure] if figure else [],
                   missing=missing)


def eigen_section(table: pl.DataFrame, experiments: list[str]) -> Section | None:
    if "m:eigen/exaggerated_pair_frac" not in table.columns:  # no analysis computed the eigenspace
        return None
    return Section("Eigenspace: student more top-biased than teacher", "fraction of direction pairs",
                   [tables.eigen(table)])


def switch_section(table: pl.DataFrame, experiments: list[str]) -> Section | None:
    figure = switch_curves(table)
    return Section("Loss switching", figures=[figure]) if figure else None


def numbers(values: list[str]) -> list[float] | None:
    """`values` as floats, or None when one is not a number (a categorical knob: an optimizer)."""
    try:
        return [float(v) for v in values]
    except ValueError:
        return None


def ablation_section(table: pl.DataFrame, experiments: list[str]) -> Section | None:
    trials = table.filter(pl.col("role") == "trial")
    if trials.is_empty():
        return None
    section = Section("Ablations (§C.5)", "objective of each finished trial against the ablated value")
    studies = table.filter(pl.col("role") == "study")
    section.frames.append(studies.select([c for c in ("study", "run_id", "m:trials/complete", "m:trials/fail",
                                                     "m:trials/pruned", "m:best/trial") if c in studies.columns]))
    for (study,), part in trials.group_by("study", maintain_order=True):
        objectives = [c for c in part.columns if c.startswith("m:objective/") and part[c].is_not_null().any()]
        runs = [tracking.get_run(r) for r in part["run_id"]]  # the knob's name is the trial's param
        knob = next((k for k in runs[0].data.params if k != "seed"), None)
        if knob is None or not objectives:
            section.missing.append(f"study {study}: its trials have no knob param or no objective metric")
            continue
        labels = [r.data.params.get(knob, "") for r in runs]
        seeds = seeds_phrase(r.data.params.get("seed") for r in runs)
        section.figures.append(ablation_figure(part, objectives, knob, labels, f"study {study} ({seeds})"))
    return section


@styled
def ablation_figure(trials: pl.DataFrame, objectives: list[str], knob: str, labels: list[str], title: str):
    """Each objective of the finished `trials` against the ablated `knob`'s values (`labels`)."""
    import matplotlib.pyplot as plt

    values = numbers(labels)
    figure, axes = plt.subplots(1, len(objectives), figsize=(5 * len(objectives), 3.8), squeeze=False)
    for ax, column in zip(axes[0], objectives):
        points = [(x, y) for x, y in zip(values or labels, trials[column].to_list()) if y is not None]
        ax.scatter(*zip(*points))  # strings plot as categories, in order of appearance
        ax.set(xlabel=knob, ylabel=column.removeprefix("m:objective/"), title=title,
               xscale="log" if (knob == "lr" and values and min(values) > 0) else "linear")
    return figure


# The sections a dashboard may name; dashboard.load checks names against these keys and lists them,
# in this order, as what is allowed.
SECTIONS: dict[str, Callable[[pl.DataFrame, list[str]], Section | None]] = {
    "runs": runs_section,
    "table2": table2_section,
    "slopes": slopes_section,
    "confidence_grid": confidence_grid_section,
    "eigen": eigen_section,
    "switch": switch_section,
    "ablation": ablation_section,
}


