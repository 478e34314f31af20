"""The statistics behind a claim's verdict, as pure functions of per-seed values: one-sided t tests,
Holm's step-down correction, per-seed slopes for graded variants, and the seeds a study would need.

Sidedness: a claim's verdict is a two-sided 95% Student's t interval that clears its threshold
(claims.verdict); equivalently a one-sided t test at 2.5% for the side the interval lies on.
`one_sided` gives the p-value of both sides, so that Holm can correct them over a family: a
one-sided p < 0.025 is exactly the interval clearing the threshold, and a family of one claim row
gets the same verdict with and without the correction.
"""
from __future__ import annotations

import math

from scipy import stats

ALPHA = 0.025  # one side of the 95% two-sided interval
POWER = 0.8


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1) of at least 2 values."""
    n = len(values)
    mean = sum(values) / n
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def one_sided(values: list[float], threshold: float, upward: bool) -> tuple[float, float]:
    """(p, p_opposite): Student's t test of the per-seed values' mean against `threshold`,
    t = (mean - threshold) / (sd / sqrt(n)) with n - 1 degrees of freedom; p for the claimed side
    (mean above the threshold when `upward`, below otherwise), p_opposite for the other side
    (together they sum to 1). NaN with fewer than 2 values. Values without spread have an exact
    mean: p is 0 on the side it lies on (0.5 each when it equals the threshold)."""
    if len(values) < 2:
        return math.nan, math.nan
    mean, sd = mean_sd(values)
    gap = mean - threshold
    if sd == 0:
        t = math.copysign(math.inf, gap) if gap else 0.0
    else:
        t = gap / (sd / math.sqrt(len(values)))
    above = float(stats.t.sf(t, len(values) - 1))
    below = float(stats.t.cdf(t, len(values) - 1))
    return (above, below) if upward else (below, above)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment, in the input's order: sorted ascending, the i-th smallest of m
    becomes max over j <= i of min(1, (m - j + 1) p_(j)). NaN (an untested row) passes through and
    does not count in m."""
    tested = sorted((p, i) for i, p in enumerate(pvalues) if not math.isnan(p))
    adjusted = list(pvalues)
    running = 0.0
    for rank, (p, index) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[index] = running
    return adjusted


def decided(p: float, p_opposite: float) -> str:
    """holds when the claimed side's p < ALPHA, fails when the opposite side's is, else inconclusive."""
    if p < ALPHA:
        return "holds"
    if p_opposite < ALPHA:
        return "fails"
    return "inconclusive"


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of value on strength over (strength, value) points; NaN with fewer than
    two distinct strengths."""
    xs = [x for x, _ in points]
    if len(set(xs)) < 2:
        return math.nan
    x_mean = sum(xs) / len(xs)
    y_mean = sum(y for _, y in points) / len(points)
    return (sum((x - x_mean) * (y - y_mean) for x, y in points)
            / sum((x - x_mean) ** 2 for x in xs))


def seed_slopes(points: dict[str, list[tuple[float, float]]]) -> list[float]:
    """One slope per seed from that seed's (strength, value) points; seeds with fewer than two
    strengths have none. Fitting per seed keeps the pairing the suites build in (each seed's
    variants share their teacher and data order), so a seed's overall level cancels from its slope
    and the interval has n - 1 degrees of freedom for n seeds. One fit over the pooled points would
    count n x levels points as independent (too many degrees of freedom) and leave the spread
    between seeds in its residuals."""
    slopes = [slope(seed_points) for seed_points in points.values()]
    return [s for s in slopes if not math.isnan(s)]


def seeds_needed(values: list[float], threshold: float, most: int = 100_000) -> int | None:
    """An estimate of the seeds at which the 95% interval would clear `threshold` with 80% power,
    taking the observed sd and distance |mean - threshold| as true: the smallest n with
    n >= ((t_{0.975, n-1} + t_{0.8, n-1}) * sd / |mean - threshold|)^2, searched upward from the
    normal approximation ((z_0.975 + z_0.8) * sd / d)^2. None with fewer than 2 values or no
    distance or no spread; `most` when the estimate is larger (the effect is as good as nil)."""
    if len(values) < 2:
        return None
    mean, sd = mean_sd(values)
    distance = abs(mean - threshold)
    if distance == 0 or sd == 0:
        return None
    ratio = sd / distance
    z = stats.norm.ppf(1 - ALPHA) + stats.norm.ppf(POWER)
    n = max(2, math.ceil((z * ratio) ** 2))
    while n < most:  # t quantiles exceed z's: a few steps up from the normal estimate
        quantiles = stats.t.ppf(1 - ALPHA, n - 1) + stats.t.ppf(POWER, n - 1)
        if n >= (quantiles * ratio) ** 2:
            return n
        n += 1
    return most
