"""Scores of the theory against trained toys, each beside the noise ceiling of the toys themselves.

Two seeds of one toy disagree: the seed-to-seed spread of the transition step is the best any prediction can do.
So every score of the theory comes with the same score between seeds, on the same cells:

* ``spearman``: Spearman rank correlation (ties-aware: average ranks, :func:`scipy.stats.spearmanr`) between
  predicted and measured transition steps, per seed and on the seeds' mean;
* ``median_relative_error``: median over cells of |predicted - measured| / measured;
* ``phase_agreement_percent``: % of (cell, seed) whose measured phase is the predicted one;
* ``noise_ceiling``: seed-vs-seed Spearman (the mean over pairs of seeds) and the median relative difference
  between seeds (|m_j - m_i| / m_i over ordered pairs), each with a bootstrap 90% interval over the cells
  (``{median, lo, hi}``: the bootstrap distribution's median and its 5th and 95th percentiles).

A predicted step counts only where the prediction says the head formed (phase icl, both or transient), and a
measured one only where the toy's does. The *ranked cells* are the held-out cells in which every seed made a
transition: the seed-mean scores and the ceiling are both taken on them (the prediction's on those of them where
it predicts a transition, their number stated).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from zipfhead.theory.phases import DIVERGED, FORMED

__all__ = ["bootstrap_interval", "noise_ceiling", "score_predictions", "spearman"]

BOOTSTRAP_RESAMPLES = 999
BOOTSTRAP_SEED = 20261203


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Ties-aware Spearman correlation of two (n,) arrays; NaN with fewer than 3 pairs or a constant side."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(stats.spearmanr(x, y).statistic)


def _median_rel(p: np.ndarray, m: np.ndarray) -> float:
    ok = np.isfinite(p) & np.isfinite(m)
    return float(np.median(np.abs(p[ok] - m[ok]) / m[ok])) if ok.any() else math.nan


def _seed_spearman(m: np.ndarray) -> float:
    """Mean over seed pairs of the Spearman correlation between seeds; m is (n cells, S seeds)."""
    vals = [spearman(m[:, i], m[:, j]) for i, j in itertools.combinations(range(m.shape[1]), 2)]
    vals = [v for v in vals if np.isfinite(v)]
    return float(np.mean(vals)) if vals else math.nan


def _seed_rel(m: np.ndarray) -> float:
    """Median over cells and ordered seed pairs of |m_j - m_i| / m_i; m is (n cells, S seeds)."""
    vals = [np.abs(m[:, j] - m[:, i]) / m[:, i] for i, j in itertools.permutations(range(m.shape[1]), 2)]
    return float(np.median(np.concatenate(vals))) if vals and m.shape[0] else math.nan


def bootstrap_interval(statistic, n: int, *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED):
    """{median, lo, hi} of ``statistic(idx)`` over bootstrap resamples ``idx`` (n,) of n cells (5th and 95th
    percentiles: a 90% percentile interval). NaN entries when n < 3 or the statistic is undefined throughout."""
    nan = {"median": math.nan, "lo": math.nan, "hi": math.nan}
    if n < 3:
        return nan
    rng = np.random.default_rng(seed)
    draws = np.array([statistic(rng.integers(0, n, n)) for _ in range(resamples)])
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return nan
    lo, med, hi = np.percentile(draws, [5, 50, 95])
    return {"median": float(med), "lo": float(lo), "hi": float(hi)}


def noise_ceiling(measured: np.ndarray) -> dict[str, Any]:
    """The seeds' agreement with each other on (n cells, S seeds) measured transition steps (all finite).

    Returns:
        ``spearman`` and ``median_relative_difference`` as {median, lo, hi} bootstrap objects, their values on the
        cells themselves (``*_value``), and ``cells`` (n). With one seed there is no ceiling (NaN).
    """
    m = np.asarray(measured, dtype=np.float64)
    n = m.shape[0]
    if m.ndim != 2 or m.shape[1] < 2:
        nan = {"median": math.nan, "lo": math.nan, "hi": math.nan}
        return {"spearman": nan, "median_relative_difference": nan, "cells": n}
    return {
        "cells": n,
        "spearman": bootstrap_interval(lambda i: _seed_spearman(m[i]), n),
        "spearman_value": _seed_spearman(m),
        "median_relative_difference": bootstrap_interval(lambda i: _seed_rel(m[i]), n),
        "median_relative_difference_value": _seed_rel(m),
    }


def _spread(v: Sequence[float]) -> dict[str, float]:
    a = np.array(v, dtype=np.float64)
    if not np.isfinite(a).any():
        return {"median": math.nan, "min": math.nan, "max": math.nan}
    return {"median": float(np.nanmedian(a)), "min": float(np.nanmin(a)), "max": float(np.nanmax(a))}


def score_predictions(
    held: Sequence[int],
    measured: np.ndarray,
    phases: Sequence[Sequence[str]],
    predicted_step: Sequence[float | None],
    predicted_phase: Sequence[str],
) -> dict[str, Any]:
    """Held-out scores of a prediction beside the noise ceiling (see the module docstring).

    Args:
        held: the scored cell indices.
        measured: (C, S) measured transition steps (NaN where the toy made none).
        phases: (C, S) measured phases.
        predicted_step: (C,) predicted transition steps (None: none).
        predicted_phase: (C,) predicted phases.

    Returns:
        A JSON-ready dict: per-seed spreads (``median_relative_error``, ``spearman``, ``phase_agreement_percent``,
        each {median, min, max} over seeds), ``spearman_seed_means`` and ``median_relative_error_seed_means``
        (each {value, median, lo, hi, cells}, bootstrap over the ranked cells), ``noise_ceiling``, and counts.
    """
    held = list(held)
    measured = np.asarray(measured, dtype=np.float64)
    S = measured.shape[1]
    pred = np.array(
        [
            math.nan if (predicted_step[c] is None or predicted_phase[c] not in FORMED) else float(predicted_step[c])
            for c in range(len(predicted_phase))
        ]
    )
    rel, rho, agree, n_pairs = [], [], [], []
    for s in range(S):
        m = measured[held, s]
        p = pred[held]
        ok = np.isfinite(m) & np.isfinite(p)
        n_pairs.append(int(ok.sum()))
        rel.append(_median_rel(p, m))
        rho.append(spearman(m[ok], p[ok]))
        # a diverged model has nothing to agree with
        pairs = [phases[c][s] == predicted_phase[c] for c in held if phases[c][s] != DIVERGED]
        agree.append(100.0 * float(np.mean(pairs)) if pairs else math.nan)
    ranked = [c for c in held if np.all(np.isfinite(measured[c]))]
    mr = measured[ranked]  # (n, S)
    mean = mr.mean(axis=1) if ranked else np.zeros(0)
    p_r = pred[ranked]
    ok = np.isfinite(p_r)
    pm, mm = p_r[ok], mean[ok]
    n_ok = int(ok.sum())

    def with_value(value: float, boot: dict[str, float]) -> dict[str, Any]:
        return {"value": value, **boot, "cells": n_ok}

    return {
        "held_out_cells": len(held),
        "ranked_cells": len(ranked),
        "pairs_per_seed": n_pairs,
        "median_relative_error": _spread(rel),
        "spearman": _spread(rho),
        "phase_agreement_percent": _spread(agree),
        "spearman_seed_means": with_value(spearman(mm, pm), bootstrap_interval(lambda i: spearman(mm[i], pm[i]), n_ok)),
        "median_relative_error_seed_means": with_value(
            _median_rel(pm, mm), bootstrap_interval(lambda i: _median_rel(pm[i], mm[i]), n_ok)
        ),
        "predicted_formed_in_ranked": n_ok,
        "noise_ceiling": noise_ceiling(mr),
    }


def format_scores(scores: dict[str, Any]) -> str:
    """The held-out scores as printed at the end of a sweep, each beside the seeds' noise ceiling."""

    def f(d: dict[str, float], fmt: str) -> str:
        return f"{d['median']:{fmt}} (seeds {d['min']:{fmt}} to {d['max']:{fmt}})"

    def b(d: dict[str, float], fmt: str) -> str:
        return f"{d.get('value', d['median']):{fmt}} [90%: {d['lo']:{fmt}} to {d['hi']:{fmt}}]"

    ceil = scores["noise_ceiling"]
    c_rho = dict(ceil["spearman"], value=ceil.get("spearman_value", math.nan))
    c_rel = dict(ceil["median_relative_difference"], value=ceil.get("median_relative_difference_value", math.nan))
    sm, rm = scores["spearman_seed_means"], scores["median_relative_error_seed_means"]
    return "\n".join(
        [
            f"held-out cells: {scores['held_out_cells']}, {scores['ranked_cells']} with a transition in every seed "
            f"(predicted there: {sm['cells']}; pairs per seed: {scores['pairs_per_seed']})",
            "                                       theory                     noise ceiling (seed vs seed)",
            f"  Spearman, seed means:                {b(sm, '+.2f'):<26} {b(c_rho, '+.2f')}",
            f"  median relative error, seed means:   {b(rm, '.2f'):<26} {b(c_rel, '.2f')}",
            f"  Spearman per seed:                   {f(scores['spearman'], '+.2f')}",
            f"  median relative error per seed:      {f(scores['median_relative_error'], '.2f')}",
            f"  phase agreement:                     {f(scores['phase_agreement_percent'], '.0f')} %",
        ]
    )
