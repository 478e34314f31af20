"""The report's tables, as pure polars transformations of `collect.runs_table` output: numbers
first (`table2`, `slopes`, `eigen`: a mean and a std column per quantity), then `shown`, which
writes each quantity as one "mean ± std" cell at the precision its kind of number deserves."""
from __future__ import annotations

import polars as pl

TABLE2 = [("teacher", "table2/teacher"), ("student (one-hot)", "table2/student_onehot"),
          ("student (distilled)", "table2/student_distill")]
SLOPES = ["train/slope_bottom25", "test/slope_bottom25", "train/slope_top25", "test/slope_top25"]
SELF = "one-hot student is the teacher"  # a setting's flag: self-distillation (pipeline.lineage)
ONEHOT = "student (one-hot)"
TEACHER_CELL = "= teacher"  # the one-hot student's cell in a self-distillation

# How a quantity is shown, by the start of its column label: (scale, decimals, unit in the header).
PERCENT, SLOPE, FRACTION, COUNT = (100.0, 1, " (%)"), (1.0, 2, ""), (1.0, 2, ""), (1.0, 0, "")
FORMATS = {**{who: PERCENT for who, _ in TABLE2}, **{name: SLOPE for name in SLOPES},
           "exaggerated pair fraction": FRACTION, "pairs": COUNT, "train/acc": PERCENT, "test/acc": PERCENT,
           "trials/": COUNT, "best/trial": COUNT}
OTHER = (1.0, 3, "")


def mean_std(column: str, label: str) -> list[pl.Expr]:
    values = pl.col(f"m:{column}")
    return [values.mean().alias(f"{label} mean"), values.std().alias(f"{label} std")]


def analyses(table: pl.DataFrame) -> pl.DataFrame:
    """Analysis runs with their student's setting, seed, and whether its one-hot baseline is its
    teacher (self-distillation)."""
    students = table.filter(pl.col("role") == "student").select(
        pl.col("run_id").alias("student_run_id"), "setting", "seed",
        (pl.col("onehot_run_id") == pl.col("teacher_run_id")).fill_null(False).alias(SELF))
    return table.filter(pl.col("role") == "analysis").drop("setting", "seed").join(students, on="student_run_id")


def metric_table(table: pl.DataFrame, columns: list[tuple[str, str]]) -> pl.DataFrame:
    """Mean and std over seeds per setting (std is empty for one seed), the seed count, and
    whether every student of the setting is a self-distillation."""
    rows = analyses(table)
    present = [(label, m) for label, m in columns if f"m:{m}" in rows.columns]
    exprs = [e for label, m in present for e in mean_std(m, label)]
    return (rows.group_by("setting", maintain_order=True)
            .agg(pl.len().alias("seeds"), pl.col(SELF).all(), *exprs).sort("setting"))


def table2(table: pl.DataFrame) -> pl.DataFrame:
    return metric_table(table, [(f"{who} {split}", f"{prefix}_{split}_acc")
                                for who, prefix in TABLE2 for split in ("train", "test")])


def slopes(table: pl.DataFrame) -> pl.DataFrame:
    return metric_table(table, [(name, name) for name in SLOPES])


def eigen(table: pl.DataFrame) -> pl.DataFrame:
    return metric_table(table, [("exaggerated pair fraction", "eigen/exaggerated_pair_frac"),
                                ("median delta", "eigen/median_delta"), ("pairs", "eigen/pairs"),
                                ("teacher top-biased", "eigen/teacher_top_biased_frac"),
                                ("student top-biased", "eigen/student_top_biased_frac")])


STUDENT_COLUMNS = ("setting", "preset", "dataset", "arch", "seed")  # what an analysis row shows of its student


