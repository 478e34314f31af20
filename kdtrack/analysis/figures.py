"""Figures of the paper's §3 and §C: each takes confidence tables (and what to call them) and
returns a Figure drawn in kdtrack's one style (`style.styled`). Titles name the setting and seed."""
from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter

from kdtrack.analysis.style import FIT_COLOURS, styled
from kdtrack.metrics.deviations import GROUPS, QuantileLine, with_groups
from kdtrack.metrics.eigenspace import matched_levels, scaled
from kdtrack.metrics.eigenspace import shared_scale as teacher_scale

# What the confidence columns are, in the paper's words (phi(p) is the logit margin of §3).
AXES = {"phi_teacher": "teacher φ(p) on its predicted class", "phi_student": "student φ(p)",
        "phi_teacher_label": "teacher φ(p) on the true class", "phi_student_label": "student φ(p) on the true class"}


def wrapped(text: str, width: int) -> str:
    """`text` broken into lines of at most `width` characters: long titles wrap, never clip."""
    return "\n".join(textwrap.wrap(text, width, break_long_words=True)) or text


def density(ax, x, y, bins: int, diagonal: bool = True, colorbar: bool = True):
    """A hexbin 2-D histogram with log colour (Fig. 1a style), its colorbar, and the dashed
    y = x line; non-finite points are left out."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if not len(x):
        return
    cells = ax.hexbin(x, y, gridsize=bins, norm=LogNorm(), mincnt=1, linewidths=0.1)
    if colorbar:
        counts_bar(ax.figure.colorbar(cells, ax=ax, label="points per bin", pad=0.02, fraction=0.05))
    if diagonal:
        low, high = min(x.min(), y.min()), max(x.max(), y.max())
        ax.plot([low, high], [low, high], color="black", ls="--", lw=1, label="y = x")
    return cells


def counts_bar(bar) -> None:
    """A colorbar of counts on a log scale, labelled 3 rather than 3×10⁰. Minor ticks are labelled
    where the counts span too few decades for the decades to say enough: all of them under half a
    decade, a few (2, 3, 5) under two; over more, their labels (90 80 70 ...) would pile up."""
    bar.ax.yaxis.set_major_formatter(LogFormatter())
    bar.ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))


def shared_counts(figure: Figure, cells: list, **where) -> None:
    """One colour scale for the hexbins `cells` (panels that are compared side by side), drawn as
    one colorbar where `where` (colorbar's `cax` or `ax`) says: a colour then means the same count
    in every panel."""
    cells = [c for c in cells if c is not None]
    if not cells:  # no panel had a point to draw: no scale, and no empty box where it would be
        if "cax" in where:
            where["cax"].set_visible(False)
        return
    norm = LogNorm(1, max(2.0, max(float(c.get_array().max()) for c in cells)))
    for c in cells:
        c.set_norm(norm)
    counts_bar(figure.colorbar(cells[0], label="points per bin", **where))


def draw_line(ax, line: QuantileLine) -> None:
    """`line` over its own quantile's range, its slope in the legend."""
    xs = np.array([line.x_low, line.x_high])
    ax.plot(xs, line.intercept + line.slope * xs, color=FIT_COLOURS[line.part], lw=2,
            label=f"{line.part} {round(line.fraction * 100)}% fit: slope {line.slope:.2f}")


@styled
def confidence_grid(tables: dict[str, pl.DataFrame], lines: dict[str, tuple[QuantileLine, ...]], x: str, y: str,
                    title: str, bins: int = 60) -> Figure:
    """Fig. 1a / Fig. 13: one panel per split of teacher (X) versus student (Y) confidence, with
    the fit `lines` of each split (metrics.quantile_lines: the logged slopes) drawn on it."""
    figure, axes = plt.subplots(1, len(tables), figsize=(5.2 * len(tables), 4.4), squeeze=False)
    for ax, (split, table) in zip(axes[0], tables.items()):
        density(ax, table[x], table[y], bins)
        for line in lines.get(split, ()):
            draw_line(ax, line)
        ax.set(title=f"{split} (n={table.height})", xlabel=AXES.get(x, x), ylabel=AXES.get(y, y))
        ax.legend(loc="upper left")
    figure.suptitle(wrapped(title, 110))
    return figure


@styled
def setting_grid(columns: list[tuple[str, dict[str, pl.DataFrame]]], bins: int = 40) -> Figure:
    """Fig. 5: one column per setting, one row per split, each panel titled with its setting,
    split and the seeds it pools."""
    splits = list(columns[0][1])
    # A page of identical panels: fixed margins (in inches) and spacing rather than the constrained
    # layout engine, which cost half of a report's Fig. 5 time (6 s a page on 2 cores).
    # One colour scale a row (a split) rather than a colorbar a panel: the settings compare by
    # colour, and the panels' colorbars were most of a page's drawing time (their log ticks).
    titles = {(column, split): wrapped(f"{title}: {split}", 38)
              for column, (title, _) in enumerate(columns) for split in splits}
    # Room above each row for its longest title (a suite setting's name can wrap to five lines)
    # and below it for the x label, all in inches: the panels keep their size, the page grows.
    panel, title_room, label_room = 2.9, 0.2 * max(t.count("\n") + 1 for t in titles.values()) + 0.15, 0.55
    height = len(splits) * (panel + title_room + label_room)
    figure, axes = plt.subplots(len(splits), len(columns), figsize=(3.5 * len(columns) + 1.2, height),
                                squeeze=False, layout="none")
    width = figure.get_size_inches()[0]
    figure.subplots_adjust(left=0.85 / width, right=1 - 1.45 / width, bottom=label_room / height,
                           top=1 - title_room / height, wspace=0.38, hspace=(title_room + label_room) / panel)
    for row, split in enumerate(splits):
        cells = []
        for column, (_, tables) in enumerate(columns):
            ax = axes[row, column]
            cells.append(density(ax, tables[split]["phi_teacher"], tables[split]["phi_student"], bins,
                                 colorbar=False))
            ax.set(title=titles[column, split], xlabel="teacher φ(p) on its predicted class",
                   ylabel="student φ(p)")
        box = axes[row, -1].get_position()
        shared_counts(figure, cells, cax=figure.add_axes((box.x1 + 0.25 / width, box.y0, 0.15 / width, box.height),
                                                           label="<colorbar>"))
    return figure


@styled
def groups_grid(table: pl.DataFrame, split: str, caption: str, bins: int = 40) -> Figure:
    """Fig. 14: the scatter split by which model classifies the point correctly."""
    grouped = with_groups(table)
    figure, axes = plt.subplots(1, 4, figsize=(17, 4.2), sharex=True, sharey=True)
    for ax, group in zip(axes, GROUPS):
        part = grouped.filter(pl.col("group") == group)
        density(ax, part["phi_teacher"], part["phi_student"], bins)
        ax.set(title=f"{group.replace('_', ' ')} correct (n={part.height})", xlabel=AXES["phi_teacher"])
    axes[0].set_ylabel(AXES["phi_student"])
    figure.suptitle(f"{caption}, {split}: points by which model is correct (Fig. 14)")
    return figure


@styled
def metrics_grid(table: pl.DataFrame, split: str, caption: str, bins: int = 40) -> Figure:
    """Fig. 16: phi, probability and entropy scatters (top) and KL against each (bottom)."""
    def prob(column):
        return 1 / (1 + np.exp(-np.asarray(table[column], dtype=float)))

    pairs = [("φ(p)", table["phi_teacher"], table["phi_student"]),
             ("probability", prob("phi_teacher"), prob("phi_student")),
             ("entropy", table["entropy_teacher"], table["entropy_student"])]
    figure, axes = plt.subplots(2, 3, figsize=(14.5, 8.6))
    for column, (name, teacher, student) in enumerate(pairs):
        density(axes[0, column], teacher, student, bins)
        axes[0, column].set(title=name, xlabel=f"teacher {name}", ylabel=f"student {name}")
        density(axes[1, column], teacher, table["kl"], bins, diagonal=False)
        axes[1, column].set(xlabel=f"teacher {name}", ylabel="KL(teacher ‖ student)")
    figure.suptitle(f"{caption}, {split}: other deviation metrics (Fig. 16)")
    return figure


@styled
def noisy_scatter(table: pl.DataFrame, caption: str) -> Figure:
    """Fig. 4 / Fig. 18 (left): clean and mislabeled training points in two colours."""
    figure, ax = plt.subplots(figsize=(5.4, 4.8))
    for noisy, colour, label in ((False, "#0072B2", "clean"), (True, "#D55E00", "mislabeled")):
        part = table.filter(pl.col("is_noisy") == noisy)
        ax.scatter(part["phi_teacher"], part["phi_student"], s=8, c=colour, alpha=0.6, linewidths=0,
                   label=f"{label} (n={part.height})")
    values = np.concatenate([table["phi_teacher"].to_numpy(), table["phi_student"].to_numpy()])
    ax.plot([values.min(), values.max()], [values.min(), values.max()], color="black", ls="--", lw=1, label="y = x")
    ax.set(xlabel=AXES["phi_teacher"], ylabel=AXES["phi_student"],
           title=wrapped(f"{caption}, train: clean vs mislabeled (Fig. 4)", 60))
    ax.legend(loc="upper left")
    return figure


@styled
def timeline_grid(snapshots: list[tuple[int, dict[str, pl.DataFrame]]], title: str, bins: int = 40,
                  most: int = 8) -> Figure:
    """Fig. 25-26: the logit-logit plot at successive training steps, train on top, test below."""
    if len(snapshots) > most:  # evenly spaced, always keeping the first and the last
        snapshots = [snapshots[round(i * (len(snapshots) - 1) / (most - 1))] for i in range(most)]
    splits = list(snapshots[0][1])
    figure, axes = plt.subplots(len(splits), len(snapshots), figsize=(3.2 * len(snapshots), 3 * len(splits)),
                                squeeze=False, sharex="row", sharey="row")
    for row, split in enumerate(splits):
        cells = []
        for column, (step, tables) in enumerate(snapshots):
            cells.append(density(axes[row, column], tables[split]["phi_teacher"], tables[split]["phi_student"], bins,
                                 colorbar=False))  # one per panel would crowd a row of eight
            axes[row, column].set_title(f"{split}, step {step}")
        shared_counts(figure, cells, ax=axes[row, :].tolist(), pad=0.01, fraction=0.02)
        axes[row, 0].set_ylabel("student φ(p)")
    for ax in axes[-1]:
        ax.set_xlabel("teacher φ(p)")
    figure.suptitle(wrapped(title, 140))
    return figure


@styled
def accuracy_curves(curves: dict[str, list[tuple[int, float]]], marks: dict[str, int], title: str) -> Figure:
    """Fig. 24: test accuracy against step for related runs; a dotted line at each switch."""
    figure, ax = plt.subplots(figsize=(7.5, 4.6))
    for label, points in curves.items():
        steps, values = zip(*sorted(points))
        line, = ax.plot(steps, values, marker="." if len(points) < 30 else None, label=label)
        if label in marks:
            ax.axvline(marks[label], color=line.get_color(), ls=":", lw=1)
    ax.set(xlabel="training step", ylabel="test accuracy", title=wrapped(title, 80))
    ax.legend()
    return figure


EIGEN_COLOURS = (("teacher", "#0072B2"), ("student", "#E69F00"))


@styled
def eigen_grid(teacher: pl.DataFrame, student: pl.DataFrame, pairs: list[tuple[int, int]], title: str,
               shared_scale: bool = False) -> Figure:
    """Fig. 19-21: the top direction v_i (X) against the bottom one v_j (Y) over training, teacher
    and student on the same axes, a star at each final point. With `shared_scale`, the tables are
    displacements ||(W - W_0)^T v|| divided by the teacher's final one per direction (the pair
    statistic's scale, kdtrack.metrics.eigenspace), and the matched levels q both models reach are
    marked on each curve (a dotted line joins the two points of a level: the student below the
    teacher is delta < 0); without, the raw ||W^T v|| trajectories."""
    if shared_scale:
        scale = teacher_scale(teacher)
        teacher, student = scaled(teacher, scale), scaled(student, scale)
    columns = min(4, len(pairs))
    rows = -(-len(pairs) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 3.1 * rows), squeeze=False)
    for ax, (i, j) in zip(axes.flat, pairs):
        curves = {name: (table[f"v{i}"].to_numpy(), table[f"v{j}"].to_numpy())
                  for (name, _), table in zip(EIGEN_COLOURS, (teacher, student))}
        for name, colour in EIGEN_COLOURS:
            x, y = curves[name]
            ax.plot(x, y, color=colour, lw=1.2, label=name)
            ax.plot(x[-1], y[-1], marker="*", ms=12, color=colour)
        if shared_scale:
            mark_levels(ax, curves)
        what = "displacement / teacher's final" if shared_scale else "‖Wᵀv‖"
        ax.set(title=f"v{i} (X) vs v{j} (Y)", xlabel=f"v{i}: {what}", ylabel=f"v{j}: {what}")
    for ax in list(axes.flat)[len(pairs):]:
        ax.axis("off")
    axes[0, 0].legend()
    figure.suptitle(wrapped(title, 120))
    return figure


def mark_levels(ax, curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """The matched levels q on the shared scale: (q, r_teacher(q)) and (q, r_student(q))."""
    if not all(np.isfinite(np.concatenate(c)).all() for c in curves.values()):
        return  # a direction the teacher did not move has no shared scale
    matched = matched_levels(*curves["teacher"], *curves["student"])
    for q, r_teacher, r_student in matched:
        ax.plot([q, q], [r_teacher, r_student], color="grey", ls=":", lw=0.8)
    for index, (_, colour) in enumerate(EIGEN_COLOURS):
        ax.plot([q for q, *_ in matched], [values[index] for _, *values in matched], "o", ms=3, color=colour)


@styled
def top_k_accuracy(table: pl.DataFrame, title: str) -> Figure:
    """Fig. 17: accuracy when the first layer keeps only its top-K eigencomponents."""
    figure, ax = plt.subplots(figsize=(6.2, 4.4))
    for group, part in table.group_by("points", maintain_order=True):
        ax.plot(part["k"], part["accuracy"], marker="o", label=group[0])
    ax.set(xscale="log", xlabel="K (top eigendirections kept)", ylabel="train accuracy", title=wrapped(title, 70))
    ax.legend()
    return figure
