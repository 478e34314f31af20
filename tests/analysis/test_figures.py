"""The figures draw the numbers the analysis logs: tested on the data handed to matplotlib (the
lines' coordinates and legend labels), not on pixels."""
import numpy as np
import pytest
import torch

from kdtrack.analysis import figures
from kdtrack.analysis.evidence import fit_lines
from kdtrack.analysis.style import DPI
from kdtrack.metrics.confidence import student_table
from kdtrack.metrics.deviations import quantile_line, summary


def tables(seed: int = 0) -> dict:
    """Confidence tables of a student that exaggerates its teacher's low confidence."""
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for split, count in (("train", 400), ("test", 200)):
        teacher = torch.randn(count, 5, generator=generator) * 2
        student = 1.4 * teacher + torch.randn(count, 5, generator=generator)
        labels = torch.randint(0, 5, (count,), generator=generator)
        out[split] = student_table(student, teacher, labels, torch.zeros(count, dtype=torch.bool))
    return out


def drawn_fits(figure) -> dict[str, list[tuple[str, float]]]:
    """Per panel title: each fit line's legend label and the slope of its drawn coordinates."""
    out = {}
    for ax in figure.axes:
        fits = [line for line in ax.get_lines() if "fit" in line.get_label()]
        if fits:
            slopes = [(line.get_label(), float(np.polyfit(line.get_xdata(), line.get_ydata(), 1)[0])) for line in fits]
            out[ax.get_title().split(" ")[0]] = slopes
    return out


@pytest.mark.parametrize("fraction", [0.25, 0.1])
def test_fig_1a_draws_the_logged_slopes(fraction):
    data = tables()
    logged = summary(data, fraction)
    pct = round(fraction * 100)
    lines = fit_lines(data, fraction)
    for split in data:
        bottom, top = lines[split]
        assert bottom.slope == logged[f"{split}/slope_bottom{pct}"]  # the same function, not a recomputation
        assert top.slope == logged[f"{split}/slope_top{pct}"]
    figure = figures.confidence_grid(data, lines, "phi_teacher", "phi_student", "mnist_mlp mlp>mlp, seed 0", 30)
    drawn = drawn_fits(figure)
    assert set(drawn) == {"train", "test"}
    for split, fits in drawn.items():
        (bottom_label, bottom_drawn), (top_label, top_drawn) = fits
        assert bottom_drawn == pytest.approx(logged[f"{split}/slope_bottom{pct}"], rel=1e-9)
        assert top_drawn == pytest.approx(logged[f"{split}/slope_top{pct}"], rel=1e-9)
        assert bottom_label == f"bottom {pct}% fit: slope {logged[f'{split}/slope_bottom{pct}']:.2f}"
        assert top_label.startswith(f"top {pct}% fit: slope ")
    axes = figure.axes[0]
    assert axes.get_xlabel() == "teacher φ(p) on its predicted class" and axes.get_ylabel() == "student φ(p)"
    assert any(a.get_label() == "<colorbar>" for a in figure.axes) and figure.dpi >= DPI


def test_fig_13_draws_the_logged_label_slope():
    data = tables(1)
    lines = fit_lines(data, 0.25, "_label")
    assert [lines[s][0].slope for s in data] == [summary(data)[f"{s}/slope_bottom25_label"] for s in data]


def test_a_fit_line_spans_its_quantile_and_passes_through_its_mean_point():
    table = tables()["test"]
    line = quantile_line(table, "bottom", 0.25)
    quarter = table.sort("phi_teacher").head(50)
    assert (line.x_low, line.x_high) == (quarter["phi_teacher"].min(), quarter["phi_teacher"].max())
    assert line.intercept + line.slope * quarter["phi_teacher"].mean() == pytest.approx(quarter["phi_student"].mean())


def test_a_figure_names_its_setting_and_seed():
    figure = figures.groups_grid(tables()["test"], "test", "mnist_mlp mlp>mlp, seed 3")
    assert figure.get_suptitle().startswith("mnist_mlp mlp>mlp, seed 3, test")


def test_fig_5_puts_each_row_of_settings_on_one_colour_scale():
    """A bin of 50 points in one setting and of 7 in the other: one colorbar a split, from 1 to
    50, so that a colour is the same count in every panel of the row."""
    import polars as pl

    def setting(count: int) -> dict:
        points = pl.DataFrame({"phi_teacher": [0.0] * count + [1.0], "phi_student": [0.0] * count + [1.0]})
        return {"train": points, "test": points.head(2)}

    figure = figures.setting_grid([("a", setting(50)), ("b", setting(7))], bins=5)
    bars = [ax for ax in figure.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 2
    panels = [ax for ax in figure.axes if ax not in bars]
    train = [ax.collections[0] for ax in panels if ax.get_title().endswith("train")]
    assert train[0].norm is train[1].norm and (train[0].norm.vmin, train[0].norm.vmax) == (1, 50)
    assert sorted(max(c.get_array()) for c in train) == [7, 50]
