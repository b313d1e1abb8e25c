"""The one transition rule, shared by the toys' measures, the reduced model's integrator and the sweep's phases.

A rising curve v(t) (in-context accuracy of a toy at its evaluations, or the reduced model's in-context proxy on its
integration steps) makes its *transition* where it first covers half the way from chance to where it ends:

1. ``smoothed`` = centred moving average of ``v`` over ``smooth`` points (odd; the window shrinks at the ends;
   ``smooth = 1`` is no smoothing);
2. ``final`` = mean of the last ``final_window`` raw values (all of them when there are fewer), unless where the
   curve ends is known in closed form and given (the published anchors' order parameters, which tend to 1 at the
   global minimum: :mod:`theory.anchors`);
3. if ``final - chance < min_rise`` the curve never rose: no transition;
4. ``threshold = chance + (final - chance) / 2``; the transition is the first upward crossing of ``threshold`` by
   ``smoothed``, located by linear interpolation between the two points that bracket it. Its uncertainty is half
   their spacing (the crossing lies somewhere between them). If the first point is already above the threshold
   the crossing is not bracketed: (t[0], inf). If no smoothed point reaches it (a rise only in the last raw
   values, diluted by the smoothing): no transition.

The toys use ``smooth = 3`` and ``final_window = 3`` (their evaluation curves carry sampling noise of a few
percent); the reduced model's curve is noise-free and sampled on thousands of adaptive steps, where the same rule
is applied with ``smooth = 1`` and ``final_window = 1`` (a 3-point average of a smooth curve on a fine grid moves
the crossing by less than the grid spacing).

The *phase* rule reads the same smoothed curve: the circuit has *formed* when ``max(smoothed)`` reaches the
phase threshold (:func:`theory.predict.icl_threshold`: half way from the copy plateau to 1), and has *faded* when
it formed but ``final`` ends below that threshold.

:func:`crossing` is the Numba kernel (called inside the reduced model's integrator); :func:`half_rise` and
:func:`curve_phase_flags` are its Python faces. There is no other implementation in zipfhead.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba as nb
import numpy as np

__all__ = ["MIN_RISE", "Crossing", "crossing", "curve_phase_flags", "half_rise", "smoothed_curve"]

#: the smallest rise from chance (in accuracy units) that counts as a transition
MIN_RISE = 0.2


class Crossing(NamedTuple):
    """A transition time and its uncertainty (same units as the curve's times; None when there is none)."""

    time: float | None
    uncertainty: float | None


@nb.njit(cache=True)
def _smooth_at(v, count, i, half):
    lo = max(0, i - half)
    hi = min(count, i + half + 1)
    total = 0.0
    for j in range(lo, hi):
        total += v[j]
    return total / (hi - lo)


@nb.njit(cache=True)
def crossing(t, v, count, chance, min_rise, smooth, final_window, final):
    """The half-rise rule on the first ``count`` points of ``t`` (strictly increasing) and ``v``; ``final`` is
    where the curve ends when that is known, NaN to measure it from the last ``final_window`` values.

    Returns (time, uncertainty): NaN, NaN when there is no transition; (t[0], inf) when the first point is above.
    """
    if count < 1:
        return math.nan, math.nan
    if math.isnan(final):
        fw = min(final_window, count)
        final = 0.0
        for j in range(count - fw, count):
            final += v[j]
        final /= fw
    if not final - chance >= min_rise:
        return math.nan, math.nan
    threshold = chance + 0.5 * (final - chance)
    half = smooth // 2
    prev = 0.0
    for i in range(count):
        cur = _smooth_at(v, count, i, half)
        if cur >= threshold:
            if i == 0:
                return t[0], math.inf
            frac = (threshold - prev) / (cur - prev)
            return t[i - 1] + frac * (t[i] - t[i - 1]), 0.5 * (t[i] - t[i - 1])
        prev = cur
    return math.nan, math.nan


def _check(
    t, v, smooth: int, final_window: int, chance: float, min_rise: float, final: float | None
) -> tuple[np.ndarray, np.ndarray]:
    t = np.ascontiguousarray(t, dtype=np.float64)
    v = np.ascontiguousarray(v, dtype=np.float64)
    if t.ndim != 1 or t.shape != v.shape or t.size == 0:
        raise ValueError(f"times {t.shape} and values {v.shape} must be non-empty 1-D arrays of equal length")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(v))):
        raise ValueError("times and values must be finite")
    if np.any(np.diff(t) <= 0):
        raise ValueError("times must be strictly increasing")
    if isinstance(smooth, bool) or not isinstance(smooth, int | np.integer) or smooth < 1 or smooth % 2 == 0:
        raise ValueError(f"smooth = {smooth!r} is not allowed: it must be an odd integer >= 1")
    if isinstance(final_window, bool) or not isinstance(final_window, int | np.integer) or final_window < 1:
        raise ValueError(f"final_window = {final_window!r} is not allowed: it must be an integer >= 1")
    if not (math.isfinite(chance) and math.isfinite(min_rise)):
        raise ValueError(f"chance = {chance!r} and min_rise = {min_rise!r} must be finite")
    if final is not None and not math.isfinite(final):
        raise ValueError(f"final = {final!r} is not allowed: it must be finite, or None to measure it")
    return t, v


