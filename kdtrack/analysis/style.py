"""One look for every kdtrack figure, the analysis runs' and the report's: a set of matplotlib
rcParams that `styled` applies while a figure function builds its Figure, so that importing kdtrack
never restyles a user's own plots. Figures keep their dpi and layout engine from creation, which
is why both are set here rather than where the figure is saved."""
from __future__ import annotations

import functools

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from cycler import cycler

DPI = 150  # sharp on a laptop screen and in print; the report and MLflow's log_figure both use it
DENSITY_COLOURS = "viridis"  # perceptually uniform, readable in grey

RC = {
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "figure.constrained_layout.use": True,  # titles, labels and colorbars never overlap or clip
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "figure.titlesize": 10,
    "legend.fontsize": 7.5,
    "legend.framealpha": 0.85,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.linewidth": 0.4,
    "grid.alpha": 0.4,
    "lines.linewidth": 1.4,
    "image.cmap": DENSITY_COLOURS,
    # Okabe-Ito: distinguishable with the common colour-vision deficiencies
    "axes.prop_cycle": cycler(color=["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9",
                                     "#F0E442", "#000000"]),
}

# Fig. 1a's fit lines: the bottom quantile in vermilion, the top in blue, y = x in black.
FIT_COLOURS = {"bottom": "#D55E00", "top": "#0072B2"}


def styled(function):
    """Build `function`'s figure under RC."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with plt.style.context(RC):
            return function(*args, **kwargs)
    return wrapper
