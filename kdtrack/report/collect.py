"""Runs of one or more experiments as one polars table, fetched with MLflow's search API (one
paginated search per experiment, never a call per run), and which of them count in statistics."""
from __future__ import annotations

import polars as pl

from kdtrack import tracking
from kdtrack.contract import (
    CODE_VERSION,
    KEY,
    ONEHOT_RUN,
    ROLE,
    STUDENT_RUN,
    STUDY,
    SWITCH_STEP,
    TEACHER_RUN,
    TRIAL,
    copied_to_student,
)
from kdtrack.errors import UserError

PARAMS = ("preset", "dataset", "arch", "teacher_arch", "width", "depth", "seed", "label_noise", "train_size",
          "batch_size", "lr", "epochs", "temperature", "switch_to", "switch_at", "kd_target", "confidence_power",
          "confidence_spread", "teacher_fit_fraction", "fit_fraction", "distill_weight", "extend_to", "switch_window")
TAGS = (ROLE, TEACHER_RUN, ONEHOT_RUN, STUDENT_RUN, SWITCH_STEP, STUDY, TRIAL, CODE_VERSION, KEY)
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


def _search(experiment_id: str, filter_string: str) -> list:
    try:
        return tracking.search_all([experiment_id], filter_string)
    except Exception as error:
        raise UserError(f"filter {filter_string!r} is not a valid MLflow search filter: "
                        f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") from None


def _analyses_of_students(experiment_id: str, runs: list) -> list:
    """The analysis runs of the students among `runs` that `runs` lacks. A filter on the students'
    params (`params.preset = ...`) leaves out their analyses, whose params differ, and with them
    every number of the paper's tables; so an analysis always comes with its student."""
    have = {run.info.run_id for run in runs}
    students = {run.info.run_id for run in runs if run.data.tags.get(ROLE) == "student"}
    if not students:
        return []
    return [run for run in tracking.search_all([experiment_id], f"tags.`{ROLE}` = 'analysis'")
            if run.data.tags.get(STUDENT_RUN) in students and run.info.run_id not in have]


def runs_table(names: list[str], filter_string: str = "") -> pl.DataFrame:
    """One row per run: ids, status, experiment, the PARAMS and TAGS above, every metric."""
    rows = []
    for name, experiment_id in experiment_ids(names).items():
        runs = _search(experiment_id, filter_string)
        if filter_string:
            runs += _analyses_of_students(experiment_id, runs)
        for run in runs:
            row = {"experiment": name, "experiment_id": experiment_id, "run_id": run.info.run_id,
                   "run_name": run.info.run_name, "status": run.info.status, "start_time": run.info.start_time,
                   "artifact_uri": run.info.artifact_uri}
            row.update({p: run.data.params.get(p) for p in PARAMS})
            row.update({t.removeprefix("kdtrack."): run.data.tags.get(t) for t in TAGS})
            row.update({f"m:{k}": v for k, v in run.data.metrics.items()})
            rows.append(row)
    if not rows:
        matching = f" match {filter_string!r}" if filter_string else ""
        raise UserError(f"no runs in experiment(s) {', '.join(names)}{matching}")
    metrics = sorted({key for row in rows for key in row if key.startswith("m:")})
    schema = {**{c: pl.String for c in TEXT}, "start_time": pl.Int64, **{m: pl.Float64 for m in metrics}}
    return pl.DataFrame(rows, schema=schema)


def _phrase(count: int, kind: str, why: str = "") -> str:
    """"1 KILLED student run", "2 analysis runs superseded"."""
    return f"{count} {kind} run{'' if count == 1 else 's'}{why}"


def counted(table: pl.DataFrame, version: str) -> tuple[pl.DataFrame, list[str]]:
    """The runs that enter the report's statistics, and what was left out and why, one phrase per
    reason ("2 analysis runs superseded", "1 KILLED student run"). Only FINISHED runs count:
    RUNNING orphans, FAILED and KILLED runs never do, whatever their role. A student counts once,
    with its newest FINISHED analysis of code `version`: re-analyses (after a kill, with other
    bins) and analyses by other code are not more seeds. Nor is a run trained again with `force`:
    of the FINISHED runs with one reuse key, only the newest counts."""
    done = table.filter(pl.col("status") == "FINISHED")
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
           "kd_target", "confidence_power", "confidence_spread", "teacher_fit_fraction", "distill_weight")


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
