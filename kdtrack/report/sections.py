"""The sections a report may have: `Section`, what a dashboard names (`SECTIONS`) and the builder
of each. A builder is a pure function of `Fetched`, what report.gather read from the store before
anything renders: it reads no run and no artifact itself, so that a report fetches once."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import polars as pl

from kdtrack.report import tables
from kdtrack.report.claims import Claim
from kdtrack.report.settings import legend, short_names

# Figures that grow with the settings are paged: Fig. 5 draws PANELS settings a figure (a column
# each), up to MOST_SETTINGS, whose tables alone gather reads (each setting's seeds' per-sample
# tables: reading every setting's would make the report's time grow with the study). The switch
# curves need no pages: one mean curve per kind of student and teacher, not one per run.
PANELS = 6
MOST_SETTINGS = 4 * PANELS
SPLITS = ("train", "test")


@dataclass(frozen=True)
class Fetched:
    """What a report shows, read before rendering (report.gather): the runs, those that count, and
    the artifacts of the sections its dashboard chose; a section not chosen has nothing here."""

    experiments: tuple[str, ...]
    filter_string: str
    version: str  # the code version whose analyses count
    table: pl.DataFrame  # every run fetched, with the size of its artifacts
    runs: pl.DataFrame  # the runs that enter statistics (collect.counted)
    left_out: tuple[str, ...]  # what counted left out, one phrase per reason
    # Fig. 5: the per-sample tables by student run id and split, and the tables not read, and why
    confidences: Mapping[str, Mapping[str, pl.DataFrame]] = field(default_factory=dict)
    unread: tuple[str, ...] = ()
    accuracy: Mapping[str, list[tuple[int, float]]] = field(default_factory=dict)  # switch run id: (step, test/acc)
    params: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # trial run id: its params


@dataclass(frozen=True)
class Section:
    heading: str
    note: str = ""
    frames: tuple[pl.DataFrame, ...] = ()
    figures: tuple = ()
    missing: tuple[str, ...] = ()  # what a figure lacks: the artifact and why
    settings: Mapping[str, str] = field(default_factory=dict)  # legend: a short name shown -> its setting
    files: Mapping[str, pl.DataFrame] = field(default_factory=dict)  # CSV files beside the report, linked


# Which runs a section draws artifacts of: report.gather reads these, the builders draw them.

def confidence_runs(runs: pl.DataFrame) -> pl.DataFrame:
    """The students of the first MOST_SETTINGS settings, by setting and seed."""
    students = runs.filter(pl.col("role") == "student").sort("setting", "seed")
    settings = students["setting"].unique(maintain_order=True).head(MOST_SETTINGS)
    return students.filter(pl.col("setting").is_in(settings.implode()))


def trial_runs(runs: pl.DataFrame) -> pl.DataFrame:
    return runs.filter(pl.col("role") == "trial")


def seeds_phrase(seeds, pooled: bool = False) -> str:
    """"seed 0", "seeds 0, 1, 2" ("... pooled"): which runs a figure draws."""
    seeds = sorted({str(s) for s in seeds if s is not None}, key=lambda s: (len(s), s))
    if len(seeds) < 2:
        return f"seed {seeds[0]}" if seeds else "no seed recorded"
    return f"seeds {', '.join(seeds)}" + (" pooled" if pooled else "")


def confidence_grids(fetched: Fetched) -> list:
    """Fig. 5: per setting (the first MOST_SETTINGS, by short name), teacher vs student phi of
    every seed's student pooled, train above test, PANELS settings a figure; none when no table
    was read (a figure without them, not a failed report: the section says which are missing)."""
    from kdtrack.analysis.figures import setting_grid

    names = short_names(fetched.runs)
    loaded = {}
    for row in confidence_runs(fetched.runs).iter_rows(named=True):
        splits = fetched.confidences.get(row["run_id"])
        if splits is not None:
            loaded.setdefault(names.get(row["setting"], row["setting"]), []).append((row["seed"], splits))
    columns = [(f"{setting}, {seeds_phrase((seed for seed, _ in runs), pooled=True)}",
                {split: pl.concat([splits[split] for _, splits in runs], how="diagonal_relaxed")
                 for split in SPLITS}) for setting, runs in loaded.items()]
    return [setting_grid(columns[start:start + PANELS]) for start in range(0, len(columns), PANELS)]


def switch_curves(fetched: Fetched):
    """Fig. 24 over seeds: per teacher, one mean test-accuracy curve per kind of student (one-hot,
    KD, each switch), a 95% band over seeds, the switch windows shaded; None without switch runs."""
    from kdtrack.report import switching
    from kdtrack.report.figures import switch_curves_figure

    drawn = switching.curves(fetched.runs, fetched.accuracy)
    if drawn.is_empty():
        return None
    title = f"test accuracy over training, mean and 95% t interval over {seeds_phrase(drawn['seed'])} (Fig. 24)"
    return switch_curves_figure(drawn, switching.windows(fetched.runs), title)


def switch_gain(fetched: Fetched):
    """The switching gain paired by teacher run against the teacher's train accuracy, when the
    switch students' teachers differ in teacher_fit_fraction; None otherwise."""
    from kdtrack.report import switching
    from kdtrack.report.figures import switch_gain_figure

    paired = switching.gains(fetched.runs).drop_nulls()
    if paired["teacher_fit_fraction"].n_unique() < 2:
        return None
    title = f"the switching gain against the teacher's fit ({seeds_phrase(paired['seed'])}, paired by teacher run)"
    return switch_gain_figure(paired, title)


