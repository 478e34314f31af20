"""The paper's confidence-exaggeration statistics as pure functions of confidence tables."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl


def fit_slope(x, y) -> float:
    """Slope m of the least-squares line y = m x + c (paper §C.4); NaN with < 2 distinct x."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2 or np.ptp(x) == 0:
        return float("nan")
    return float(np.polyfit(x, y, 1)[0])


def quantile_rows(table: pl.DataFrame, part: str, fraction: float = 0.25, x: str = "phi_teacher") -> pl.DataFrame:
    """The bottom (or top) `fraction` of rows by teacher confidence `x`, at least 2."""
    count = max(2, int(np.ceil(fraction * table.height)))
    return table.sort(x, descending=(part == "top")).head(count)


def quantile_slope(table: pl.DataFrame, part: str, fraction: float = 0.25,
                   x: str = "phi_teacher", y: str = "phi_student") -> float:
    """Slope over the bottom (or top) `fraction` of points sorted by teacher confidence `x`
    (Tables 3-6: bottom 25% for images, top 25% for text). Slope > 1 = exaggeration."""
    ordered = quantile_rows(table, part, fraction, x)
    return fit_slope(ordered[x], ordered[y])


@dataclass(frozen=True)
class QuantileLine:
    """A least-squares line over one quantile of the points, as Fig. 1a draws it."""
    part: str  # "bottom" or "top"
    fraction: float
    slope: float
    intercept: float
    x_low: float  # the quantile's range of teacher confidence, where the line is drawn
    x_high: float


def quantile_line(table: pl.DataFrame, part: str, fraction: float = 0.25,
                  x: str = "phi_teacher", y: str = "phi_student") -> QuantileLine:
    """The line fitted to the bottom (or top) `fraction` of points: its slope is `quantile_slope`'s,
    the number the analysis logs, and its intercept mean(y) - slope * mean(x), since a
    least-squares line passes through the mean point."""
    rows = quantile_rows(table, part, fraction, x)
    slope = quantile_slope(table, part, fraction, x, y)
    intercept = float(rows[y].mean() - slope * rows[x].mean())
    return QuantileLine(part, fraction, slope, intercept, float(rows[x].min()), float(rows[x].max()))


def quantile_lines(table: pl.DataFrame, fraction: float = 0.25,
                   x: str = "phi_teacher", y: str = "phi_student") -> tuple[QuantileLine, QuantileLine]:
    """Fig. 1a's bottom and top fit lines."""
    return tuple(quantile_line(table, part, fraction, x, y) for part in ("bottom", "top"))


def quantile_gap(table: pl.DataFrame, part: str, fraction: float = 0.25,
                 x: str = "phi_teacher", y: str = "phi_student") -> float:
    """Mean of y - x (phi_student - phi_teacher) over the teacher's bottom (top) `fraction` by x:
    a direct measure of the underfitting the slope only proxies (§C.4). Below 0 = the student is
    less confident than the teacher there. With the `_label` columns: on the true class (Fig. 13)."""
    rows = quantile_rows(table, part, fraction, x)
    return float((rows[y] - rows[x]).mean())


def change_after(timeline: dict[int, float], step: int, end: int | None = None) -> tuple[int, int, float]:
    """How far a quantity sampled at some steps moved after `step` (Fig. 25-26 read from the
    snapshots: the bottom-25% gap after a loss switch): (start, end, value[end] - value[start]),
    start the last sampled step at or before `step`, end the last sampled one (or `end`, which must
    be sampled). ValueError when no sample is at or before `step`, or none after it."""
    start = max((s for s in timeline if s <= step), default=None)
    end = max(timeline, default=None) if end is None else end
    if start is None or end not in timeline or end <= start:
        raise ValueError(f"no samples at steps <= {step} and {end} (after it): sampled at {sorted(timeline)}")
    return start, end, timeline[end] - timeline[start]


def quantile_kl(table: pl.DataFrame, part: str, fraction: float = 0.25) -> float:
    """Mean KL(teacher || student) over the teacher's bottom (top) `fraction` by phi_teacher: where
    Fig. 16's KL scatter puts the deviations."""
    return float(quantile_rows(table, part, fraction)["kl"].mean())


