"""Figures of the theory alone (matplotlib, Agg backend): the phase diagram of :func:`theory.predict.phase_grid`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap

from zipfhead.theory._io import atomic_write
from zipfhead.theory.phases import COLOURS, PHASES

__all__ = ["plot_phase_grid"]


def _edges(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    mid = (v[1:] + v[:-1]) / 2
    return np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])


def plot_phase_grid(grid: dict[str, Any], path: str | Path) -> None:
    """Two panels: the predicted phase of every cell, and log10 of the predicted transition step (write, rename).

    Args:
        grid: the output of :func:`theory.predict.phase_grid` (arrays of shape (ny, nx)).
        path: the PNG to write.
    """

    path = Path(path)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    xe, ye = _edges(grid["x"]), _edges(grid["y"])
    ax = axes[0]
    ax.pcolormesh(
        xe, ye, grid["phase"], cmap=ListedColormap([COLOURS[p] for p in PHASES]), vmin=-0.5, vmax=len(PHASES) - 0.5
    )
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLOURS[p]) for p in PHASES]
    ax.legend(handles, PHASES, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    ax.set_title("predicted phase at the horizon")
    ax = axes[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        mesh = ax.pcolormesh(xe, ye, np.log10(grid["transition_step"]), cmap="viridis")
    fig.colorbar(mesh, ax=ax, label="log10 predicted transition step")
    ax.set_title("predicted transition step (blank: none)")
    for ax in axes:
        ax.set_xlabel(grid["x_name"])
        ax.set_ylabel(grid["y_name"])
    atomic_write(path, lambda f: fig.savefig(f, dpi=110, format="png"))
    plt.close(fig)