def claims_section(fetched: Fetched, claims: tuple[Claim, ...]) -> Section:
    """The report's first section, when its dashboard declares claims (report.verdicts)."""
    from kdtrack.report.verdicts import LEGEND, claim_table, settings_legend, shown

    results = claim_table(fetched.runs, list(fetched.experiments), claims)
    note = ("per claim and setting: verdict (holds/fails: the whole interval on one side of the threshold), seeds (n), "
            "mean over seeds and its Student's t 95% interval ('-': one seed gives none), what the paper expects and "
            "reports for that setting ('-': nothing there). " + ". ".join(LEGEND) + ".")
    return Section("Claims", note, (shown(results, len(fetched.experiments) > 1),),
                   settings=settings_legend(results))


# Section builders: each takes what was fetched and returns its Section, or None when it has
# nothing to show.

def runs_section(fetched: Fetched) -> Section:
    """Per setting, not per run (a study has hundreds): its seeds, teachers, students, analyses and
    artifacts; every run, one a row, goes to runs.csv beside the report."""
    names = short_names(fetched.table)
    summary = tables.by_setting(fetched.table, fetched.runs, names)
    summary = summary if len(fetched.experiments) > 1 else summary.drop("experiment")
    note = ("per setting: its students' seeds and statuses, the teachers they learn from and their one-hot "
            "baselines (a teacher serving several settings counts in each), analyses counted and not (superseded, "
            "of other code, unfinished), and the artifacts' size; an analysis belongs to its student's setting")
    shown = set(summary["setting"])
    return Section("Runs", note, (summary,), settings={k: v for k, v in legend(names).items() if k in shown},
                   files={"runs.csv": tables.run_list(fetched.table, fetched.runs, names)})


def _per_experiment(fetched: Fetched, tabulate) -> tuple[pl.DataFrame, ...]:
    """`tabulate` of each experiment's runs; with two experiments, their difference too."""
    frames = [tabulate(fetched.runs.filter(pl.col("experiment") == e)) for e in fetched.experiments]
    return (*frames, tables.difference(*frames)) if len(frames) == 2 else tuple(frames)


def table2_section(fetched: Fetched) -> Section:
    return Section("Table 2: accuracy", "test and train accuracy in %, mean ± std over the seeds of each setting; "
                   "'= teacher': a self-distillation, whose one-hot student is the teacher itself",
                   _per_experiment(fetched, tables.table2))


