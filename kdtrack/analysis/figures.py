"""Figures of the paper's §3 and §C: each takes confidence tables and returns a Figure."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from matplotlib.figure import Figure

from kdtrack.analysis.metrics import GROUPS, with_groups


def _density(ax, x, y, bins: int, diagonal: bool = True) -> None:
    """2-D histogram with log colour (Fig. 1a style) and the dashed X = Y line."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x):
        ax.hexbin(x, y, gridsize=bins, bins="log", cmap="viridis", mincnt=1)
    if diagonal and len(x):
        low, high = min(x.min(), y.min()), max(x.max(), y.max())
        ax.plot([low, high], [low, high], "k--", lw=1)


def confidence_grid(tables: dict[str, pl.DataFrame], x: str, y: str, title: str, bins: int = 60) -> Figure:
    """One panel per split of teacher (X) versus student (Y) confidence."""
    figure, axes = plt.subplots(1, len(tables), figsize=(4.5 * len(tables), 4.2), squeeze=False)
    for ax, (split, table) in zip(axes[0], tables.items()):
        _density(ax, table[x], table[y], bins)
        ax.set(title=f"{split}", xlabel=f"teacher {x}", ylabel=f"student {y}")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def groups_grid(table: pl.DataFrame, split: str, bins: int = 40) -> Figure:
    """Fig. 14: the scatter split by which model classifies the point correctly."""
    grouped = with_groups(table)
    figure, axes = plt.subplots(1, 4, figsize=(16, 4), sharex=True, sharey=True)
    for ax, group in zip(axes, GROUPS):
        part = grouped.filter(pl.col("group") == group)
        _density(ax, part["phi_teacher"], part["phi_student"], bins)
        ax.set(title=f"{group} (n={part.height})", xlabel="teacher phi")
    axes[0].set_ylabel("student phi")
    figure.suptitle(f"{split}: points by correctness (Fig. 14)")
    figure.tight_layout()
    return figure


def metrics_grid(table: pl.DataFrame, split: str, bins: int = 40) -> Figure:
    """Fig. 16: phi, probability and entropy scatters (top) and KL against each (bottom)."""
    def prob(column):
        return 1 / (1 + np.exp(-np.asarray(table[column], dtype=float)))

    pairs = [("phi", table["phi_teacher"], table["phi_student"]),
             ("probability", prob("phi_teacher"), prob("phi_student")),
             ("entropy", table["entropy_teacher"], table["entropy_student"])]
    figure, axes = plt.subplots(2, 3, figsize=(13.5, 8.4))
    for column, (name, teacher, student) in enumerate(pairs):
        _density(axes[0, column], teacher, student, bins)
        axes[0, column].set(title=f"{name}", xlabel=f"teacher {name}", ylabel=f"student {name}")
        _density(axes[1, column], teacher, table["kl"], bins, diagonal=False)
        axes[1, column].set(xlabel=f"teacher {name}", ylabel="KL(teacher || student)")
    figure.suptitle(f"{split}: other deviation metrics (Fig. 16)")
    figure.tight_layout()
    return figure


def noisy_scatter(table: pl.DataFrame) -> Figure:
    """Fig. 4 / Fig. 18 (left): clean and mislabeled training points in two colours."""
    figure, ax = plt.subplots(figsize=(5, 4.5))
    for noisy, colour, label in ((False, "tab:blue", "clean"), (True, "tab:red", "mislabeled")):
        part = table.filter(pl.col("is_noisy") == noisy)
        ax.scatter(part["phi_teacher"], part["phi_student"], s=10, c=colour, alpha=0.7,
                   label=f"{label} (n={part.height})")
    values = np.concatenate([table["phi_teacher"].to_numpy(), table["phi_student"].to_numpy()])
    ax.plot([values.min(), values.max()], [values.min(), values.max()], "k--", lw=1)
    ax.set(xlabel="teacher phi", ylabel="student phi", title="train: clean vs mislabeled")
    ax.legend()
    figure.tight_layout()
    return figure


def timeline_grid(snapshots: list[tuple[int, dict[str, pl.DataFrame]]], title: str, bins: int = 40,
                  most: int = 8) -> Figure:
    """Fig. 25-26: the logit-logit plot at successive training steps, train on top, test below."""
    if len(snapshots) > most:  # evenly spaced, always keeping the first and the last
        snapshots = [snapshots[round(i * (len(snapshots) - 1) / (most - 1))] for i in range(most)]
    splits = list(snapshots[0][1])
    figure, axes = plt.subplots(len(splits), len(snapshots), figsize=(3.2 * len(snapshots), 3 * len(splits)),
                                squeeze=False, sharex="row", sharey="row")
    for column, (step, tables) in enumerate(snapshots):
        for row, split in enumerate(splits):
            _density(axes[row, column], tables[split]["phi_teacher"], tables[split]["phi_student"], bins)
            axes[row, column].set_title(f"{split}, step {step}", fontsize=9)
        axes[-1, column].set_xlabel("teacher phi")
    for row in range(len(splits)):
        axes[row, 0].set_ylabel("student phi")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def accuracy_curves(curves: dict[str, list[tuple[int, float]]], marks: dict[str, int], title: str) -> Figure:
    """Fig. 24: test accuracy against step for related runs; a dotted line at each switch."""
    figure, ax = plt.subplots(figsize=(7, 4.5))
    for label, points in curves.items():
        steps, values = zip(*sorted(points))
        line, = ax.plot(steps, values, marker="." if len(points) < 30 else None, label=label)
        if label in marks:
            ax.axvline(marks[label], color=line.get_color(), ls=":", lw=1)
    ax.set(xlabel="step", ylabel="test accuracy", title=title)
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def eigen_grid(teacher: pl.DataFrame, student: pl.DataFrame, pairs: list[tuple[int, int]], title: str) -> Figure:
    """Fig. 19-21: ||W^T v_i|| (top direction, X) against ||W^T v_j|| (bottom, Y) over training,
    teacher and student on the same axes, a star at each final point."""
    columns = min(4, len(pairs))
    rows = -(-len(pairs) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 3.1 * rows), squeeze=False)
    for ax, (i, j) in zip(axes.flat, pairs):
        for table, colour, label in ((teacher, "tab:blue", "teacher"), (student, "tab:orange", "student")):
            x, y = table[f"v{i}"].to_numpy(), table[f"v{j}"].to_numpy()
            ax.plot(x, y, color=colour, lw=1.2, label=label)
            ax.plot(x[-1], y[-1], marker="*", ms=12, color=colour)
        ax.set_title(f"v{i} (X) vs v{j} (Y)", fontsize=9)
    for ax in list(axes.flat)[len(pairs):]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def top_k_accuracy(table: pl.DataFrame, title: str) -> Figure:
    """Fig. 17: accuracy when the first layer keeps only its top-K eigencomponents."""
    figure, ax = plt.subplots(figsize=(6, 4.2))
    for group, part in table.group_by("points", maintain_order=True):
        ax.plot(part["k"], part["accuracy"], marker="o", label=group[0])
    ax.set(xscale="log", xlabel="K (top eigendirections kept)", ylabel="train accuracy", title=title)
    ax.legend()
    figure.tight_layout()
    return figure
