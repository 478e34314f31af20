"""Is the student more biased toward top eigendirections than its teacher? (paper §4.1, §D.2, §D.3)

Pure functions of eigen-tables: a `step` column and one column `v<k>` per direction, directions
in descending order of eigenvalue. Two kinds of table are read:

- *displacement* (`eigen/displacement.parquet`): d_k(t) = ||(W_t - W_0)^T v_k||_2, W_0 the run's
  initialization. Under Theorem 4.1 (beta(0) = 0) the teacher's component along v_k is
  alpha_k(t) c_k and the student's alpha_k(t) alpha_k(T_te) c_k.
- *trajectory* (`eigen/trajectory.parquet`): ||W_t^T v_k||_2, what older runs have alone.

**The pair statistic (delta).** Teacher and student are put on ONE scale per direction, the
teacher's final displacement: x = d_i / d_i^teacher(T), y = d_j / d_j^teacher(T) for a pair
i < j (i the top direction, j the bottom one). At each level q of LEVELS that both models reach,
take the first passage of the running maximum of x through q (linear between logged points),
and read y there: r_teacher(q), r_student(q). Then

    delta = mean over those q of (r_student(q) - r_teacher(q)),

and the student *exaggerates* the top bias on the pair when delta < 0. On the theorem's closed
form, matched x is matched beta_i, so delta < 0 is the theorem's |beta~_j(t~)| < |beta_j(t)|
(tests/metrics/test_eigenspace.py). Scaling each model by its OWN end instead divides out the
student's constant alpha_k(T_te) and makes the two curves equal: that statistic cannot see the
theorem, and is kept only for §D.2's own claim (below).

Pairs are left out, and counted, where the teacher's final displacement along either direction is
below NOISE times its largest final displacement (the shared scale would magnify noise), or where
fewer than MIN_LEVELS levels are reached by both models. Results are stratified by
log(lambda_i / lambda_j) in RATIO_BINS: the theorem's effect vanishes as the ratio goes to 1.

**The own-scale statistic (§D.2: each model is top-biased on its own).** Per model, with progress
p(t) = (v(t) - v(0)) / (v(T) - v(0)) along each direction, the bottom direction's progress when
the top one's first reaches one half; the model is top-biased on the pair when it is < 0.5.
"""
from __future__ import annotations

import math
import random
from typing import Sequence

import numpy as np
import polars as pl

LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # matched top levels, on the shared scale
MIN_LEVELS = 2  # a delta needs at least this many levels reached by both models
NOISE = 1e-6  # a direction whose teacher final displacement is below this times the largest did not move
# log(lambda_i / lambda_j) bins: near-equal eigenvalues (little to exaggerate), moderate, far apart.
RATIO_BINS = ((0.0, 0.5), (0.5, 1.5), (1.5, math.inf))


def progress(values: np.ndarray) -> np.ndarray | None:
    """(v(t) - v(0)) / (v(T) - v(0)); None when the direction did not move at all."""
    span = values[-1] - values[0]
    if abs(span) <= 1e-12 * max(1.0, abs(values[0])):
        return None
    return (values - values[0]) / span


def bottom_progress_at_half_top(x: np.ndarray, y: np.ndarray) -> float:
    """Own-scale: p_Y when p_X first reaches 1/2; NaN where either direction did not move."""
    px, py = progress(np.asarray(x, float)), progress(np.asarray(y, float))
    if px is None or py is None:
        return math.nan
    return value_at(py, first_passage(px, 0.5))  # exists: px ends at 1


def first_passage(x: np.ndarray, level: float) -> float | None:
    """The fractional index at which the running maximum of `x` first reaches `level`, linear
    between logged points; None if it never does. (The running maximum first reaches the level
    where `x` itself first does, so the crossing is between that point and the one before.)"""
    reached = np.flatnonzero(np.asarray(x) >= level)
    if not len(reached):
        return None
    index = int(reached[0])
    if index == 0:
        return 0.0
    before, after = x[index - 1], x[index]
    return index - 1 + (level - before) / (after - before)


