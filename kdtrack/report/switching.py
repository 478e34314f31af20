"""The loss-switching section's frames (§5.2, Fig. 24), pure transforms of the runs table: which
runs' accuracy curves it draws (each switch student's teacher's other students and their one-hot
baseline), those curves labelled by teacher and kind of student, and the switching gain paired by
teacher run."""
from __future__ import annotations

from collections.abc import Mapping

import polars as pl

ONEHOT = "one-hot"


def kind_of(switch_to: str | None, switch_at: str | None) -> str:
    """"KD", or "to one-hot at 50%" ("... at step 300" for an absolute `switch_at`)."""
    if not switch_to:
        return "KD"
    at = float(switch_at) if switch_at else float("nan")
    when = f"at {at:.0%}" if at <= 1 else f"at step {at:.0f}"
    return f"to {ONEHOT if switch_to == 'onehot' else 'KD'} {when}"


def teacher_of(fit_fraction: str | None, noise: str | None) -> str:
    """A panel's name: the teacher's share of the training set, and its label noise when any."""
    fit = float(fit_fraction) if fit_fraction else 1.0
    noisy = f", noise {float(noise):g}" if noise and float(noise) else ""
    return f"teacher on {fit:.0%} of the data{noisy}"


def curve_runs(runs: pl.DataFrame) -> pl.DataFrame:
    """One row per curve: `run_id`, `panel` (the teacher's kind), `kind` (one-hot, KD, to one-hot at
    50%, ...), `seed`, `switch_step` and `switch_window` (null without a switch), for the students
    of every teacher that has a switch student, and the one-hot baseline of each of its KD students
    (its `onehot_run_id`: the teacher itself in a self-distillation). Empty without switch runs."""
    needed = {"switch_step", "teacher_run_id", "onehot_run_id", "switch_to", "switch_at", "teacher_fit_fraction"}
    if not needed <= set(runs.columns):
        return pl.DataFrame()
    students = runs.filter((pl.col("role") == "student") & pl.col("teacher_run_id").is_not_null())
    teachers = students.filter(pl.col("switch_step").is_not_null())["teacher_run_id"].unique().implode()
    students = students.filter(pl.col("teacher_run_id").is_in(teachers))
    rows = []
    for row in students.iter_rows(named=True):
        panel = teacher_of(row["teacher_fit_fraction"], row.get("label_noise"))
        window = row.get("switch_window")
        rows.append({"run_id": row["run_id"], "panel": panel, "kind": kind_of(row["switch_to"], row["switch_at"]),
                     "seed": row["seed"], "switch_step": row["switch_step"], "switch_window": window})
        if not row["switch_step"]:
            rows.append({"run_id": row["onehot_run_id"] or row["teacher_run_id"], "panel": panel, "kind": ONEHOT,
                         "seed": row["seed"], "switch_step": None, "switch_window": None})
    schema = {"run_id": pl.String, "panel": pl.String, "kind": pl.String, "seed": pl.String,
              "switch_step": pl.String, "switch_window": pl.String}
    # Panels from the teacher that fits most to the one that fits least, as Fig. 24 reads.
    return (pl.DataFrame(rows, schema=schema).unique(["run_id", "panel", "kind"], keep="first", maintain_order=True)
            .sort(pl.col("panel").str.extract(r"on (\d+)%").cast(pl.Int64), descending=True, maintain_order=True))


def curves(runs: pl.DataFrame, accuracy: Mapping[str, list[tuple[int, float]]]) -> pl.DataFrame:
    """`curve_runs` joined to each run's (step, test accuracy) points: panel, kind, seed, step, acc."""
    rows = [{"panel": row["panel"], "kind": row["kind"], "seed": row["seed"], "step": step, "acc": value}
            for row in curve_runs(runs).iter_rows(named=True) for step, value in accuracy.get(row["run_id"], [])]
    schema = {"panel": pl.String, "kind": pl.String, "seed": pl.String, "step": pl.Int64, "acc": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


def windows(runs: pl.DataFrame) -> pl.DataFrame:
    """Each panel's switch windows, one row per kind of switch: panel, kind, start, end (steps)."""
    chosen = curve_runs(runs).filter(pl.col("switch_step").is_not_null())
    start = pl.col("switch_step").cast(pl.Int64)
    return (chosen.with_columns(start.alias("start"), (start + pl.col("switch_window").fill_null("0")
                                                        .cast(pl.Int64)).alias("end"))
            .unique(["panel", "kind"], maintain_order=True).select("panel", "kind", "start", "end"))


def gains(runs: pl.DataFrame) -> pl.DataFrame:
    """The switching gain per seed: a switch-to-one-hot student's test accuracy minus its KD
    sibling's (the non-switching student of the same teacher run), with the teacher's fit fraction
    and train accuracy: kind, seed, teacher_fit_fraction (float), teacher_train_acc, gain."""
    columns = {"m:test/acc", "m:teacher/train_acc", "switch_to", "switch_step", "teacher_run_id", "start_time"}
    schema = {"kind": pl.String, "seed": pl.String, "teacher_fit_fraction": pl.Float64,
              "teacher_train_acc": pl.Float64, "gain": pl.Float64}
    if not columns <= set(runs.columns):
        return pl.DataFrame(schema=schema)
    students = runs.filter((pl.col("role") == "student") & pl.col("m:test/acc").is_not_null()
                           & pl.col("teacher_run_id").is_not_null())
    kd = (students.filter(pl.col("switch_step").is_null()).sort("start_time")
          .unique("teacher_run_id", keep="last").select("teacher_run_id", pl.col("m:test/acc").alias("kd")))
    switched = students.filter(pl.col("switch_to") == "onehot")
    rows = [{"kind": kind_of(row["switch_to"], row["switch_at"]), "seed": row["seed"],
             "teacher_fit_fraction": float(row["teacher_fit_fraction"] or 1.0),
             "teacher_train_acc": row["m:teacher/train_acc"], "gain": row["m:test/acc"] - row["kd"]}
            for row in switched.join(kd, on="teacher_run_id").iter_rows(named=True)]
    return pl.DataFrame(rows, schema=schema)
