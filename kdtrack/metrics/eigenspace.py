"""Is the student more biased toward top eigendirections than its teacher? (paper §4.1, §D.3)

Pure functions of eigen-trajectories: tables with a `step` column and one column `v<k>` per
direction holding ||W^T v_k||_2, directions in descending order of eigenvalue.

The statistic of a pair (i < j: i the top direction on X, j the bottom one on Y) for one model:
with normalized progress p_X(t) = (x(t) - x(0)) / (x(T) - x(0)) and likewise p_Y, it is p_Y at
the first moment p_X reaches one half (linearly interpolated between logged steps). The smaller,
the more the model has converged along the top direction before the bottom one. The student is
*more top-biased* than the teacher on the pair when its statistic is smaller.
"""
from __future__ import annotations

import math
import random

import numpy as np
import polars as pl


def progress(values: np.ndarray) -> np.ndarray | None:
    """(v(t) - v(0)) / (v(T) - v(0)); None when the direction did not move at all."""
    span = values[-1] - values[0]
    if abs(span) <= 1e-12 * max(1.0, abs(values[0])):
        return None
    return (values - values[0]) / span


def bottom_progress_at_half_top(x: np.ndarray, y: np.ndarray) -> float:
    """p_Y when p_X first reaches 1/2; NaN where either direction did not move."""
    px, py = progress(np.asarray(x, float)), progress(np.asarray(y, float))
    if px is None or py is None:
        return math.nan
    index = int(np.argmax(px >= 0.5))  # exists: px ends at 1
    if index == 0:
        return float(py[0])
    a, b = px[index - 1], px[index]
    share = (0.5 - a) / (b - a)
    return float(py[index - 1] + share * (py[index] - py[index - 1]))


def sample_pairs(directions: int, count: int, seed: int) -> list[tuple[int, int]]:
    """`count` distinct random pairs (i, j), i < j, of 1-based direction indices."""
    everything = directions * (directions - 1) // 2
    rng = random.Random(seed)
    chosen: set[tuple[int, int]] = set()
    while len(chosen) < min(count, everything):
        i, j = sorted(rng.sample(range(1, directions + 1), 2))
        chosen.add((i, j))
    return sorted(chosen)


def pair_table(teacher: pl.DataFrame, student: pl.DataFrame, pairs: list[tuple[int, int]]) -> pl.DataFrame:
    """One row per pair: both statistics and whether the student is more top-biased."""
    rows = []
    for i, j in pairs:
        t = bottom_progress_at_half_top(teacher[f"v{i}"].to_numpy(), teacher[f"v{j}"].to_numpy())
        s = bottom_progress_at_half_top(student[f"v{i}"].to_numpy(), student[f"v{j}"].to_numpy())
        rows.append({"top": i, "bottom": j, "teacher_stat": t, "student_stat": s,
                     "student_more_top_biased": None if math.isnan(t) or math.isnan(s) else s < t})
    return pl.DataFrame(rows, schema={"top": pl.Int64, "bottom": pl.Int64, "teacher_stat": pl.Float64,
                                      "student_stat": pl.Float64, "student_more_top_biased": pl.Boolean})


def exaggerated_fraction(pairs: pl.DataFrame) -> tuple[float, int]:
    """Fraction of pairs (where both statistics exist) in which the student is more top-biased."""
    decided = pairs["student_more_top_biased"].drop_nulls()
    return (float(decided.mean()) if len(decided) else math.nan), len(decided)


def top_k_sweep(directions: int) -> list[int]:
    """K values for Fig. 17: 1, 2, 5, 10, 20, 50, ... below `directions`, then all of them."""
    ks, k = [], 1
    while k < directions:
        ks.append(k)
        k = k * 5 // 2 if str(k)[0] == "2" else k * 2
    return ks + [directions]