def value_at(y: np.ndarray, position: float) -> float:
    """`y` at a fractional index, linear between logged points."""
    return float(np.interp(position, np.arange(len(y)), y))


def matched_levels(teacher_top: np.ndarray, teacher_bottom: np.ndarray, student_top: np.ndarray,
                   student_bottom: np.ndarray, levels: Sequence[float] = LEVELS) -> list[tuple[float, float, float]]:
    """(q, r_teacher(q), r_student(q)) for each level q both models' (already scaled) top
    displacements reach."""
    out = []
    for level in levels:
        teacher_at, student_at = first_passage(teacher_top, level), first_passage(student_top, level)
        if teacher_at is not None and student_at is not None:
            out.append((level, value_at(teacher_bottom, teacher_at), value_at(student_bottom, student_at)))
    return out


def pair_delta(teacher_top, teacher_bottom, student_top, student_bottom,
               levels: Sequence[float] = LEVELS) -> tuple[float, int]:
    """(delta, levels matched): the mean of r_student - r_teacher over the matched levels, NaN
    below MIN_LEVELS. Inputs are displacements on the shared scale (`shared_scale`)."""
    matched = matched_levels(*(np.asarray(a, float) for a in (teacher_top, teacher_bottom, student_top,
                                                              student_bottom)), levels)
    if len(matched) < MIN_LEVELS:
        return math.nan, len(matched)
    return float(np.mean([student - teacher for _, teacher, student in matched])), len(matched)


def shared_scale(teacher: pl.DataFrame) -> dict[str, float]:
    """The teacher's final displacement per direction column: the one scale of both models."""
    return {c: float(teacher[c][-1]) for c in teacher.columns if c.startswith("v")}


def scaled(table: pl.DataFrame, scale: dict[str, float]) -> pl.DataFrame:
    """Each direction's displacement divided by its shared scale; NaN where the scale is not positive."""
    return table.with_columns([(pl.col(c) / s if s > 0 else pl.lit(math.nan)).alias(c) for c, s in scale.items()])


def bin_label(low: float, high: float) -> str:
    return f"{low:g}-{high:g}"


def ratio_bin(log_ratio: float) -> str:
    """The RATIO_BINS label of log(lambda_i / lambda_j): "0-0.5", "0.5-1.5", "1.5-inf"."""
    return bin_label(*next((low, high) for low, high in RATIO_BINS if log_ratio < high))  # ties (0) in the first


def delta_table(teacher: pl.DataFrame, student: pl.DataFrame, pairs: list[tuple[int, int]],
                eigenvalues: Sequence[float], noise: float = NOISE) -> pl.DataFrame:
    """One row per pair of displacement tables: top, bottom, log_ratio and its bin, levels matched,
    delta, student_exaggerates (delta < 0; null where left out) and left_out (why, or "")."""
    scale = shared_scale(teacher)
    floor = noise * max(scale.values())
    teacher_scaled, student_scaled = scaled(teacher, scale), scaled(student, scale)
    rows = []
    for i, j in pairs:
        log_ratio = math.log(eigenvalues[i - 1] / eigenvalues[j - 1])
        row = {"top": i, "bottom": j, "log_ratio": log_ratio, "ratio_bin": ratio_bin(log_ratio), "levels": 0,
               "delta": math.nan, "student_exaggerates": None, "left_out": ""}
        smallest = min(scale[f"v{i}"], scale[f"v{j}"])
        if smallest < floor or smallest <= 0:
            rows.append({**row, "left_out": f"teacher moved < {noise:g} of its largest displacement"})
            continue
        delta, levels = pair_delta(*(frame[f"v{k}"].to_numpy() for frame in (teacher_scaled, student_scaled)
                                     for k in (i, j)))
        left_out = "" if levels >= MIN_LEVELS else f"{levels} levels reached by both (< {MIN_LEVELS})"
        rows.append({**row, "levels": levels, "delta": delta, "left_out": left_out,
                     "student_exaggerates": None if left_out else delta < 0})
    return pl.DataFrame(rows, schema=DELTA_SCHEMA)


