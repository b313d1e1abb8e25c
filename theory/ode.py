"""An adaptive Bogacki-Shampine 3(2) integrator: the one ODE integrator of zipfhead (the reduced models v1, v2 and
Markov, and the published anchors).

Each model supplies three Numba functions of a flat state ``y`` (P,), a case table ``data`` (R, W) and a parameter
vector ``prm`` (Q,):

* ``drift(y, data, prm, out)`` writes dy/dt into ``out[:P]`` (``out`` has ``scratch`` >= P entries for the
  drift's own use);
* ``track(y, data, prm)`` returns the curve whose transition the one rule of :mod:`theory.transition` locates (on
  every accepted step, unsmoothed: the curve is noise-free), with chance ``chance``: a reduced model's in-context
  proxy, or an anchor's order parameter (whose end, 1, is known: ``final``);
* ``probe(y, data, prm, row)`` writes what is recorded at an output time into ``row`` (K,).

:func:`integrate_cells` runs many cells of one model at once (``prange``), each padded to the same shapes. The
model is named by an integer (:data:`MODELS`) and dispatched inside the compiled code: Numba cannot cache a
function that takes other compiled functions as arguments (its cache index would pickle argument types holding
the compiling process's dispatchers), and an uncached integrator costs every process 10-20 s of compilation.
Dense output at the requested times is cubic Hermite interpolation between accepted steps.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba as nb
import numpy as np

import zipfhead.theory._anchors_flow as _an  # the models' flows, read by Numba when it compiles
import zipfhead.theory._reduced_flow as _v1
import zipfhead.theory._reduced_markov_flow as _mk
import zipfhead.theory._reduced_v2_flow as _v2
from zipfhead.theory.transition import MIN_RISE, crossing

__all__ = ["MODELS", "Integration", "integrate_cells"]

#: the models this integrator runs, by the integer its kernels dispatch on: the reduced models of the
#: induction head (:mod:`theory.reduced`, :mod:`theory.reduced_v2`, :mod:`theory.reduced_markov`) and the
#: published anchors (:mod:`theory.anchors`)
MODELS = {"v1": 1, "v2": 2, "markov": 3, "singh": 4, "zucchet": 5}


@nb.njit(cache=True)
def _drift(model, y, data, prm, out):
    if model == 1:
        _v1.drift(y, data, prm, out)
    elif model == 2:
        _v2.drift(y, data, prm, out)
    elif model == 3:
        _mk.drift(y, data, prm, out)
    elif model == 4:
        _an.singh_drift(y, data, prm, out)
    else:
        _an.zucchet_drift(y, data, prm, out)


@nb.njit(cache=True)
def _track(model, y, data, prm):
    if model == 1:
        return _v1.track(y, data, prm)
    if model == 2:
        return _v2.track(y, data, prm)
    if model == 3:
        return _mk.track(y, data, prm)
    if model == 4:
        return _an.singh_track(y, data, prm)
    return _an.zucchet_track(y, data, prm)


@nb.njit(cache=True)
def _probe(model, y, data, prm, row):
    if model == 1:
        _v1.probe(y, data, prm, row)
    elif model == 2:
        _v2.probe(y, data, prm, row)
    elif model == 3:
        _mk.probe(y, data, prm, row)
    # the anchors record nothing beyond their state


@nb.njit(cache=True)
def _append(track_t, track_v, count, t, v):
    """Append (t, v) to the tracked curve, doubling its buffers when full; returns them and the new count."""
    if count == track_t.shape[0]:
        grown_t = np.empty(2 * count)
        grown_v = np.empty(2 * count)
        grown_t[:count] = track_t
        grown_v[:count] = track_v
        track_t, track_v = grown_t, grown_v
    track_t[count] = t
    track_v[count] = v
    return track_t, track_v, count + 1


@nb.njit(cache=True)
def _integrate_one(model, y, data, prm, rule, t_out, tol, max_steps, scratch, rec, ys):
    """One cell, ``y`` (P,) integrated in place to where it stopped; ``rule`` = (chance, min_rise, final, stop)
    and ``tol`` = (rtol, atol). Returns (attempted steps, time reached, transition time or NaN, whether it reached
    its last output or its crossing). Outputs past the stop are NaN.

    One function on purpose (about 70 lines): the step, its error control, the dense output and the tracked curve
    share the loop's local state (y, the four stages, h, t, the next output index); split into compiled helpers
    they would pass a dozen arrays each step."""
    chance, min_rise, final, stop = rule[0], rule[1], rule[2], rule[3] > 0.0
    rtol, atol = tol[0], tol[1]
    level = chance + 0.5 * (final - chance)  # where a stopping cell stops (final is known when stop is set)
    P = y.shape[0]
    track_t, track_v, count = _append(np.empty(1024), np.empty(1024), 0, 0.0, _track(model, y, data, prm))
    k1 = np.empty(scratch)
    k2 = np.empty(scratch)
    k3 = np.empty(scratch)
    k4 = np.empty(scratch)
    tmp = np.empty(P)
    y_new = np.empty(P)
    _drift(model, y, data, prm, k1)
    t = 0.0
    j = 0
    while j < t_out.shape[0] and t_out[j] <= 0.0:
        _probe(model, y, data, prm, rec[j])
        ys[j, :] = y
        j += 1
    h = max(t_out[-1] * 1e-6, 1e-9)
    steps = 0
    stopped = failed = False
    while j < t_out.shape[0] and steps < max_steps:
        h = min(h, t_out[-1] - t)
        for p in range(P):
            tmp[p] = y[p] + 0.5 * h * k1[p]
        _drift(model, tmp, data, prm, k2)
        for p in range(P):
            tmp[p] = y[p] + 0.75 * h * k2[p]
        _drift(model, tmp, data, prm, k3)
        for p in range(P):
            y_new[p] = y[p] + h * (2.0 / 9.0 * k1[p] + 1.0 / 3.0 * k2[p] + 4.0 / 9.0 * k3[p])
        _drift(model, y_new, data, prm, k4)
        err = 0.0
        for p in range(P):
            e = h * (-5.0 / 72.0 * k1[p] + 1.0 / 12.0 * k2[p] + 1.0 / 9.0 * k3[p] - 0.125 * k4[p])
            ratio = abs(e) / (atol + rtol * max(abs(y[p]), abs(y_new[p])))
            err = max(err, ratio) if math.isfinite(ratio) else math.inf  # a non-finite stage rejects the step
        steps += 1
        if not math.isfinite(err) and h <= 1e-12:
            failed = True  # not finite even at the smallest step: the flow has left the finite range
            break
        if err <= 1.0 or h <= 1e-12:
            t_new = t + h
            while j < t_out.shape[0] and t_out[j] <= t_new:
                u = (t_out[j] - t) / h
                h00 = 2 * u**3 - 3 * u**2 + 1
                h10 = u**3 - 2 * u**2 + u
                h01 = -2 * u**3 + 3 * u**2
                h11 = u**3 - u**2
                for p in range(P):
                    tmp[p] = h00 * y[p] + h10 * h * k1[p] + h01 * y_new[p] + h11 * h * k4[p]
                _probe(model, tmp, data, prm, rec[j])
                ys[j, :] = tmp
                j += 1
            t = t_new
            for p in range(P):
                y[p] = y_new[p]
                k1[p] = k4[p]
            v = _track(model, y, data, prm)
            track_t, track_v, count = _append(track_t, track_v, count, t, v)
            if stop and v >= level:
                stopped = True
                break
        h = h * min(5.0, max(0.2, 0.9 * (1.0 / max(err, 1e-10)) ** (1.0 / 3.0)))
    done = (j == t_out.shape[0] or stopped) and not failed
    for jj in range(j, t_out.shape[0]):
        rec[jj, :] = math.nan
        ys[jj, :] = math.nan
    return steps, t, crossing(track_t, track_v, count, chance, min_rise, 1, 1, final)[0], done


@nb.njit(cache=True, parallel=True)
def _integrate_many(model, y, data, prm, rules, t_out, tol, max_steps, scratch, rec, ys):
    n = y.shape[0]
    steps = np.zeros(n, dtype=np.int64)
    time = np.full(n, np.nan)
    tstar = np.full(n, np.nan)
    done = np.zeros(n, dtype=np.bool_)
    for i in nb.prange(n):
        steps[i], time[i], tstar[i], done[i] = _integrate_one(
            model, y[i], data[i], prm[i], rules[i], t_out[i], tol, max_steps, scratch, rec[i], ys[i]
        )
    return steps, time, tstar, done


class Integration(NamedTuple):
    """What :func:`integrate_cells` returns, for n cells, E output times, K recorded values, P state variables.

    Attributes:
        rec: (n, E, K) the probe's row at each output time (NaN past where the cell stopped).
        ys: (n, E, P) the state at each output time (NaN past where it stopped).
        transition: (n,) flow time of the tracked curve's half-rise transition (:mod:`theory.transition`), NaN
            where there is none.
        time: (n,) flow time where each cell stopped: the last output time, its crossing (``stop_at_crossing``),
            or where its step budget ran out.
        state: (n, P) the state there.
        steps: (n,) attempted steps.
        ok: (n,) False where the step budget ran out before the last output (or the crossing), or the state
            stopped being finite (a step whose error is not finite even at the smallest step size ends the cell).
    """

    rec: np.ndarray
    ys: np.ndarray
    transition: np.ndarray
    time: np.ndarray
    state: np.ndarray
    steps: np.ndarray
    ok: np.ndarray


def integrate_cells(
    model: str,
    y0: np.ndarray,
    data: np.ndarray,
    prm: np.ndarray,
    chance: np.ndarray,
    t_out: np.ndarray,
    n_record: int,
    *,
    final: np.ndarray | None = None,
    min_rise: float = MIN_RISE,
    stop_at_crossing: bool = False,
    scratch: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    max_steps: int = 200_000,
) -> Integration:
    """Integrate n cells of one model.

    Args:
        model: one of :data:`MODELS`.
        y0: (n, P) initial states; data: (n, R, W) case tables; prm: (n, Q) parameters; chance: (n,) the chance
            level of each cell's tracked curve; t_out: (n, E) output times (each strictly increasing, >= 0).
        n_record: K, the length of the probe's row.
        final: (n,) where each tracked curve ends when that is known in closed form (the anchors' order
            parameters: 1); None measures it from the curve (the rule's ``final``).
        min_rise: the smallest rise of the tracked curve above ``chance`` that counts as a transition.
        stop_at_crossing: stop each cell on the first accepted step at or past its transition level
            chance + (final - chance) / 2 (needs ``final``); its later outputs are NaN. The level does not look at
            ``min_rise``: a cell that rises less stops there too, with no transition.
        scratch: the drift's ``out`` length (default P).
        rtol, atol: per-variable error targets (the largest ratio over the variables is controlled); max_steps:
            per-cell cap on attempted steps.

    Returns:
        :class:`Integration`.
    """
    if model not in MODELS:
        raise ValueError(f"model = {model!r} is not allowed: one of {', '.join(MODELS)}")
    if stop_at_crossing and final is None:
        raise ValueError("stop_at_crossing = True is not allowed without final: the level is unknown until the end")
    n, P = y0.shape
    E = t_out.shape[1]
    rec = np.full((n, E, n_record), np.nan)
    ys = np.full((n, E, P), np.nan)
    rules = np.empty((n, 4))
    rules[:, 0] = chance
    rules[:, 1] = min_rise
    rules[:, 2] = np.nan if final is None else final
    rules[:, 3] = float(stop_at_crossing)
    state = np.array(y0, dtype=np.float64, order="C", copy=True)
    steps, time, tstar, done = _integrate_many(
        MODELS[model],
        state,
        np.ascontiguousarray(data, dtype=np.float64),
        np.ascontiguousarray(prm, dtype=np.float64),
        rules,
        np.ascontiguousarray(t_out, dtype=np.float64),
        np.array([rtol, atol], dtype=np.float64),
        int(max_steps),
        int(P if scratch is None else scratch),
        rec,
        ys,
    )
    ok = done & np.all(np.isfinite(state), axis=1)
    return Integration(rec, ys, tstar, time, state, steps, ok)
