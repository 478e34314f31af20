"""Runs of one or more experiments as one polars table, read in bulk (tracking.runs_frame: one
read per experiment, never a call per run), and which of them count in statistics."""
from __future__ import annotations

import polars as pl

from kdtrack import tracking
from kdtrack.config import KD_LOSS_WEIGHTS
from kdtrack.contract import (
    CODE_VERSION,
    INCOMPLETE,
    KEY,
    ONEHOT_RUN,
    ROLE,
    SOURCE,
    STUDENT_RUN,
    STUDY,
    SUITE,
    SWITCH_STEP,
    TEACHER_RUN,
    TRIAL,
    copied_to_student,
)
from kdtrack.errors import UserError

PARAMS = ("preset", "dataset", "arch", "teacher_arch", "width", "depth", "seed", "label_noise", "train_size",
          "batch_size", "lr", "epochs", "temperature", "switch_to", "switch_at", "kd_target", "confidence_power",
          "confidence_spread", "teacher_fit_fraction", "fit_fraction", "distill_weight", "extend_to", "switch_window",
          "kd_loss", "dkd_alpha", "dkd_beta", "dist_beta", "dist_gamma", "optimizer")
# SOURCE: "recorded" for a run trained outside kdtrack (kdtrack.record), which a claim can select or leave out
TAGS = (ROLE, TEACHER_RUN, ONEHOT_RUN, STUDENT_RUN, SWITCH_STEP, STUDY, TRIAL, CODE_VERSION, KEY, SUITE, INCOMPLETE,
        SOURCE)
# Every column but the metrics is text, even where no run has a value: a column that polars would
# infer as all-null type breaks joins and string expressions (a filter that leaves out analyses).
TEXT = ("experiment", "experiment_id", "run_id", "run_name", "status", "artifact_uri", *PARAMS,
        *(t.removeprefix("kdtrack.") for t in TAGS))
DERIVED = ("setting", "distillation")  # columns setting_of adds


def experiment_ids(names: list[str]) -> dict[str, str]:
    out = {}
    for name in names:
        found = tracking.experiment_id(name)
        if found is None:
            known = tracking.experiment_names()
            raise UserError(f"experiment {name!r} does not exist; experiments here: {', '.join(known) or 'none'}")
        out[name] = found
    return out


