"""The loss-switching section's frames and figures on a hand-made runs table: two teachers (on all
the data and on half), each with a KD student and a switch student, over two seeds."""
import math

import polars as pl
import pytest

from kdtrack.report import switching
from kdtrack.report.figures import seed_band, switch_curves_figure, switch_gain_figure
from kdtrack.report.sections import Fetched, switch_section


def student(run_id, teacher, seed, fit, acc, teacher_train, switch_to=None, onehot=None):
    switched = switch_to is not None
    return {"run_id": run_id, "role": "student", "teacher_run_id": teacher, "onehot_run_id": onehot, "seed": seed,
            "teacher_fit_fraction": fit, "label_noise": "0.0", "switch_to": switch_to,
            "switch_at": "0.5" if switched else None, "switch_step": "4" if switched else None,
            "switch_window": "2" if switched else None, "start_time": 1, "m:test/acc": acc,
            "m:teacher/train_acc": teacher_train}


# Gains by hand: full teacher 0.80 - 0.82 = -0.02 and 0.81 - 0.81 = 0; half teacher 0.75 - 0.70 =
# +0.05 and 0.74 - 0.71 = +0.03.
RUNS = pl.DataFrame([
    student("kd-f0", "tf0", "0", "1.0", 0.82, 1.0, onehot="tf0"),
    student("sw-f0", "tf0", "0", "1.0", 0.80, 1.0, "onehot"),
    student("kd-f1", "tf1", "1", "1.0", 0.81, 1.0, onehot="tf1"),
    student("sw-f1", "tf1", "1", "1.0", 0.81, 1.0, "onehot"),
    student("kd-h0", "th0", "0", "0.5", 0.70, 0.90, onehot="oh0"),
    student("sw-h0", "th0", "0", "0.5", 0.75, 0.90, "onehot"),
    student("kd-h1", "th1", "1", "0.5", 0.71, 0.94, onehot="oh1"),
    student("sw-h1", "th1", "1", "0.5", 0.74, 0.94, "onehot"),
    student("kd-n0", "tn0", "0", "1.0", 0.60, 1.0, onehot="tn0"),  # a teacher without a switch student
    {"run_id": "tf0", "role": "teacher", "seed": "0"},
])
ACCURACY = {run_id: [(2, 0.5 + k / 100), (4, 0.6 + k / 100), (8, 0.7 + k / 100)]
            for k, run_id in enumerate(["tf0", "tf1", "oh0", "oh1", *RUNS["run_id"].to_list()[:8]])}


def test_the_curves_are_each_switch_teachers_students_and_their_one_hot_baselines():
    chosen = switching.curve_runs(RUNS)
    assert set(chosen["run_id"]) == {"tf0", "tf1", "oh0", "oh1", "kd-f0", "sw-f0", "kd-f1", "sw-f1", "kd-h0",
                                     "sw-h0", "kd-h1", "sw-h1"}  # not kd-n0, whose teacher has no switch
    kinds = dict(zip(chosen["run_id"], chosen["kind"]))
    assert (kinds["tf0"], kinds["kd-f0"], kinds["sw-h1"]) == ("one-hot", "KD", "to one-hot at 50%")
    assert dict(zip(chosen["run_id"], chosen["panel"]))["oh1"] == "teacher on 50% of the data"
    assert switching.windows(RUNS).rows() == [("teacher on 100% of the data", "to one-hot at 50%", 4, 6),
                                              ("teacher on 50% of the data", "to one-hot at 50%", 4, 6)]
    drawn = switching.curves(RUNS, ACCURACY)
    assert drawn.height == 12 * 3
    assert switching.kind_of("distill", "0.75") == "to KD at 75%" and switching.kind_of("onehot", "300") == \
        "to one-hot at step 300"


def test_the_gain_is_paired_by_teacher_run():
    gains = switching.gains(RUNS).sort("teacher_fit_fraction", "seed")
    assert gains["gain"].to_list() == pytest.approx([0.05, 0.03, -0.02, 0.0])
    assert gains["teacher_train_acc"].to_list() == [0.90, 0.94, 1.0, 1.0]
    band = seed_band(gains, "teacher_fit_fraction", "gain")
    # mean 0.04, sd sqrt(2) * 0.01, t(0.975, 1) = 12.706: half-width 12.706 * 0.01
    assert band["mean"].to_list() == pytest.approx([0.04, -0.01])
    assert band["high"][0] - band["mean"][0] == pytest.approx(12.7062 * 0.01, rel=1e-4)
    assert band["n"].to_list() == [2, 2]
    assert math.isnan(seed_band(gains.head(1), "seed", "gain")["low"][0])  # one seed: no interval


def test_the_figures_draw_a_mean_curve_per_kind_and_the_gain_per_level():
    figure = switch_curves_figure(switching.curves(RUNS, ACCURACY), switching.windows(RUNS), "t")
    top = figure.axes[0]
    assert len(figure.axes) == 4 and len(top.get_lines()) == 3  # one-hot, KD, switch: one mean line each
    assert [t.get_text() for t in top.get_legend().get_texts()] == ["one-hot (n=2)", "KD (n=2)",
                                                                     "to one-hot at 50% (n=2)"]
    mean = top.get_lines()[0].get_ydata()  # one-hot: tf0 (k=0) and tf1 (k=1) averaged
    assert list(mean) == pytest.approx([0.505, 0.605, 0.705])
    gain = switch_gain_figure(switching.gains(RUNS), "g")
    assert [t.get_text() for t in gain.axes[0].get_legend().get_texts()] == ["to one-hot at 50%"]


def test_the_switch_section_has_both_figures_only_with_fit_levels():
    fetched = Fetched(("e",), "", "v", RUNS, RUNS, (), accuracy=ACCURACY)
    assert len(switch_section(fetched).figures) == 2
    one_level = RUNS.filter(pl.col("teacher_fit_fraction") != "0.5")
    assert len(switch_section(Fetched(("e",), "", "v", one_level, one_level, (), accuracy=ACCURACY)).figures) == 1
    assert switch_section(Fetched(("e",), "", "v", RUNS.head(1), RUNS.head(1), ())) is None
