"""An adaptive Bogacki-Shampine 3(2) integrator: the one integrator of the reduced models (v1, v2, Markov).

Each model supplies three Numba functions of a flat state ``y`` (P,), a case table ``data`` (R, W) and a parameter
vector ``prm`` (Q,):

* ``drift(y, data, prm, out)`` writes dy/dt into ``out[:P]`` (``out`` has ``scratch`` >= P entries for the
  drift's own use);
* ``track(y, data, prm)`` returns the in-context curve whose transition the one rule of :mod:`theory.transition`
  locates (on every accepted step, unsmoothed: the curve is noise-free), with chance ``chance``;
* ``probe(y, data, prm, row)`` writes what is recorded at an output time into ``row`` (K,).

:func:`integrate_cells` runs many cells of one model at once (``prange``), each padded to the same shapes. The
model is named by an integer (:data:`MODELS`) and dispatched inside the compiled code: Numba cannot cache a
function that takes other compiled functions as arguments (its cache index would pickle argument types holding
the compiling process's dispatchers), and an uncached integrator costs every process 10-20 s of compilation.
Dense output at the requested times is cubic Hermite interpolation between accepted steps.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

import zipfhead.theory.reduced as _v1  # the models' functions are read by Numba when it compiles, not at import
import zipfhead.theory.reduced_markov as _mk
import zipfhead.theory.reduced_v2 as _v2
from zipfhead.theory.transition import MIN_RISE, crossing

__all__ = ["MODELS", "integrate_cells"]

#: the reduced models this integrator runs, by the integer its kernels dispatch on
MODELS = {"v1": 1, "v2": 2, "markov": 3}


@nb.njit(cache=True)
def _drift(model, y, data, prm, out):
    if model == 1:
        _v1.drift(y, data, prm, out)
    elif model == 2:
        _v2.drift(y, data, prm, out)
    else:
        _mk.drift(y, data, prm, out)


@nb.njit(cache=True)
def _track(model, y, data, prm):
    if model == 1:
        return _v1.track(y, data, prm)
    if model == 2:
        return _v2.track(y, data, prm)
    return _mk.track(y, data, prm)


@nb.njit(cache=True)
def _probe(model, y, data, prm, row):
    if model == 1:
        _v1.probe(y, data, prm, row)
    elif model == 2:
        _v2.probe(y, data, prm, row)
    else:
        _mk.probe(y, data, prm, row)


@nb.njit(cache=True)
def _integrate_one(model, y0, data, prm, chance, t_out, rtol, atol, max_steps, scratch, rec, ys):
    """One cell; returns (attempted steps, transition time or NaN). Outputs past ``max_steps`` are NaN.

    One function on purpose (67 lines): the step, its error control, the dense output and the tracked curve share
    the loop's local state (y, the four stages, h, t, the next output index); split into compiled helpers they
    would pass a dozen arrays each step."""
    P = y0.shape[0]
    n_track = min(max_steps, 100_000) + 1
    track_t = np.empty(n_track)
    track_v = np.empty(n_track)
    track_t[0] = 0.0
    track_v[0] = _track(model, y0, data, prm)
    count = 1
    y = y0.copy()
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
            err = max(err, abs(e) / (atol + rtol * max(abs(y[p]), abs(y_new[p]))))
        steps += 1
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
            if count < n_track:
                track_t[count] = t
                track_v[count] = _track(model, y, data, prm)
                count += 1
        h = h * min(5.0, max(0.2, 0.9 * (1.0 / max(err, 1e-10)) ** (1.0 / 3.0)))
    for jj in range(j, t_out.shape[0]):
        rec[jj, :] = math.nan
        ys[jj, :] = math.nan
    return steps, crossing(track_t, track_v, count, chance, MIN_RISE, 1, 1)[0]


@nb.njit(cache=True, parallel=True)
def _integrate_many(model, y0, data, prm, chance, t_out, rtol, atol, max_steps, scratch, rec, ys):
    tstar = np.zeros(y0.shape[0])
    for i in nb.prange(y0.shape[0]):
        tstar[i] = _integrate_one(
            model, y0[i], data[i], prm[i], chance[i], t_out[i], rtol, atol, max_steps, scratch, rec[i], ys[i]
        )[1]
    return tstar


def integrate_cells(
    model: str,
    y0: np.ndarray,
    data: np.ndarray,
    prm: np.ndarray,
    chance: np.ndarray,
    t_out: np.ndarray,
    n_record: int,
    *,
    scratch: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    max_steps: int = 200_000,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integrate n cells of one model.

    Args:
        model: ``v1``, ``v2`` or ``markov`` (:data:`MODELS`).
        y0: (n, P) initial states; data: (n, R, W) case tables; prm: (n, Q) parameters; chance: (n,) the chance
            level of each cell's tracked curve; t_out: (n, E) output times (each strictly increasing, >= 0).
        n_record: K, the length of the probe's row.
        scratch: the drift's ``out`` length (default P).
        rtol, atol: per-variable error targets; max_steps: per-cell cap on attempted steps.

    Returns:
        (rec (n, E, K), ys (n, E, P), transition (n,) flow times, NaN where none).
    """
    if model not in MODELS:
        raise ValueError(f"model = {model!r} is not allowed: one of {', '.join(MODELS)}")
    n, P = y0.shape
    E = t_out.shape[1]
    rec = np.full((n, E, n_record), np.nan)
    ys = np.full((n, E, P), np.nan)
    tstar = _integrate_many(
        MODELS[model],
        np.ascontiguousarray(y0, dtype=np.float64),
        np.ascontiguousarray(data, dtype=np.float64),
        np.ascontiguousarray(prm, dtype=np.float64),
        np.ascontiguousarray(chance, dtype=np.float64),
        np.ascontiguousarray(t_out, dtype=np.float64),
        float(rtol),
        float(atol),
        int(max_steps),
        int(P if scratch is None else scratch),
        rec,
        ys,
    )
    return rec, ys, tstar