def _search(experiment_id: str, filter_string: str) -> pl.DataFrame:
    try:
        return tracking.runs_frame(experiment_id, filter_string, PARAMS, TAGS)
    except Exception as error:
        raise UserError(f"filter {filter_string!r} is not a valid MLflow search filter: "
                        f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") from None


def _analyses_of_students(experiment_id: str, runs: pl.DataFrame) -> pl.DataFrame:
    """The analysis runs of the students among `runs` that `runs` lacks. A filter on the students'
    params (`params.preset = ...`) leaves out their analyses, whose params differ, and with them
    every number of the paper's tables; so an analysis always comes with its student."""
    students = runs.filter(pl.col(ROLE) == "student")["run_id"]
    if students.is_empty():  # no student, no analysis to add: spare the store a read
        return runs.clear()
    analyses = tracking.runs_frame(experiment_id, f"tags.`{ROLE}` = 'analysis'", PARAMS, TAGS)
    return analyses.filter(pl.col(STUDENT_RUN).is_in(students.implode()), ~pl.col("run_id").is_in(
        runs["run_id"].implode()))


def known_params(table: pl.DataFrame) -> pl.DataFrame:
    """The PARAMS as stored, except that a student stored before kd_loss existed trained with plain
    KD (kd), and a KD method's weight is null on a run whose kd_loss does not use it, so that only
    what shaped its training can split a setting."""
    student = pl.col("role") == "student"
    table = table.with_columns(pl.when(student & pl.col("kd_loss").is_null()).then(pl.lit("kd"))
                               .otherwise(pl.col("kd_loss")).alias("kd_loss"))
    return table.with_columns(
        pl.when(pl.col("kd_loss").is_in([loss for loss, names in KD_LOSS_WEIGHTS.items() if name in names]))
        .then(pl.col(name)).otherwise(None).alias(name)
        for names in KD_LOSS_WEIGHTS.values() for name in names)


def runs_table(names: list[str], filter_string: str = "") -> pl.DataFrame:
    """One row per run: ids, status, experiment, the PARAMS and TAGS above, every metric."""
    frames = []
    for name, experiment_id in experiment_ids(names).items():
        runs = _search(experiment_id, filter_string)
        if filter_string:
            runs = pl.concat([runs, _analyses_of_students(experiment_id, runs)], how="diagonal_relaxed")
        frames.append(runs.with_columns(pl.lit(name).alias("experiment"), pl.lit(experiment_id).alias("experiment_id")))
    table = pl.concat(frames, how="diagonal_relaxed")
    if not table.height:
        matching = f" match {filter_string!r}" if filter_string else ""
        raise UserError(f"no runs in experiment(s) {', '.join(names)}{matching}")
    metrics = sorted(c for c in table.columns if c.startswith("m:"))
    table = known_params(table.rename({t: t.removeprefix("kdtrack.") for t in TAGS}))
    return table.select(*TEXT, "start_time", *[pl.col(m).cast(pl.Float64) for m in metrics])


def _phrase(count: int, kind: str, why: str = "") -> str:
    """"1 KILLED student run", "2 analysis runs superseded"."""
    return f"{count} {kind} run{'' if count == 1 else 's'}{why}"


def counted(table: pl.DataFrame, version: str) -> tuple[pl.DataFrame, list[str]]:
    """The runs that enter the report's statistics, and what was left out and why, one phrase per
    reason ("2 analysis runs superseded", "1 KILLED student run"). Only FINISHED runs count:
    RUNNING orphans, FAILED and KILLED runs never do, whatever their role. A student counts once,
    with its newest FINISHED analysis of code `version`: re-analyses (after a kill, with other
    bins) and analyses by other code are not more seeds. Nor is a run trained again with `force`:
    of the FINISHED runs with one reuse key, only the newest counts; nor a FINISHED run whose
    metrics have a gap (`kdtrack.incomplete`)."""
    finished_runs = table.filter(pl.col("status") == "FINISHED")
    done = finished_runs.filter(pl.col("incomplete").is_null())
    trained = done.filter(pl.col("key").is_not_null())
    newest_trained = trained.sort("start_time", descending=True).unique(["role", "key"], keep="first")
    finished = pl.concat([done.filter(pl.col("key").is_null()), newest_trained])
    analyses = finished.filter(pl.col("role") == "analysis")
    current = analyses.filter(pl.col("code_version") == version)
    students = finished.filter(pl.col("role") == "student")["run_id"]
    with_student = current.filter(pl.col("student_run_id").is_in(students.implode()))
    newest = with_student.sort("start_time", descending=True).unique("student_run_id", keep="first")
    kept = pl.concat([finished.filter(pl.col("role").ne_missing("analysis")), newest]).sort("start_time")
    reasons = [(with_student.height - newest.height, " superseded"),
               (analyses.height - current.height, " of another code version"),
               (current.height - with_student.height, " whose student is not in the report")]
    left_out = [_phrase(count, "analysis", why) for count, why in reasons if count]
    superseded = trained.join(newest_trained.select("run_id"), on="run_id", how="anti")
    left_out += [_phrase(count, role, " trained again (force)")
                 for role, count in sorted(superseded.group_by("role").len().rows())]
    left_out += [_phrase(count, f"incomplete {role}", " (metrics lost before a resume)")
                 for role, count in sorted(finished_runs.filter(pl.col("incomplete").is_not_null())
                                           .group_by("role").len().rows())]
    unfinished = table.filter(pl.col("status") != "FINISHED").with_columns(pl.col("role").fill_null("non-kdtrack"))
    left_out += [_phrase(count, f"{status} {role}")
                 for status, role, count in sorted(unfinished.group_by("status", "role").len().rows())]
    return kept, left_out


def with_analyses(kept: pl.DataFrame) -> pl.DataFrame:
    """`counted` runs where a student's analysis metrics (slopes, gaps: `copied_to_student`) are
    those of its counted analysis, never the copies on the student, which may come from an analysis
    that does not count; a student without one has none."""
    copied = [c for c in kept.columns if c.startswith("m:") and copied_to_student(c[2:])]
    analyses = kept.filter(pl.col("role") == "analysis").select(
        pl.col("student_run_id").alias("run_id"), *[pl.col(c).alias(f"{c}@analysis") for c in copied])
    joined = kept.join(analyses, on="run_id", how="left")
    student = pl.col("role") == "student"
    return joined.with_columns([pl.when(student).then(pl.col(f"{c}@analysis")).otherwise(pl.col(c)).alias(c)
                                for c in copied]).select(kept.columns)


VARYING = ("width", "depth", "train_size", "batch_size", "lr", "epochs", "temperature", "switch_to", "switch_at",
           "kd_target", "confidence_power", "confidence_spread", "teacher_fit_fraction", "distill_weight", "kd_loss",
           "dkd_alpha", "dkd_beta", "dist_beta", "dist_gamma")


def setting_of(table: pl.DataFrame) -> pl.DataFrame:
    """A `setting` column, what the paper's tables group seeds by: preset, teacher > student
    architecture and label noise, plus whichever of VARYING differ between the students here; the
    role for runs without a preset."""
    teacher = pl.coalesce(pl.col("teacher_arch").replace("", None), pl.col("arch"))
    students = table.filter(pl.col("role") == "student")
    varying = [c for c in VARYING if c in students.columns and students[c].n_unique() > 1]
    parts = [pl.col("preset"), pl.lit(" "), teacher, pl.lit(">"), pl.col("arch"),
             pl.lit(" noise="), pl.col("label_noise")]
    for column in varying:
        parts += [pl.lit(f" {column}="), pl.col(column).fill_null("-")]
    # A run that trains nothing (theory, report) has no preset: its role is its setting, never null,
    # which no claim's group could match.
    # `distillation`: self (the student has its teacher's architecture) or cross, for claims that
    # the paper makes of one kind only (Table 2's students that beat their teachers are self-distilled).
    kind = pl.when(pl.col("role") != "student").then(None).when(teacher == pl.col("arch")).then(pl.lit("self"))
    return table.with_columns(pl.when(pl.col("preset").is_null()).then(pl.col("role"))
                              .otherwise(pl.concat_str(parts)).alias("setting"),
                              kind.otherwise(pl.lit("cross")).alias("distillation"))
