"""The report's tables, as pure polars transformations of `collect.runs_table` output."""
from __future__ import annotations

import polars as pl

TABLE2 = [("teacher", "table2/teacher"), ("student (one-hot)", "table2/student_onehot"),
          ("student (distilled)", "table2/student_distill")]
SLOPES = ["train/slope_bottom25", "test/slope_bottom25", "train/slope_top25", "test/slope_top25"]


def mean_std(column: str, label: str) -> list[pl.Expr]:
    values = pl.col(f"m:{column}")
    return [values.mean().alias(f"{label} mean"), values.std().alias(f"{label} std")]


def analyses(table: pl.DataFrame) -> pl.DataFrame:
    """Analysis runs with their student's setting and seed."""
    students = table.filter(pl.col("role") == "student").select(
        pl.col("run_id").alias("student_run_id"), "setting", "seed")
    found = table.filter(pl.col("role") == "analysis").drop("setting", "seed").join(students, on="student_run_id")
    return found


def metric_table(table: pl.DataFrame, columns: list[tuple[str, str]]) -> pl.DataFrame:
    """Mean and std over seeds per setting (std is empty for one seed), and the seed count."""
    rows = analyses(table)
    present = [(label, m) for label, m in columns if f"m:{m}" in rows.columns]
    exprs = [e for label, m in present for e in mean_std(m, label)]
    return (rows.group_by("setting", maintain_order=True)
            .agg(pl.len().alias("seeds"), *exprs).sort("setting"))


def table2(table: pl.DataFrame) -> pl.DataFrame:
    return metric_table(table, [(f"{who} {split}", f"{prefix}_{split}_acc")
                                for who, prefix in TABLE2 for split in ("train", "test")])


def slopes(table: pl.DataFrame) -> pl.DataFrame:
    return metric_table(table, [(name, name) for name in SLOPES])


def eigen(table: pl.DataFrame) -> pl.DataFrame:
    return metric_table(table, [("exaggerated pair fraction", "eigen/exaggerated_pair_frac"),
                                ("pairs", "eigen/pairs")])


def runs_summary(table: pl.DataFrame) -> pl.DataFrame:
    keep = [c for c in ("experiment", "role", "status", "preset", "dataset", "arch", "seed", "run_id",
                        "m:train/acc", "m:test/acc", "m:test/slope_bottom25") if c in table.columns]
    return table.select(keep).sort("experiment", "role", "preset", "seed", nulls_last=True)


def difference(left: pl.DataFrame, right: pl.DataFrame) -> pl.DataFrame:
    """The same table of two experiments side by side, with `right - left` per mean column."""
    means = [c for c in left.columns if c.endswith(" mean") and c in right.columns]
    joined = left.select("setting", *means).join(right.select("setting", *means), on="setting", suffix=" (B)")
    return joined.with_columns([(pl.col(f"{c} (B)") - pl.col(c)).alias(f"{c} diff") for c in means])