def slopes_section(fetched: Fetched) -> Section:
    return Section("Tables 3-6: slopes of the bottom and top 25%", "mean ± std over the seeds of each setting; "
                   "> 1 at the bottom: the student exaggerates the teacher's low confidence",
                   _per_experiment(fetched, tables.slopes))


def confidence_grid_section(fetched: Fetched) -> Section:
    settings = fetched.runs.filter(pl.col("role") == "student")["setting"].unique()
    left = [f"{settings.len() - MOST_SETTINGS} settings beyond the first {MOST_SETTINGS} (by name): their tables are "
            "not read"] if settings.len() > MOST_SETTINGS else []
    names = short_names(fetched.runs)
    drawn = set(confidence_runs(fetched.runs)["setting"])
    return Section("Fig. 5: logit-logit plots", f"train above test, {PANELS} settings a figure",
                   figures=tuple(confidence_grids(fetched)), missing=(*fetched.unread, *left),
                   settings={k: v for k, v in legend(names).items() if v in drawn})


def eigen_section(fetched: Fetched) -> Section | None:
    if "m:eigen/exaggerated_pair_frac" not in fetched.runs.columns:  # no analysis computed the eigenspace
        return None
    return Section("Eigenspace: the student ahead of its teacher along top directions (Theorem 4.1)",
                   "on the teacher's scale, per pair delta = the student's bottom-direction progress minus the "
                   "teacher's at matched top progress; exaggerated: delta < 0 (docs/eigenspace.md). Top-biased "
                   "(§D.2): on the model's own scale, its bottom direction has gone less than half way when its top "
                   "one reaches half way", (tables.eigen(fetched.runs),))


def switch_section(fetched: Fetched) -> Section | None:
    figures = tuple(f for f in (switch_curves(fetched), switch_gain(fetched)) if f is not None)
    note = ("test accuracy over training per teacher, mean over seeds with its 95% t band, each switch's window "
            "shaded; below it, the switching gain (switch minus KD test accuracy, per seed, paired by teacher run) "
            "against the teacher's train accuracy, with each teacher_fit_fraction level's mean and 95% t interval")
    return Section("Loss switching", note, figures=figures) if figures else None


def ablation_section(fetched: Fetched) -> Section | None:
    from kdtrack.report.figures import ablation_figure

    trials = trial_runs(fetched.runs)
    if trials.is_empty():
        return None
    studies = fetched.runs.filter(pl.col("role") == "study")
    frame = studies.select([c for c in ("study", "run_id", "m:trials/complete", "m:trials/fail", "m:trials/pruned",
                                        "m:best/trial") if c in studies.columns])
    figures, missing = [], []
    for (study,), part in trials.group_by("study", maintain_order=True):
        objectives = [c for c in part.columns if c.startswith("m:objective/") and part[c].is_not_null().any()]
        params = [fetched.params[r] for r in part["run_id"]]  # the knob's name is the trial's param
        knob = next((k for k in params[0] if k != "seed"), None)
        if knob is None or not objectives:
            missing.append(f"study {study}: its trials have no knob param or no objective metric")
            continue
        labels = [p.get(knob, "") for p in params]
        seeds = seeds_phrase(p.get("seed") for p in params)
        figures.append(ablation_figure(part, objectives, knob, labels, f"study {study} ({seeds})"))
    return Section("Ablations (§C.5)", "objective of each finished trial against the ablated value", (frame,),
                   tuple(figures), tuple(missing))


# The sections a dashboard may name; dashboard.load checks names against these keys and lists them,
# in this order, as what is allowed.
SECTIONS: dict[str, Callable[[Fetched], Section | None]] = {
    "runs": runs_section,
    "table2": table2_section,
    "slopes": slopes_section,
    "confidence_grid": confidence_grid_section,
    "eigen": eigen_section,
    "switch": switch_section,
    "ablation": ablation_section,
}