DELTA_SCHEMA = {"top": pl.Int64, "bottom": pl.Int64, "log_ratio": pl.Float64, "ratio_bin": pl.String,
                "levels": pl.Int64, "delta": pl.Float64, "student_exaggerates": pl.Boolean, "left_out": pl.String}


def delta_summary(table: pl.DataFrame) -> dict[str, float]:
    """From a `delta_table`: exaggerated_pair_frac (pairs with delta < 0), median_delta, pairs
    (decided), pairs_left_out; and the first three per ratio bin (`..._logratio_<bin>`). Fractions
    and medians of no pair are NaN."""
    decided = table.filter(pl.col("left_out") == "")
    out = {**_fraction_and_median(decided, ""), "pairs_left_out": float(table.height - decided.height)}
    for label in (bin_label(*bounds) for bounds in RATIO_BINS):
        out.update(_fraction_and_median(decided.filter(pl.col("ratio_bin") == label), f"_logratio_{label}"))
    return out


def _fraction_and_median(decided: pl.DataFrame, suffix: str) -> dict[str, float]:
    empty = decided.height == 0
    return {f"exaggerated_pair_frac{suffix}": math.nan if empty else float(decided["student_exaggerates"].mean()),
            f"median_delta{suffix}": math.nan if empty else float(decided["delta"].median()),
            f"pairs{suffix}": float(decided.height)}


def own_scale_table(teacher: pl.DataFrame, student: pl.DataFrame, pairs: list[tuple[int, int]]) -> pl.DataFrame:
    """One row per pair: each model's own-scale statistic (bottom progress at half top) and
    whether it is top-biased on the pair (< 0.5; null where a direction did not move)."""
    rows = []
    for i, j in pairs:
        row = {"top": i, "bottom": j}
        for name, table in (("teacher", teacher), ("student", student)):
            stat = bottom_progress_at_half_top(table[f"v{i}"].to_numpy(), table[f"v{j}"].to_numpy())
            row.update({f"{name}_stat": stat, f"{name}_top_biased": None if math.isnan(stat) else stat < 0.5})
        rows.append(row)
    return pl.DataFrame(rows, schema={"top": pl.Int64, "bottom": pl.Int64, "teacher_stat": pl.Float64,
                                      "teacher_top_biased": pl.Boolean, "student_stat": pl.Float64,
                                      "student_top_biased": pl.Boolean})


def own_scale_summary(table: pl.DataFrame) -> dict[str, float]:
    """From an `own_scale_table`: teacher_top_biased_frac, student_top_biased_frac (each over the
    pairs where that model's statistic exists) and top_biased_pairs (where both exist)."""
    out = {}
    for name in ("teacher", "student"):
        decided = table[f"{name}_top_biased"].drop_nulls()
        out[f"{name}_top_biased_frac"] = float(decided.mean()) if len(decided) else math.nan
    both = table.filter(pl.col("teacher_top_biased").is_not_null() & pl.col("student_top_biased").is_not_null())
    return {**out, "top_biased_pairs": float(both.height)}


def sample_pairs(directions: int, count: int, seed: int) -> list[tuple[int, int]]:
    """`count` distinct random pairs (i, j), i < j, of 1-based direction indices."""
    everything = directions * (directions - 1) // 2
    rng = random.Random(seed)
    chosen: set[tuple[int, int]] = set()
    while len(chosen) < min(count, everything):
        i, j = sorted(rng.sample(range(1, directions + 1), 2))
        chosen.add((i, j))
    return sorted(chosen)


def top_k_sweep(directions: int) -> list[int]:
    """K values for Fig. 17: 1, 2, 5, 10, 20, 50, ... below `directions`, then all of them."""
    ks, k = [], 1
    while k < directions:
        ks.append(k)
        k = k * 5 // 2 if str(k)[0] == "2" else k * 2
    return ks + [directions]