def half_rise(
    t,
    values,
    chance: float,
    *,
    smooth: int = 3,
    final_window: int = 3,
    min_rise: float = MIN_RISE,
    final: float | None = None,
) -> Crossing:
    """The transition of a rising curve by the rule of the module docstring.

    Args:
        t: (E,) strictly increasing times (training steps, or flow time).
        values: (E,) the curve (e.g. accuracy, in the units of ``chance`` and ``min_rise``).
        chance: the curve's chance level (1 / L for accuracy over L labels).
        smooth: odd moving-average width (3 for the toys' noisy evaluations, 1 for a noise-free curve).
        final_window: how many last raw values set where the curve ends.
        min_rise: the smallest final rise above chance that counts.
        final: where the curve ends, when known in closed form (None: the mean of the last ``final_window`` values).

    Returns:
        Crossing(time, uncertainty) in the units of ``t``; Crossing(None, None) when there is no transition.
    """
    t, v = _check(t, values, smooth, final_window, chance, min_rise, final)
    known = math.nan if final is None else float(final)
    time, unc = crossing(t, v, t.size, float(chance), float(min_rise), int(smooth), int(final_window), known)
    if math.isnan(time):
        return Crossing(None, None)
    return Crossing(float(time), float(unc))


def smoothed_curve(values, smooth: int = 3) -> np.ndarray:
    """The rule's centred moving average (odd ``smooth``; the window shrinks at the ends), shape of ``values``."""
    v = np.asarray(values, dtype=np.float64)
    if isinstance(smooth, bool) or not isinstance(smooth, int | np.integer) or smooth < 1 or smooth % 2 == 0:
        raise ValueError(f"smooth = {smooth!r} is not allowed: it must be an odd integer >= 1")
    c = np.concatenate([[0.0], np.cumsum(v)])
    n, half = v.size, smooth // 2
    lo = np.maximum(np.arange(n) - half, 0)
    hi = np.minimum(np.arange(n) + half + 1, n)
    return (c[hi] - c[lo]) / (hi - lo)


def curve_phase_flags(values, threshold: float, *, smooth: int = 3, final_window: int = 3) -> tuple[bool, bool]:
    """(formed, faded) of a curve against a phase threshold: formed when the smoothed curve reaches ``threshold``,
    faded when it formed but the mean of the last ``final_window`` raw values ends below it. An empty curve is
    (False, False)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return False, False
    formed = bool(np.nanmax(smoothed_curve(v, smooth)) >= threshold)
    final = float(np.mean(v[-min(final_window, v.size) :]))
    return formed, formed and final < threshold
