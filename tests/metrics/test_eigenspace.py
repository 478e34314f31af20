"""The eigen-pair statistics (paper §4.1, §D.2-D.3) on cases whose answer is known: Theorem 4.1's
closed form, identical models, a hand-computed pair, noise and stratification."""
import math

import numpy as np
import polars as pl
import pytest

from kdtrack.metrics.eigenspace import (
    delta_summary,
    delta_table,
    first_passage,
    own_scale_summary,
    own_scale_table,
    pair_delta,
    ratio_bin,
)


def table(columns: dict[str, list[float]]) -> pl.DataFrame:
    steps = len(next(iter(columns.values())))
    return pl.DataFrame({"step": list(range(steps)), **{k: [float(x) for x in v] for k, v in columns.items()}})


def closed_form(eigenvalues: np.ndarray, c: np.ndarray, teacher_time: float, points: int = 2001):
    """Theorem 4.1's displacements |beta_k(t)| (beta(0) = 0): the teacher alpha_k(t) c_k to T_te, the
    student alpha_k(t) alpha_k(T_te) c_k for the same length; alpha_k(t) = 1 - exp(-lambda_k t)."""
    times = np.linspace(0, teacher_time, points)
    alpha = -np.expm1(-np.multiply.outer(times, eigenvalues))
    teacher = np.abs(alpha * c)
    student = np.abs(alpha * alpha[-1] * c)
    as_table = lambda a: table({f"v{k + 1}": a[:, k] for k in range(len(c))})  # noqa: E731
    return as_table(teacher), as_table(student)


def test_first_passage_of_the_running_maximum():
    assert first_passage(np.array([0.0, 0.4, 0.8]), 0.6) == pytest.approx(1.5)
    assert first_passage(np.array([0.0, 0.7, 0.2, 0.9]), 0.5) == pytest.approx(5 / 7)  # first crossing counts
    assert first_passage(np.array([0.3, 0.4]), 0.2) == 0.0
    assert first_passage(np.array([0.0, 0.4]), 0.5) is None


def test_the_theorem_closed_form_gives_a_negative_delta_on_every_pair():
    eigenvalues = np.array([1.0, 0.8, 0.3, 0.1, 0.03])  # log ratios from 0.22 (near-equal) to 3.5
    teacher, student = closed_form(eigenvalues, np.array([1.0, -2.0, 0.5, 3.0, 1.5]), teacher_time=2.0)
    pairs = [(i, j) for i in range(1, 6) for j in range(i + 1, 6)]
    deltas = delta_table(teacher, student, pairs, eigenvalues)
    # The student trains as long as the teacher: along v4 it reaches alpha_4(2) = 1 - e^-0.2 = 0.18 of
    # the teacher's final displacement, one level only, so the pair (4, 5) is left out.
    assert deltas.filter(pl.col("left_out") != "")[["top", "bottom"]].rows() == [(4, 5)]
    decided = deltas.filter(pl.col("left_out") == "")
    assert decided.height == 9 and (decided["delta"] < 0).all() and decided["student_exaggerates"].all()
    summary = delta_summary(deltas)
    assert summary["exaggerated_pair_frac"] == 1.0 and summary["pairs_left_out"] == 1
    assert summary["exaggerated_pair_frac_logratio_0-0.5"] == 1.0  # (1, 2): even near-equal eigenvalues


def test_identical_models_give_delta_zero():
    eigenvalues = np.array([1.0, 0.6, 0.3])
    teacher, _ = closed_form(eigenvalues, np.array([1.0, -2.0, 0.5]), teacher_time=5.0, points=101)
    deltas = delta_table(teacher, teacher, [(1, 2), (1, 3), (2, 3)], eigenvalues)
    assert deltas["delta"].to_list() == [0.0, 0.0, 0.0] and not deltas["student_exaggerates"].any()
    summary = delta_summary(deltas)
    assert summary["exaggerated_pair_frac"] == 0.0 and summary["median_delta"] == 0.0 and summary["pairs"] == 3


