"""Closed forms of the reduced model (:mod:`theory.reduced`): plateau, escape, memorisation, phase.

Every formula is derived in ``proofs_notebooks/02_induction_reduced_model.py`` (sympy, asserted) and compared with
numerical integration of the reduced model in ``tests/unit/test_closed_form.py``. Symbols as in
:mod:`theory.distributions`; flow time t as in :mod:`theory.reduced`; n = N / B classes per bursty context,
M = L - n labels absent from it, s = 1 / (1 + eps^2), p_b = p_C + (1 - p_C) p_B the bursty mass.

1. **Copy plateau** (b = 0, nothing memorised). The output strength obeys
   du/dt = p_b (B/N)^2 M / (n e^u + M),  u = c B / N,
   whose solution is n e^u + M u = n + A t, A = p_b (B/N)^2 M, i.e. u(t) = y - W((n/M) e^y), y = (n + A t) / M,
   W the Lambert function. The loss tends to ln(N / B) and the in-context accuracy to B / N: the one-layer
   model's best (it cannot build the previous-token step, so this is all it can reach without memorising).
2. **Escape** (linearising (a, b) about 0; gradient flow ``gd``). The loss depends on (a, b) through x = s a b
   only, and on bursty sequences dl/dx at x = 0 is exactly -c B (N - B) / N^2 (independent of M and of the softmax). So
   d(a, b)/dt = lambda (b, a) with lambda(t) = s c(t) B (N - B) / N^2 p_b U(t): a = b = theta0 e^Lambda,
   Lambda(t) = int_0^t lambda. The transition (half-way accuracy) comes when x reaches x_half, i.e.
   Lambda(t*) = (1/2) ln(x_half / (s theta0^2)). Validity: within 25% of the integration for p_B = 1, nothing
   memorisable, L <= 32, init <= 1e-2 (at L = 64 the output strength, not the match, sets the transition and the
   formula runs up to 30% early). With U = 1 the integral is explicit:
   int_0^t c = (N/B) (M/A) [y^2/2 - omega - omega^2/2] between the limits, omega = W((n/M) e^y).
2b. **Escape under Adam** (``adam``: the normalised flow of :class:`theory.reduced.ReducedParams`). The output
   strength is in the sign regime, c ~ t; (a, b) are noise-dominated, so they grow at rate lambda / sigma,
   sigma = 1 / sqrt(batch): ln(b / theta0) = drive U sqrt(batch) t^2 / 2, until b reaches sigma / (drive t); they
   then grow at unit speed to sqrt(x_half / s). t* = max(t1 + sqrt(x_half / s) - b(t1), c_half), c_half =
   ln(h / (1 - h) (L - 1)) the output strength a perfect match needs for the half-way accuracy. Accuracy: this
   undercounts the time c spends below the sign regime; integration gives 1.0-2.5x longer (tests: factor 2.5).
3. **Memorisation** (the in-weights channel alone). Class k's logit grows at rho s p_k (1 - P_k) and the
   interference cost caps it: only classes with p_k >= p_cap = ln(L) / (rho-free capacity kappa D L s) can be
   memorised. The unmemorised mass is approximated by U(t) = sum_{p_k >= p_cap} p_k exp(-rho s p_k t / ln L)
   + sum_{p_k < p_cap} p_k (the foundation's U(t; c) with c = rho s / ln L, restricted to memorisable classes),
   and the escape uses its time average.
4. **Phase** at a horizon t_h (:func:`phases_closed_form`): in-context if t* <= t_h and U(t*) >= 1/2 (the drive is
   still there when the escape completes); in-weights if the memorised mass 1 - U(t_h) >= 1/2; both / neither
   accordingly. Transience (weight decay beating a vanishing drive) is left to the integration.

The large-K limits: U -> 1 and t* -> t*_inf (the pure induction escape) when alpha <= 1 or K >> capacity; for
alpha > 1 the unmemorisable mass tends to the Zipf tail beyond k_cap = (p_cap H_alpha)^(-1/alpha).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from zipfhead.theory.distributions import ClassificationTask, TokenStreamTask, Zipf
from zipfhead.theory.phases import phase_from
from zipfhead.theory.reduced import ReducedParams

__all__ = [
    "copy_plateau",
    "escape_target",
    "lambert_w",
    "match_half",
    "memorisable_cutoff",
    "output_integral",
    "output_strength",
    "phases_closed_form",
    "transition_time",
    "transition_times",
    "unmemorised_mass",
]


def match_half(task: ClassificationTask) -> float:
    """x_half = ln(h / (1 - h) (N - B) / B), h = (1 + 1/L) / 2: the match logit at which the novel-class accuracy
    is half-way from 1/L to 1 once copying is saturated (accuracy B e^x / (B e^x + N - B))."""
    h = 0.5 * (1.0 + 1.0 / task.L)
    return math.log(h / (1.0 - h) * (task.N - task.B) / task.B) if task.N > task.B else 0.0


def lambert_w(z: np.ndarray | float) -> np.ndarray:
    """Principal branch W(z) for z >= 0 (Halley's iteration, to float64 precision). Shape of ``z``.

    For large z the start is ln z - ln ln z; the loop runs 12 Halley steps, within 2.3e-16 relative of mpmath on
    2000 points log-spaced over [1e-300, 1e300] (and tests/unit/test_closed_form.py).
    """
    z = np.asarray(z, dtype=np.float64)
    if np.any(z < 0) or not np.all(np.isfinite(z)):
        raise ValueError("lambert_w needs finite z >= 0")
    lz = np.log1p(z)
    big = np.maximum(z, 3.0)
    w = np.where(z < 3.0, lz * (1 - np.log1p(lz) / (2 + lz)), np.log(big) - np.log(np.log1p(big)))
    for _ in range(12):
        ew = np.exp(w)
        f = w * ew - z
        w1 = w + 1.0
        w = w - f / (ew * w1 - (w + 2.0) * f / (2.0 * w1))
    return w


def _geometry(task: ClassificationTask | TokenStreamTask) -> tuple[float, float, float, float, float]:
    """(n, M, B/N drive factor, p_b, s) of the bursty copy problem."""
    if isinstance(task, ClassificationTask):
        n = task.N / task.B
        M = task.L - n
        drive = task.B * (task.N - task.B) / task.N**2
        p_b = task.p_C + (1 - task.p_C) * task.p_B
        return n, M, task.B / task.N, p_b, drive / (1 + task.eps**2)
    raise ValueError(f"task = {task!r}: closed forms are given for ClassificationTask only")


def copy_plateau(task: ClassificationTask) -> dict[str, float]:
    """The copy-a-context-label level: loss ln(N/B) (nats) and novel-class accuracy B/N (the one-layer best)."""
    n, *_ = _geometry(task)
    return {"loss": math.log(n), "icl_accuracy": 1.0 / n}


def output_strength(task: ClassificationTask, t: np.ndarray | float) -> np.ndarray:
    """c(t) on the copy plateau (b = 0, no memorisation), closed form through Lambert W. Shape of ``t``."""
    n, M, ratio, p_b, _ = _geometry(task)
    if M <= 0:
        return np.zeros_like(np.asarray(t, dtype=np.float64))
    A = p_b * ratio**2 * M
    y = (n + A * np.asarray(t, dtype=np.float64)) / M
    return (y - _w_exp_array(np.full_like(y, math.log(n / M)), y)) / ratio


def output_integral(task: ClassificationTask, t: np.ndarray | float) -> np.ndarray:
    """int_0^t c(tau) dtau on the copy plateau, in closed form (see the module docstring). Shape of ``t``."""
    n, M, ratio, p_b, _ = _geometry(task)
    t = np.asarray(t, dtype=np.float64)
    if M <= 0 or p_b == 0:
        return np.zeros_like(t)
    A = p_b * ratio**2 * M
    log_k = math.log(n / M)

    def F(y):
        om = _w_exp_array(np.full_like(y, log_k), y)
        return y**2 / 2 - om - om**2 / 2

    y0 = np.atleast_1d(np.full_like(t, n / M))
    y1 = np.atleast_1d((n + A * t) / M)
    return ((M / A) * (F(y1) - F(y0)) / ratio).reshape(t.shape)


def memorisable_cutoff(task: ClassificationTask, params: ReducedParams) -> float:
    """p_cap = ln(L) / (kappa D L s): classes rarer than this cannot be memorised (probability units)."""
    s = 1.0 / (1.0 + task.eps**2)
    return math.log(task.L) / (params.kappa * params.D * task.L * s)


def _bins(task: ClassificationTask, max_bins: int = 32) -> tuple[np.ndarray, np.ndarray]:
    return Zipf(task.K, task.alpha, task.q).rank_bins(max_bins)


def _memorisation(task: ClassificationTask, params: ReducedParams, max_bins: int = 32):
    """(per-class probability (G,), class counts (G,), memorisable (G,) bool, rate (G,)) over geometric rank bins.

    Cached on the fields it reads: the task and params are rebuilt from those alone (N, B, p_B, the initial
    state, ... at their defaults), so that cells differing only elsewhere share one entry."""
    key_task = ClassificationTask(K=task.K, N=1, L=task.L, B=1, alpha=task.alpha, q=task.q, eps=task.eps)
    key_params = ReducedParams(
        D=params.D, kappa=params.kappa, iw_speed=params.iw_speed, optimizer=params.optimizer, batch=params.batch
    )
    return _memorisation_cached(key_task, key_params, max_bins)


@lru_cache(maxsize=4096)
def _memorisation_cached(task: ClassificationTask, params: ReducedParams, max_bins: int):
    sizes, masses = _bins(task, max_bins)
    p = masses / sizes
    s = 1.0 / (1.0 + task.eps**2)
    if params.optimizer == "adam":
        # Adam moves class k's logit at rho g / sqrt(g^2 + p_k / batch), g = s p_k (1 - P): min(1, s sqrt(p_k batch))
        per_class = np.minimum(1.0, s * np.sqrt(p * params.batch)) / np.maximum(p, 1e-300)
        rate = params.iw_speed * per_class / math.log(task.L)
    else:
        rate = np.full_like(p, params.iw_speed * s / math.log(task.L))
    return p, sizes, p >= memorisable_cutoff(task, params), rate


def unmemorised_mass(task: ClassificationTask, params: ReducedParams, t: np.ndarray | float) -> np.ndarray:
    """U(t): probability mass of classes not yet memorised (item 3 of the module docstring). Shape of ``t``."""
    p, sizes, ok, rate = _memorisation(task, params)
    t = np.asarray(t, dtype=np.float64)
    decay = np.where(ok, np.exp(-np.multiply.outer(t, rate * p)), 1.0)
    return np.sum(sizes * p * decay, axis=-1)


class _Cells:
    """Per-cell arrays of the closed forms, so that a whole grid is evaluated at once (shape (n,) each)."""

    def __init__(self, tasks: list[ClassificationTask], params: list[ReducedParams], max_bins: int = 32):
        geo = np.array([_geometry(t) for t in tasks])
        self.n, self.M, self.ratio, self.p_b, self.drive = geo.T
        self.A = self.p_b * self.ratio**2 * self.M
        self.log_k = np.log(self.n / np.maximum(self.M, 1e-300))
        mem = [_memorisation(t, p, max_bins) for t, p in zip(tasks, params, strict=True)]
        G = max(m[0].shape[0] for m in mem)
        self.p = np.zeros((len(tasks), G))
        self.mass = np.zeros((len(tasks), G))
        self.ok = np.zeros((len(tasks), G), dtype=bool)
        self.rate = np.zeros((len(tasks), G))
        for i, (p, sizes, ok, rate) in enumerate(mem):
            self.p[i, : p.shape[0]] = p
            self.mass[i, : p.shape[0]] = p * sizes
            self.ok[i, : p.shape[0]] = ok
            self.rate[i, : p.shape[0]] = rate
        self.adam = np.array([p.optimizer == "adam" for p in params])
        self.sigma = np.array([1.0 / math.sqrt(p.batch) for p in params])
        self.init = np.array([p.init for p in params])
        self.half_side = np.array([math.sqrt(match_half(t) * (1 + t.eps**2)) for t in tasks])
        # even a perfect match needs c >= ln(h / (1 - h) (L - 1)) for the half-way accuracy (h = (1 + 1/L) / 2);
        # under Adam c grows at unit speed, so this is also a lower bound on t*
        self.c_half = np.array([math.log((1 + 1 / t.L) / (1 - 1 / t.L) * (t.L - 1)) for t in tasks])
        self.target = np.array([escape_target(t, p) for t, p in zip(tasks, params, strict=True)])

    def output_integral(self, t: np.ndarray) -> np.ndarray:
        good = (self.M > 0) & (self.p_b > 0)
        A = np.where(good, self.A, 1.0)
        M = np.where(good, self.M, 1.0)

        def F(y):
            om = _w_exp_array(self.log_k, y)
            return y**2 / 2 - om - om**2 / 2

        y0 = self.n / M
        y1 = (self.n + A * t) / M
        return np.where(good, (M / A) * (F(y1) - F(y0)) / self.ratio, 0.0)

    def mean_unmemorised(self, t: np.ndarray) -> np.ndarray:
        t = np.maximum(t, 1e-300)[:, None]
        x = self.rate * self.p * t
        frac = np.where(self.ok, -np.expm1(-x) / np.maximum(x, 1e-300), 1.0)
        frac = np.where(self.ok & (x < 1e-12), 1.0, frac)
        return np.sum(self.mass * frac, axis=1)

    def exponent(self, t: np.ndarray) -> np.ndarray:
        return self.drive * self.p_b * self.output_integral(t) * self.mean_unmemorised(t)


def _w_exp_array(log_k: np.ndarray, y: np.ndarray) -> np.ndarray:
    """W(k e^y) elementwise for arrays of log k and y (no overflow)."""
    arg = np.asarray(log_k + y, dtype=np.float64)
    out = np.empty_like(arg)
    small = arg < 600
    out[small] = lambert_w(np.exp(arg[small]))
    big = arg[~small]
    if big.size:
        w = big - np.log(big)
        for _ in range(8):
            w = w - (w + np.log(w) - big) / (1 + 1 / w)
        out[~small] = w
    return out


def escape_target(task: ClassificationTask, params: ReducedParams) -> float:
    """Lambda* = (1/2) ln(x_half / (s theta0^2)): the escape exponent at which the transition is reached."""
    s = 1.0 / (1.0 + task.eps**2)
    if params.init == 0:
        return math.inf
    return 0.5 * math.log(max(match_half(task), 1e-12) / (s * params.init**2))


def transition_times(
    tasks: list[ClassificationTask], params: list[ReducedParams], horizons: np.ndarray | float
) -> np.ndarray:
    """Closed-form t* of many cells at once: the root of Lambda(t) = Lambda* on [0, horizon] (vectorised
    bisection, 60 halvings: relative precision 1e-18 of the horizon); NaN where Lambda(horizon) < Lambda*.

    Args:
        tasks, params: one per cell (n,).
        horizons: (n,) or scalar flow-time horizons.

    Returns:
        (n,) flow times (NaN: no transition before the horizon).
    """
    return _transition_times(_Cells(tasks, params), horizons)


def _transition_times(cells: _Cells, horizons: np.ndarray | float) -> np.ndarray:
    horizon = np.broadcast_to(np.asarray(horizons, dtype=np.float64), cells.n.shape).copy()
    out = np.full_like(horizon, np.nan)
    if not cells.adam.all():
        hi = horizon.copy()
        reached = cells.exponent(hi) >= cells.target
        lo = np.zeros_like(hi)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            above = cells.exponent(mid) >= cells.target
            hi = np.where(above, mid, hi)
            lo = np.where(above, lo, mid)
        out = np.where(reached, 0.5 * (lo + hi), np.nan)
    if cells.adam.any():
        out = np.where(cells.adam, _adam_times(cells, horizon), out)
    return out


def _adam_times(cells: _Cells, horizon: np.ndarray) -> np.ndarray:
    """Adam's escape in two legs (module docstring, item 2b): c grows at unit speed (sign regime), so the noise-
    dominated strengths grow as exp(drive U sqrt(batch) t^2 / 2) until b reaches sigma / (drive t); then they grow at
    unit speed to sqrt(x_half / s). The first leg's end solves a fixed point (iterated)."""
    rate = cells.drive * cells.p_b
    t1 = np.ones_like(horizon)
    with np.errstate(divide="ignore", invalid="ignore"):
        for _ in range(25):  # a contraction: 25 iterations reach ~1e-8 relative
            eff = rate * cells.mean_unmemorised(t1)
            b_sigma = cells.sigma / np.maximum(eff * t1, 1e-300)
            leg = np.log(np.maximum(b_sigma / np.where(cells.init > 0, cells.init, np.nan), 1.0))
            t1 = np.sqrt(2.0 * leg * cells.sigma / np.maximum(eff, 1e-300))
        eff = rate * cells.mean_unmemorised(t1)
        b_sigma = cells.sigma / np.maximum(eff * t1, 1e-300)
        total = np.maximum(t1 + np.maximum(cells.half_side - b_sigma, 0.0), cells.c_half)
    ok = np.isfinite(total) & (total <= horizon) & (eff > 0)
    return np.where(ok, total, np.nan)


def transition_time(task: ClassificationTask, params: ReducedParams, horizon: float) -> float | None:
    """Closed-form t* of one cell (see :func:`transition_times`); None if no transition before ``horizon``."""
    t = float(transition_times([task], [params], horizon)[0])
    return None if math.isnan(t) else t


def phases_closed_form(
    tasks: list[ClassificationTask], params: list[ReducedParams], horizons: np.ndarray | float
) -> tuple[np.ndarray, list[str]]:
    """Closed-form transition times and phases of many cells (item 4 of the module docstring).

    The phase boundary as an equation in the statistics: in-context learning forms iff t* <= horizon and the
    unmemorised mass at t* is still U(t*) >= 1/2 (memorisation has not removed the drive first); in-weights
    learning forms iff 1 - U(horizon) >= 1/2. Transience needs the integration (it is not in closed form).

    Returns:
        ((n,) transition times, NaN for none; (n,) phase names).
    """
    cells = _Cells(tasks, params)
    times = _transition_times(cells, horizons)
    horizon = np.broadcast_to(np.asarray(horizons, dtype=np.float64), cells.n.shape)
    u_star = _unmemorised_cells(cells, np.where(np.isfinite(times), times, horizon))
    u_end = _unmemorised_cells(cells, horizon)
    icl = np.isfinite(times) & (u_star >= 0.5)
    iwl = (1.0 - u_end) >= 0.5
    times = np.where(icl, times, np.nan)
    return times, [phase_from(bool(i), bool(w), False) for i, w in zip(icl, iwl, strict=True)]


def _unmemorised_cells(cells: _Cells, t: np.ndarray) -> np.ndarray:
    x = cells.rate * cells.p * np.asarray(t, dtype=np.float64)[:, None]
    return np.sum(cells.mass * np.where(cells.ok, np.exp(-x), 1.0), axis=1)
