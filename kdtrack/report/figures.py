"""The report's own figure, an ablation study's objectives against its knob; the others (Fig. 5,
Fig. 24) are the analysis' (kdtrack.analysis.figures). A frame in, a Figure out. Apart from
report.sections, which imports it when it draws, so that loading a dashboard imports no matplotlib."""
from __future__ import annotations

import polars as pl

from kdtrack.analysis.style import styled


def numbers(values: list[str]) -> list[float] | None:
    """`values` as floats, or None when one is not a number (a categorical knob: an optimizer)."""
    try:
        return [float(v) for v in values]
    except ValueError:
        return None


@styled
def ablation_figure(trials: pl.DataFrame, objectives: list[str], knob: str, labels: list[str], title: str):
    """Each objective of the finished `trials` against the ablated `knob`'s values (`labels`)."""
    import matplotlib.pyplot as plt

    values = numbers(labels)
    figure, axes = plt.subplots(1, len(objectives), figsize=(5 * len(objectives), 3.8), squeeze=False)
    for ax, column in zip(axes[0], objectives):
        points = [(x, y) for x, y in zip(values or labels, trials[column].to_list()) if y is not None]
        ax.scatter(*zip(*points))  # strings plot as categories, in order of appearance
        ax.set(xlabel=knob, ylabel=column.removeprefix("m:objective/"), title=title,
               xscale="log" if (knob == "lr" and values and min(values) > 0) else "linear")
    return figure
