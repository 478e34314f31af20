"""The eigen-pair evidence of an analysis from given tables: the pair statistic where displacements
are recorded, the own-scale metrics alone (and a note) where they are not (runs recorded before)."""
import numpy as np
import polars as pl

from kdtrack.analysis import figures
from kdtrack.analysis.eigen_evidence import pair_evidence
from kdtrack.contract import known_metric


def closed_form(eigenvalues, teacher_time=2.0, points=201):
    """Theorem 4.1's |beta_k|: teacher alpha_k(t), student alpha_k(t) alpha_k(T_te) (c_k = 1)."""
    times = np.linspace(0, teacher_time, points)
    alpha = -np.expm1(-np.multiply.outer(times, eigenvalues))
    return tuple(pl.DataFrame({"step": np.arange(points), **{f"v{k + 1}": path[:, k] for k in range(len(eigenvalues))}})
                 for path in (alpha, alpha * alpha[-1]))


def test_with_displacements_the_pair_statistic_and_the_own_scale_one():
    eigenvalues = np.array([1.0, 0.5, 0.2])
    tables = closed_form(eigenvalues)
    found = pair_evidence("eigen/layer3_", tables, tables, eigenvalues, [(1, 2), (1, 3), (2, 3)], "t", "f.png")
    assert found.metrics["eigen/layer3_exaggerated_pair_frac"] == 1.0 and found.metrics["eigen/layer3_pairs"] == 3
    assert found.metrics["eigen/layer3_student_top_biased_frac"] == 1.0 and not found.notes
    assert all(known_metric(name) for name in found.metrics)
    assert found.tables["eigen/layer3_pairs.parquet"].height == 3


def test_without_displacements_only_the_own_scale_metrics_and_a_note():
    eigenvalues = np.array([1.0, 0.5, 0.2])
    tables = closed_form(eigenvalues)
    found = pair_evidence("eigen/", tables, None, eigenvalues, [(1, 2), (1, 3)], "t", "figures/eigen_pairs.png")
    assert set(found.metrics) == {"eigen/teacher_top_biased_frac", "eigen/student_top_biased_frac",
                                  "eigen/top_biased_pairs"}
    assert len(found.notes) == 1 and "eigen/exaggerated_pair_frac not computed" in found.notes[0]


def test_the_shared_scale_figure_marks_the_matched_levels():
    teacher, student = closed_form(np.array([1.0, 0.3]))
    figure = figures.eigen_grid(teacher, student, [(1, 2)], "closed form", shared_scale=True)
    ax = figure.axes[0]
    teacher_x = ax.lines[0].get_xdata()
    assert teacher_x[-1] == 1.0  # the teacher's final displacement is the scale
    marks = [line for line in ax.lines if line.get_marker() == "o"]
    # alpha_1(2) = 0.86 of the teacher's: levels 0.1 .. 0.8, both models' points at each
    assert [len(m.get_xdata()) for m in marks] == [8, 8]
    teacher_marks, student_marks = (m.get_ydata() for m in marks)
    assert (np.array(student_marks) < np.array(teacher_marks)).all()  # delta < 0 drawn
