import math

import numpy as np
import polars as pl
import pytest

from kdtrack.metrics.deviations import (
    below_fraction,
    change_after,
    exaggeration_index,
    fit_slope,
    matched_excess,
    mislabeled_bottom_share,
    mislabeled_fit_gap,
    mislabeled_underfit_fraction,
    quantile_gap,
    quantile_kl,
    quantile_slope,
    summary,
    with_groups,
)


def test_slope_of_an_exact_line():
    x = np.linspace(-3, 5, 17)
    assert math.isclose(fit_slope(x, 2.5 * x - 1), 2.5)
    assert math.isnan(fit_slope([1.0, 1.0], [0.0, 2.0]))


def _table(x, y, **extra):
    n = len(x)
    base = dict(index=range(n), label=[0] * n, is_noisy=[False] * n, pred=[0] * n, teacher_pred=[0] * n,
                phi_teacher=x, phi_student=y, phi_teacher_label=x, phi_student_label=y)
    return pl.DataFrame({**base, **extra})


def test_bottom_and_top_quarter_slopes_of_a_piecewise_line():
    # Slope 2 below x = 2 (the bottom quarter of 0..7), slope 0.5 above x = 6 (the top quarter).
    x = np.arange(0, 8, 0.25)
    y = np.where(x < 2, 2 * x, np.where(x >= 6, 0.5 * x, x))
    table = _table(x, y)
    assert math.isclose(quantile_slope(table, "bottom", 0.25), 2.0)
    assert math.isclose(quantile_slope(table, "top", 0.25), 0.5)


def test_mislabeled_underfit_fraction_hand_case():
    table = _table([1.0, 2.0, 3.0, 4.0], [0.5, 2.5, 2.0, 9.0], is_noisy=[True, True, True, False])
    assert math.isclose(mislabeled_underfit_fraction(table), 2 / 3)
    assert math.isnan(mislabeled_underfit_fraction(table.with_columns(is_noisy=pl.lit(False))))


def test_correctness_groups():
    table = _table([0.0] * 4, [0.0] * 4, label=[1, 1, 1, 1], pred=[1, 1, 0, 0], teacher_pred=[1, 0, 1, 0])
    assert with_groups(table)["group"].to_list() == ["Both", "Only_student", "Only_teacher", "Neither"]
    values = summary({"train": table.with_columns(phi_teacher=pl.Series([0.0, 1, 2, 3]))})
    assert values["train/group_frac_Both"] == 0.25 and values["train/student_acc"] == 0.5


def test_direct_underfitting_measures_hand_case():
    # Teacher phi 0..7; the bottom quarter is x = 0, 1 and the top quarter x = 6, 7.
    x = [0.0, 1, 2, 3, 4, 5, 6, 7]
    y = [-1.0, 1.5, 2, 3, 4, 5, 8, 7]  # gaps: -1, +0.5 at the bottom; +2, 0 at the top
    table = _table(x, y)
    assert math.isclose(quantile_gap(table, "bottom"), -0.25)
    assert math.isclose(quantile_gap(table, "top"), 1.0)
    assert math.isclose(below_fraction(table), 0.5)
    assert math.isclose(exaggeration_index(table), 1.25)
    values = summary({"test": table})
    assert math.isclose(values["test/gap_bottom25"], -0.25) and math.isclose(values["test/exaggeration_index"], 1.25)
    assert math.isclose(values["test/below_frac_bottom25"], 0.5) and math.isclose(values["test/gap_top25"], 1.0)


def test_a_student_that_copies_its_teacher_has_no_gap():
    x = np.linspace(-4, 4, 40)
    table = _table(x, x)
    assert quantile_gap(table, "bottom") == 0 and exaggeration_index(table) == 0 and below_fraction(table) == 0


def test_matched_excess_hand_case():
    # Two bins of teacher confidence: x 0-3 and x 4-7.
    # Bin 0: the one group point has the outcome, 1 of the 3 others does: 1 - 1/3 = 2/3, weight 1.
    # Bin 1: 1 of the 2 group points has it, none of the 2 others: 1/2 - 0 = 1/2, weight 2.
    # (2/3 * 1 + 1/2 * 2) / 3 = 5/9.
    table = _table([0.0, 1, 2, 3, 4, 5, 6, 7], [0.0] * 8)
    group = pl.Series([True, False, False, False, True, True, False, False])
    outcome = pl.Series([1, 0, 0, 1, 1, 0, 0, 0])
    assert math.isclose(matched_excess(table, pl.lit(group), pl.lit(outcome), bins=2), 5 / 9)
    # a bin of group points only has no control and is left out: bin 1 alone is left
    everyone = pl.Series([False, False, False, False, True, True, True, True])
    assert math.isnan(matched_excess(table, pl.lit(everyone), pl.lit(outcome), bins=2))
    assert math.isnan(matched_excess(table, pl.lit(False), pl.lit(outcome), bins=2))