def matched_excess(table: pl.DataFrame, group: pl.Expr, outcome: pl.Expr, bins: int = 10,
                   x: str = "phi_teacher") -> float:
    """How much more often `outcome` holds on the `group` points than on the other points of the
    same teacher confidence: points are cut into `bins` equal-count bins of `x`; in each bin, the
    group's rate minus the others' rate; averaged with the group's count per bin as weights (bins
    holding no other point are left out). A control for claims about points the teacher is unsure
    of, which are also the points where most things go wrong. NaN without group points."""
    n = table.height
    binned = table.select((((pl.col(x).rank("ordinal") - 1) * bins) // n).alias("bin"),
                          group.alias("group"), outcome.cast(pl.Float64).alias("outcome"))
    rates = (binned.group_by("bin").agg(
        pl.col("group").sum().alias("count"),
        pl.col("outcome").filter(pl.col("group")).mean().alias("inside"),
        pl.col("outcome").filter(~pl.col("group")).mean().alias("outside"))
        .filter((pl.col("count") > 0) & pl.col("outside").is_not_null()))
    if rates["count"].sum() == 0:
        return float("nan")
    return float(((rates["inside"] - rates["outside"]) * rates["count"]).sum() / rates["count"].sum())


UNDERFIT = pl.col("phi_student") < pl.col("phi_teacher")
SOMEONE_ERRS = (pl.col("pred") != pl.col("label")) | (pl.col("teacher_pred") != pl.col("label"))


def below_fraction(table: pl.DataFrame, fraction: float = 0.25) -> float:
    """Fraction of the teacher's bottom `fraction` (by phi_teacher) where the student is below the
    teacher (Y < X in Fig. 1a)."""
    rows = quantile_rows(table, "bottom", fraction)
    return float((rows["phi_student"] < rows["phi_teacher"]).mean())


def exaggeration_index(table: pl.DataFrame, fraction: float = 0.25) -> float:
    """gap_top - gap_bottom: above 0 when the student spreads its confidence over a wider range
    than the teacher's along the teacher's own ordering (more confident where the teacher is most
    confident, less where it is least), which is what a bottom slope > 1 is meant to show."""
    return quantile_gap(table, "top", fraction) - quantile_gap(table, "bottom", fraction)


def mislabeled_underfit_fraction(table: pl.DataFrame) -> float:
    """Fraction of mislabeled training points where the student is less confident than the
    teacher on the teacher's class (Fig. 4 / Fig. 18 left); NaN without mislabeled points."""
    noisy = table.filter(pl.col("is_noisy"))
    if noisy.height == 0:
        return float("nan")
    return float((noisy["phi_student"] < noisy["phi_teacher"]).mean())


def mislabeled_fit_gap(table: pl.DataFrame) -> float:
    """On the mislabeled training points: the share the student predicts with the flipped label it
    was trained on, minus the share the teacher does. Below 0: the student memorizes fewer of the
    wrong labels than its teacher (how a student can beat a teacher that interpolated them)."""
    noisy = table.filter(pl.col("is_noisy"))
    if noisy.height == 0:
        return float("nan")
    return accuracy(noisy) - accuracy(noisy, "teacher_pred")


def mislabeled_bottom_share(table: pl.DataFrame, fraction: float = 0.25) -> float:
    """Share of the mislabeled training points that lie in the teacher's bottom `fraction` by
    phi_teacher (Fig. 4: mislabeled points have low teacher confidence; chance is `fraction`)."""
    noisy = int(table["is_noisy"].sum())
    if noisy == 0:
        return float("nan")
    return float(quantile_rows(table, "bottom", fraction)["is_noisy"].sum() / noisy)


GROUPS = ("Both", "Only_student", "Only_teacher", "Neither")


def with_groups(table: pl.DataFrame) -> pl.DataFrame:
    """Add `group`: which of teacher and student classify the point correctly (Fig. 14)."""
    student_ok, teacher_ok = pl.col("pred") == pl.col("label"), pl.col("teacher_pred") == pl.col("label")
    return table.with_columns(
        pl.when(student_ok & teacher_ok).then(pl.lit("Both"))
        .when(student_ok).then(pl.lit("Only_student"))
        .when(teacher_ok).then(pl.lit("Only_teacher"))
        .otherwise(pl.lit("Neither")).alias("group"))


def accuracy(table: pl.DataFrame, pred: str = "pred") -> float:
    return float((table[pred] == table["label"]).mean())


def summary(tables: dict[str, pl.DataFrame], fraction: float = 0.25) -> dict[str, float]:
    """Every scalar the analysis logs, keyed by MLflow metric name."""
    out: dict[str, float] = {}
    pct = round(fraction * 100)
    for split, table in tables.items():
        out[f"{split}/slope_bottom{pct}"] = quantile_slope(table, "bottom", fraction)
        out[f"{split}/slope_top{pct}"] = quantile_slope(table, "top", fraction)
        out[f"{split}/slope_bottom{pct}_label"] = quantile_slope(table, "bottom", fraction,
                                                                 "phi_teacher_label", "phi_student_label")
        out[f"{split}/gap_bottom{pct}"] = quantile_gap(table, "bottom", fraction)
        out[f"{split}/gap_top{pct}"] = quantile_gap(table, "top", fraction)
        out[f"{split}/gap_bottom{pct}_label"] = quantile_gap(table, "bottom", fraction,
                                                             "phi_teacher_label", "phi_student_label")
        if "kl" in table.columns:
            out[f"{split}/kl_bottom{pct}"] = quantile_kl(table, "bottom", fraction)
            out[f"{split}/kl_top{pct}"] = quantile_kl(table, "top", fraction)
        out[f"{split}/underfit_err_excess"] = matched_excess(table, UNDERFIT, SOMEONE_ERRS)
        out[f"{split}/below_frac_bottom{pct}"] = below_fraction(table, fraction)
        out[f"{split}/exaggeration_index"] = exaggeration_index(table, fraction)
        out[f"{split}/student_acc"] = accuracy(table)
        out[f"{split}/teacher_acc"] = accuracy(table, "teacher_pred")
        out[f"{split}/underfit_frac"] = float((table["phi_student"] < table["phi_teacher"]).mean())
        grouped = with_groups(table)["group"].value_counts()
        for group in GROUPS:
            count = grouped.filter(pl.col("group") == group)["count"].sum()
            out[f"{split}/group_frac_{group}"] = count / table.height
    if "train" in tables and tables["train"]["is_noisy"].any():
        out["train/mislabeled_underfit_frac"] = mislabeled_underfit_fraction(tables["train"])
        out["train/mislabeled_underfit_excess"] = matched_excess(tables["train"], pl.col("is_noisy"), UNDERFIT)
        out[f"train/mislabeled_bottom{pct}_share"] = mislabeled_bottom_share(tables["train"], fraction)
        out["train/mislabeled_fit_gap"] = mislabeled_fit_gap(tables["train"])
    return out
