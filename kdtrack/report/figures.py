"""The report's own figures: an ablation study's objectives against its knob, and the switch
section's curves over seeds (Fig. 24) and switching gain against the teacher's fit; Fig. 5 is the
analysis' (kdtrack.analysis.figures). A frame in, a Figure out. Apart from
report.sections, which imports it when it draws, so that loading a dashboard imports no matplotlib."""
from __future__ import annotations

import polars as pl

from kdtrack.analysis.figures import wrapped
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


def seed_band(values: pl.DataFrame, by: str, column: str) -> pl.DataFrame:
    """Per value of `by`: the mean of `column` over seeds, its Student's t 95% interval (low, high;
    NaN with one seed) and the number of seeds n, sorted by `by`."""
    from kdtrack.report.claims import t_interval

    rows = []
    for (key,), part in values.group_by(by):
        mean, low, high = t_interval(part[column].to_list())
        rows.append({by: key, "mean": mean, "low": low, "high": high, "n": part.height})
    return pl.DataFrame(rows).sort(by)


def _draw_band(ax, band: pl.DataFrame, x: str, colour: str, label: str) -> None:
    ax.plot(band[x], band["mean"], color=colour, label=label)
    ax.fill_between(band[x], band["low"].fill_nan(None).fill_null(band["mean"]),
                    band["high"].fill_nan(None).fill_null(band["mean"]), color=colour, alpha=0.2, lw=0)


@styled
def switch_curves_figure(curves: pl.DataFrame, windows: pl.DataFrame, title: str):
    """Fig. 24 over seeds: a column per teacher (`panel`), in it the mean test accuracy of each kind
    of student against step, with its 95% t interval over seeds as a band, and each switch's window
    shaded in its kind's colour. Above all steps; below, the same from the first switch on."""
    import matplotlib.pyplot as plt

    panels = curves["panel"].unique(maintain_order=True).to_list()
    kinds = sorted(curves["kind"].unique().to_list(), key=lambda k: (k != "one-hot", k != "KD", k))
    colours = dict(zip(kinds, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 2))
    figure, axes = plt.subplots(2, len(panels), figsize=(4.2 * len(panels), 6.4), squeeze=False)
    first = windows["start"].min() if windows.height else 0
    for column, panel in enumerate(panels):
        top, bottom = axes[0][column], axes[1][column]
        part = curves.filter(pl.col("panel") == panel)
        zoomed = []
        for kind in [k for k in kinds if k in set(part["kind"])]:
            band = seed_band(part.filter(pl.col("kind") == kind), "step", "acc")
            label = f"{kind} (n={band['n'].max()})"
            for ax in (top, bottom):
                _draw_band(ax, band, "step", colours[kind], label)
            zoomed.append(band.filter(pl.col("step") >= first))
        for window in windows.filter(pl.col("panel") == panel).iter_rows(named=True):
            for ax in (top, bottom):
                ax.axvspan(window["start"], max(window["end"], window["start"] + 1), color=colours[window["kind"]],
                           alpha=0.15, lw=0)
        late = pl.concat(zoomed)
        if late.height:
            low, high = late["mean"].min(), late["mean"].max()
            margin = 0.1 * (high - low) + 0.002
            bottom.set_ylim(low - margin, high + margin)
        bottom.set_xlim(left=first)
        top.set_title(panel)
        bottom.set_xlabel("training step")
        top.legend(loc="lower right")
    axes[0][0].set_ylabel("test accuracy")
    axes[1][0].set_ylabel("test accuracy, from the first switch")
    figure.suptitle(wrapped(title, 40 * len(panels)))
    return figure


@styled
def switch_gain_figure(gains: pl.DataFrame, title: str):
    """The switching gain (switch minus KD test accuracy, per seed, paired by teacher run) against
    the teacher's train accuracy: a dot per seed, and per teacher_fit_fraction level and kind of
    switch the mean with its 95% t interval over seeds; the line at 0, where switching stops paying."""
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(6.4, 4.2))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    first = min(gains["kind"])
    for (kind,), part in sorted(gains.group_by("kind"), key=lambda item: item[0][0]):
        colour = colours[sorted(gains["kind"].unique().to_list()).index(kind) % len(colours)]
        ax.scatter(part["teacher_train_acc"] * 100, part["gain"] * 100, s=10, alpha=0.45, color=colour)
        levels = part.group_by("teacher_fit_fraction").agg(pl.col("teacher_train_acc").mean().alias("x"))
        band = seed_band(part, "teacher_fit_fraction", "gain").join(levels, on="teacher_fit_fraction").sort("x")
        below, above = (band["mean"] - band["low"]).fill_nan(0), (band["high"] - band["mean"]).fill_nan(0)
        ax.errorbar(band["x"] * 100, band["mean"] * 100, yerr=[below * 100, above * 100], fmt="o-", color=colour,
                    capsize=3, label=kind)
        for row in band.iter_rows(named=True) if kind == first else ():  # each level named once
            ax.annotate(f"fit {row['teacher_fit_fraction']:g}", (row["x"] * 100, row["mean"] * 100),
                        textcoords="offset points", xytext=(4, 6), fontsize=7)
    ax.axhline(0, color="black", lw=0.8)
    ax.set(xlabel="teacher's train accuracy (%)", ylabel="switch minus KD test accuracy (points)",
           title=wrapped(title, 70))
    ax.legend(title="switch")
    return figure