def with_students(table: pl.DataFrame) -> pl.DataFrame:
    """`table` with each analysis row's setting, preset, data set, architecture and seed those of
    its student (an analysis's own params are the student's id and its bins); an analysis whose
    student is not in the table keeps its own."""
    columns = [c for c in STUDENT_COLUMNS if c in table.columns]
    students = table.filter(pl.col("role") == "student").select(
        pl.col("run_id").alias("student_run_id"), *[pl.col(c).alias(f"{c}@student") for c in columns])
    found = pl.col("role").eq_missing("analysis") & pl.col("student_run_id@student").is_not_null()
    joined = table.join(students.with_columns(pl.col("student_run_id").alias("student_run_id@student")),
                        on="student_run_id", how="left")
    return joined.with_columns([pl.when(found).then(pl.col(f"{c}@student")).otherwise(pl.col(c)).alias(c)
                                for c in columns]).select(table.columns)


def runs_summary(table: pl.DataFrame) -> pl.DataFrame:
    """One row per run (`kdtrack runs`), analyses with their student's preset, data and seed; a run
    whose metrics have a gap shows it beside its status ("FINISHED incomplete")."""
    if "incomplete" in table.columns:
        table = table.with_columns(pl.when(pl.col("incomplete").is_not_null())
                                   .then(pl.col("status") + " incomplete").otherwise(pl.col("status")).alias("status"))
    keep = [c for c in ("experiment", "role", "status", "preset", "dataset", "arch", "seed", "run_id",
                        "m:train/acc", "m:test/acc", "m:test/slope_bottom25") if c in table.columns]
    return with_students(table).select(keep).sort("experiment", "role", "preset", "seed", nulls_last=True)


def size(count: int | None) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if (count or 0) >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count or 0} bytes"


def run_list(table: pl.DataFrame, kept: pl.DataFrame, names: dict[str, str]) -> pl.DataFrame:
    """Every run of `table`, one row each (the report's runs.csv): whether it counts (is in `kept`),
    its setting's short name (`names`) and whole name, seed, ids and key metrics; an analysis
    with its student's setting and seed."""
    runs = with_students(table).with_columns(pl.col("run_id").is_in(kept["run_id"].implode()).alias("counted"),
                                             pl.col("setting").replace(names).alias("setting name"))
    keep = [c for c in ("experiment", "setting name", "role", "status", "counted", "seed", "run_id", "run_name",
                        "student_run_id", "teacher_run_id", "preset", "dataset", "arch", "setting", "artifact_bytes",
                        "m:train/acc", "m:test/acc", "m:test/slope_bottom25") if c in runs.columns]
    return runs.select(keep).sort("experiment", "setting name", "role", "seed", nulls_last=True)


def counts(values: list[str]) -> str:
    """["FINISHED", "KILLED", "FINISHED"] -> "2 FINISHED, 1 KILLED": most first, then by name."""
    tally = {value: values.count(value) for value in sorted(set(values))}
    return ", ".join(f"{n} {value}" for value, n in sorted(tally.items(), key=lambda pair: -pair[1]))


def by_setting(table: pl.DataFrame, kept: pl.DataFrame, names: dict[str, str]) -> pl.DataFrame:
    """The Runs section: one row per experiment and setting (its short name from `names`): seeds,
    teachers and one-hot baselines (a teacher serving several settings counts in each), students by status, analyses
    counted and left out (superseded, of other code, unfinished), other runs (theory, report,
    study, trial: their role is their setting), and the artifacts' size where `table` has it."""
    runs = with_students(table).with_columns(pl.col("run_id").is_in(kept["run_id"].implode()).alias("counted"))
    students = runs.filter(pl.col("role") == "student")
    served = pl.concat([students.select(pl.col(c).alias("teacher_run_id"), "setting")
                        for c in ("teacher_run_id", "onehot_run_id") if c in runs.columns]).unique()
    teachers = runs.filter(pl.col("role") == "teacher").drop("setting").join(
        served, left_on="run_id", right_on="teacher_run_id", how="inner")
    unserved = runs.filter(pl.col("role") == "teacher").join(served, left_on="run_id", right_on="teacher_run_id",
                                                             how="anti")
    attributed = pl.concat([runs.filter(pl.col("role").ne_missing("teacher")), teachers.select(runs.columns),
                            unserved], how="vertical")
    role, student, analysis = pl.col("role").fill_null("non-kdtrack"), pl.col("role") == "student", pl.col(
        "role") == "analysis"
    other = ~role.is_in(["student", "analysis", "teacher"])
    sized = ([pl.col("artifact_bytes").sum().map_elements(size, return_dtype=pl.String).alias("artifacts")]
             if "artifact_bytes" in runs.columns else [])
    summary = attributed.group_by("experiment", "setting").agg(
        pl.col("seed").filter(student).n_unique().alias("seeds"),
        pl.col("run_id").filter(role == "teacher").n_unique().alias("teachers"),
        pl.col("status").filter(student).alias("students"),
        (analysis & pl.col("counted")).sum().alias("analyses counted"),
        (analysis & ~pl.col("counted")).sum().alias("analyses not counted"),
        role.filter(other).alias("other runs"),
        *sized)
    phrases = [pl.col(c).map_elements(lambda v: counts(v.to_list()), return_dtype=pl.String)
               for c in ("students", "other runs")]
    return summary.with_columns(pl.col("setting").replace(names), *phrases).sort("experiment", "setting")