def test_mislabeled_points_against_clean_points_of_the_same_teacher_confidence():
    # 20 points; mislabeled at x = 0 and 11: the bottom quarter (x = 0-4) holds one of the two.
    x = np.arange(20.0)
    noisy = np.isin(x, [0, 11])
    table = _table(x, np.where(noisy, x - 1, x), is_noisy=noisy)
    assert math.isclose(mislabeled_bottom_share(table), 0.5)
    # both mislabeled points underfit, no clean point of their bins (x = 1, x = 10) does: excess 1
    values = summary({"train": table})
    assert values["train/mislabeled_underfit_excess"] == 1.0 and values["train/mislabeled_bottom25_share"] == 0.5
    assert math.isnan(mislabeled_bottom_share(table.with_columns(is_noisy=pl.lit(False))))


def test_kl_by_quantile_and_the_true_class_gap():
    x = [0.0, 1, 2, 3, 4, 5, 6, 7]
    table = _table(x, x, kl=[4.0, 2, 1, 1, 1, 1, 0, 0.5],
                   phi_teacher_label=[7.0, 6, 5, 4, 3, 2, 1, 0], phi_student_label=[7.0, 6, 5, 4, 3, 2, 0, -2])
    assert quantile_kl(table, "bottom") == 3.0 and quantile_kl(table, "top") == 0.25
    values = summary({"test": table})
    # the true class's bottom quarter is x_label = 0, 1, with gaps -2 and -1
    assert values["test/gap_bottom25_label"] == -1.5 and values["test/gap_bottom25"] == 0
    assert values["test/kl_bottom25"] == 3.0 and values["test/kl_top25"] == 0.25


def test_underfit_points_that_err_against_fitted_points_of_the_same_confidence():
    # 20 points, ten bins of two (x = 2k, 2k + 1). Labels 0; the student errs where pred = 1.
    # Underfit (y < x) at even x, all wrong; fitted at odd x, all right: an excess of 1 per bin.
    x = np.arange(20.0)
    even = np.arange(20) % 2 == 0
    table = _table(x, np.where(even, x - 1, x), pred=even.astype(int))
    assert summary({"test": table})["test/underfit_err_excess"] == 1.0
    # the student right everywhere: the underfit points err no more often than the others
    assert summary({"test": table.with_columns(pred=pl.lit(0))})["test/underfit_err_excess"] == 0.0


def test_mislabeled_fit_gap_hand_case():
    # Four mislabeled points (labels 1, flipped): the teacher predicts the flipped label on all four,
    # the student on one: 1/4 - 4/4 = -3/4. The clean point does not count.
    table = _table([0.0] * 5, [0.0] * 5, label=[1, 1, 1, 1, 0], is_noisy=[True, True, True, True, False],
                   teacher_pred=[1, 1, 1, 1, 0], pred=[1, 0, 2, 0, 0])
    assert mislabeled_fit_gap(table) == -0.75
    assert summary({"train": table, "test": table})["train/mislabeled_fit_gap"] == -0.75
    assert math.isnan(mislabeled_fit_gap(table.with_columns(is_noisy=pl.lit(False))))


def test_change_after_a_switch_by_hand():
    # A gap sampled at 120, 240, 360, 480; a switch at 240 (the 240 sample is the state before it).
    timeline = {480: -0.1, 120: -0.3, 240: -0.5, 360: -0.4}
    assert change_after(timeline, 240) == (240, 480, pytest.approx(0.4))
    assert change_after(timeline, 300) == (240, 480, pytest.approx(0.4))  # the last sample at or before
    assert change_after(timeline, 240, end=360) == (240, 360, pytest.approx(0.1))
    for step, end in ((100, None), (480, None), (240, 400)):
        with pytest.raises(ValueError, match=r"sampled at \[120, 240, 360, 480\]"):
            change_after(timeline, step, end)
    with pytest.raises(ValueError, match=r"sampled at \[\]"):
        change_after({}, 240)