def test_a_hand_computed_pair():
    # Shared scale: the teacher's finals, 10 (top) and 4 (bottom). The teacher's scaled curves are
    # x = y = (0, .5, 1): r_teacher(q) = q. The student's: x = (0, .5, .75), y = (0, .25, .5).
    # It reaches q = .1 .. .7 (7 levels). For q <= .5 its point is 2q along the first segment,
    # y = .5 q: r_s - r_t = -.5 q = -.05, -.1, -.15, -.2, -.25. For q = .6, .7 it is (q - .5) / .25
    # along the second segment, y = .25 + (q - .5) = q - .25: r_s - r_t = -.25 twice.
    # delta = (-.75 - .5) / 7 = -5/28.
    teacher = table({"v1": [0, 5, 10], "v2": [0, 2, 4]})
    student = table({"v1": [0, 5, 7.5], "v2": [0, 1, 2]})
    delta, levels = pair_delta(*(t[c].to_numpy() / s for t in (teacher, student)
                                 for c, s in (("v1", 10), ("v2", 4))))
    assert levels == 7 and delta == pytest.approx(-5 / 28, abs=1e-12)
    [row] = delta_table(teacher, student, [(1, 2)], [2.0, 1.0]).to_dicts()
    assert row["delta"] == pytest.approx(-5 / 28, abs=1e-12) and row["student_exaggerates"] is True
    assert row["log_ratio"] == pytest.approx(math.log(2)) and row["ratio_bin"] == "0.5-1.5"


def test_pairs_below_the_noise_level_or_with_too_few_levels_are_left_out_and_counted():
    teacher = table({"v1": [0, 5, 10], "v2": [0, 2, 4], "v3": [0, 1e-8, 2e-6]})  # v3: 2e-7 of v1
    student = table({"v1": [0, 1, 1.5], "v2": [0, 1, 2], "v3": [0, 1e-8, 2e-6]})  # v1: to 0.15 only
    deltas = delta_table(teacher, student, [(1, 2), (1, 3), (2, 3)], [4.0, 2.0, 1.0])
    assert deltas["left_out"].to_list()[1:] == ["teacher moved < 1e-06 of its largest displacement"] * 2
    assert deltas["left_out"][0] == "1 levels reached by both (< 2)" and deltas["levels"][0] == 1
    summary = delta_summary(deltas)
    assert summary["pairs"] == 0 and summary["pairs_left_out"] == 3 and math.isnan(summary["exaggerated_pair_frac"])


def test_ratio_bins():
    assert [ratio_bin(x) for x in (0.0, 0.49, 0.5, 1.49, 1.5, 30.0)] == [
        "0-0.5", "0-0.5", "0.5-1.5", "0.5-1.5", "1.5-inf", "1.5-inf"]
    # three pairs: log ratios log(1.2) (first bin), log(3) (second), log(10) (third)
    eigenvalues = [12.0, 10.0, 4.0, 1.2]
    teacher = table({f"v{k}": [0, 1, 2] for k in range(1, 5)})
    student = table({"v1": [0, 1, 2], "v2": [0, 0.5, 2], "v3": [0, 1.5, 2], "v4": [0, 1, 2]})
    summary = delta_summary(delta_table(teacher, student, [(1, 2), (1, 3), (1, 4)], eigenvalues))
    assert summary["pairs_logratio_0-0.5"] == 1 and summary["exaggerated_pair_frac_logratio_0-0.5"] == 1.0
    assert summary["exaggerated_pair_frac_logratio_0.5-1.5"] == 0.0  # v3 ahead of the teacher: delta > 0
    assert summary["median_delta_logratio_1.5-inf"] == 0.0 and summary["pairs"] == 3
    assert summary["exaggerated_pair_frac"] == pytest.approx(1 / 3)


def test_own_scale_statistic_counts_each_model_top_biased_on_its_own():
    # Own scale hides the theorem: the closed-form student's own-scaled curves are the teacher's.
    eigenvalues = np.array([1.0, 0.3])
    teacher, student = closed_form(eigenvalues, np.array([1.0, 1.0]), teacher_time=5.0, points=501)
    own = own_scale_table(teacher, student, [(1, 2)])
    assert own["teacher_stat"][0] == pytest.approx(own["student_stat"][0], abs=1e-12)
    assert own_scale_summary(own) == {"teacher_top_biased_frac": 1.0, "student_top_biased_frac": 1.0,
                                      "top_biased_pairs": 1.0}
    flat = table({"v1": [0, 1, 2], "v2": [1, 1, 1]})
    assert own_scale_summary(own_scale_table(flat, flat, [(1, 2)]))["top_biased_pairs"] == 0