def difference(left: pl.DataFrame, right: pl.DataFrame) -> pl.DataFrame:
    """The same table of two experiments side by side: each mean of A, of B, and `B - A`."""
    means = [c for c in left.columns if c.endswith(" mean") and c in right.columns]
    joined = left.select("setting", *means).join(right.select("setting", *means), on="setting", suffix=" (B)")
    return joined.select("setting", *[e for c in means for e in (
        pl.col(c).alias(f"{c.removesuffix(' mean')} A"), pl.col(f"{c} (B)").alias(f"{c.removesuffix(' mean')} B"),
        (pl.col(f"{c} (B)") - pl.col(c)).alias(f"{c.removesuffix(' mean')} diff"))])


def number_format(column: str) -> tuple[float, int, str]:
    """The (scale, decimals, unit) of the longest FORMATS label that starts `column`."""
    label = column.removeprefix("m:")
    known = [name for name in FORMATS if label.startswith(name)]
    return FORMATS[max(known, key=len)] if known else OTHER


def padded(expr: pl.Expr, decimals: int, sign: str = "") -> pl.Expr:
    """Polars drops trailing zeros when casting floats ("0.5"): written out as "0.50" ("+0.50"
    with `sign="+"`)."""
    return expr.map_elements(lambda v: f"{v:{sign}.{decimals}f}", return_dtype=pl.String)


def shown(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` as the report prints it: "<label> mean" and "<label> std" merged into one
    "mean ± std" cell; every number at its column's precision (accuracies as percentages with
    one decimal, slopes with two); in a self-distillation, the one-hot student's cells say it is
    the teacher instead of repeating the teacher's numbers."""
    columns = []
    for name in frame.columns:
        if name.endswith(" std") and f"{name.removesuffix(' std')} mean" in frame.columns:
            continue
        if name == SELF:
            continue
        scale, decimals, unit = number_format(name)
        if name.endswith(" mean"):
            label = name.removesuffix(" mean")
            mean, std = (padded(pl.col(f"{label} {part}") * scale, decimals) for part in ("mean", "std"))
            expr = pl.when(pl.col(f"{label} std").is_null() | pl.col(f"{label} std").is_nan()).then(mean).otherwise(
                pl.format("{} ± {}", mean, std))
            if label.startswith(ONEHOT) and SELF in frame.columns:
                expr = pl.when(pl.col(SELF)).then(pl.lit(TEACHER_CELL)).otherwise(expr)
            columns.append(expr.alias(f"{label}{unit}"))
        elif frame.schema[name].is_float():
            sign = "+" if name.endswith(" diff") else ""
            columns.append(padded(pl.col(name) * scale, decimals, sign).alias(f"{name.removeprefix('m:')}{unit}"))
        else:
            columns.append(pl.col(name))
    return frame.select(columns)
