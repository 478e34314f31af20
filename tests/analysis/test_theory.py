"""Theorem 4.1 (paper §4, §B) on random instances of its closed form, and the theory run."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kdtrack import tracking
from kdtrack.analysis.theory import Instance, alpha, check, closed_form_ratios, matched_student_time, theory
from kdtrack.config import TheoryConfig


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 12), extra=st.integers(1, 40), seed=st.integers(0, 10_000),
       teacher_time=st.floats(0.05, 20))  # beyond, 1 - ratio < 1e-9
def test_the_student_has_a_smaller_bottom_component_at_matched_top_progress(n, extra, seed, teacher_time):
    instance = Instance.random(n, n + extra, seed)
    ratios = closed_form_ratios(instance.eigenvalues, teacher_time, points=20)
    assert ratios.size == 0 or (ratios < 1).all()


def test_matched_time_matches_the_top_component():
    lam1, big_t = 0.7, 3.0
    t = np.array([0.1, 1.0, 2.9])
    student = matched_student_time(lam1, t, big_t)
    assert np.allclose(alpha(lam1, student) * alpha(lam1, big_t), alpha(lam1, t))
    assert (student > t).all()  # the student needs longer on the top direction: its target is smaller


def test_a_hand_computed_pair():
    # lambda = (1, 0.5), T = 5, t = 1: t~ solves (1 - e^-t~)(1 - e^-5) = 1 - e^-1.
    ratio = closed_form_ratios(np.array([1.0, 0.5]), 5.0, points=1)  # the one time is T/2 = 2.5
    t_student = -np.log(1 - (1 - np.exp(-2.5)) / (1 - np.exp(-5)))
    expected = (1 - np.exp(-0.5 * t_student)) * (1 - np.exp(-2.5)) / (1 - np.exp(-1.25))
    assert ratio.shape == (1, 1) and ratio[0, 0] == pytest.approx(expected, rel=1e-12)


def test_finite_step_gradient_descent_obeys_it_too():
    metrics, _ = check(n=16, p=64, steps=100, pairs=16)
    assert metrics["theory/closed_form_holds_frac"] == 1.0
    assert metrics["theory/gd_holds_frac"] == 1.0 and metrics["theory/gd_checks"] > 0
    assert 0 <= metrics["theory/ce_exaggerated_pair_frac"] <= 1  # measured, not promised
    assert metrics["theory/ce_pairs"] + metrics["theory/ce_pairs_left_out"] == 16


def test_the_pair_statistic_sees_the_theorem_on_its_closed_form():
    # The analysis's statistic (delta on the teacher's shared scale) on the closed-form trajectories,
    # teacher to T_te and student for the same length: delta < 0 on every decided pair.
    for seed in range(3):
        metrics, _ = check(n=16, p=64, seed=seed, steps=100, pairs=40)
        assert metrics["theory/closed_form_exaggerated_pair_frac"] == 1.0
        assert metrics["theory/closed_form_pairs"] >= 30 and metrics["theory/closed_form_median_delta"] < 0


def test_the_theory_run(store):
    run_id = theory(TheoryConfig(n=8, p=32, steps=50, pairs=8, experiment="theory"))
    run = tracking.get_run(run_id)
    assert run.data.tags["kdtrack.role"] == "theory" and run.data.metrics["theory/closed_form_holds_frac"] == 1.0
    assert run.data.metrics["theory/closed_form_exaggerated_pair_frac"] == 1.0
    assert "figures/theorem41.png" in {a.path for a in tracking.client().list_artifacts(run_id, "figures")}


def test_analyze_can_add_the_theory_run(store):
    from conftest import TINY

    from kdtrack.analysis.analyze import analyze
    from kdtrack.config import AnalyzeConfig, DistillConfig, from_params
    from kdtrack.pipeline.stages import distill

    student = distill(from_params(DistillConfig, TINY), "with-theory")
    analysis, theory_run = analyze(AnalyzeConfig(student_run_id=student, theory=True, figures=False))
    assert tracking.get_run(theory_run).data.tags["kdtrack.role"] == "theory"
    assert tracking.get_run(theory_run).info.experiment_id == tracking.get_run(student).info.experiment_id
