"""Finite-batch noise in the reduced model: minibatch SGD on sampled data instead of the expected flow.

:mod:`theory.reduced` integrates the *expected* gradient flow ``d theta / dt = -grad E[l] - grad R - lambda theta``.
A trained toy sees a finite batch each step, so its transition time varies from seed to seed. This module simulates
that: each step draws ``batch`` sequences, each sequence's case ``i`` drawn with probability ``weight_i`` (one
categorical draw per sequence), replaces the case weights of the flow's right-hand side by the batch's empirical
frequencies ``count_i / batch`` and takes one Euler step of size ``lr``:

    theta <- theta + lr * rhs(theta; weights = counts / batch)

so flow time advances by ``lr`` per step, and the drift is an unbiased estimate of the flow's (the loss, the
interference curvature Q and the in-weights gradients are all linear in the case weights; the interference norm S
and the weight decay depend on the state only). The drift is the flow's own :func:`theory.reduced._rhs` evaluated on
the batch's count table: one source of truth for the per-case terms (the sympy-derived kernel ``case_terms``), the
interference cost, the in-weights preconditioner and the weight decay. As ``batch`` grows and ``lr`` shrinks the
runs approach the flow (law of large numbers, then Euler's convergence).

Overlap noise (``overlap_noise=True``, classification cases only). The flow uses the mean same-class overlap
``s = 1 / (1 + eps^2)``. In D dimensions the overlap of a given sequence fluctuates: with class mean mu and noises
eta ~ N(0, I/D), the query is ``x_q = (mu + eps eta_q) / sqrt(1 + eps^2)`` and the m same-class context items
``x_i = (mu + eps eta_i) / sqrt(1 + eps^2)``; their mean overlap is

    s_seq = s (|mu|^2 + eps mu.eta_q + eps mu.eta_bar + eps^2 eta_q.eta_bar),   eta_bar ~ N(0, I / (m D)).

For independent u, v ~ N(0, I/D): Var |u|^2 = 2 / D and Var u.v = 1 / D, and the four terms are uncorrelated (each
cross moment is odd in some eta), so E s_seq = s and

    Var s_seq = s^2 (2 + eps^2 + eps^2 (1 + eps^2) / m) / D      ( = 2 / D at eps = 0, (1 + s^2) / D at m = 1 ).

Each sequence then gets its own overlap ``s + sd_m z`` (z standard normal, one draw per sequence) in its case's
terms, computed by :func:`_batch_rhs` (a per-sequence mirror of ``_rhs``, checked against it in the tests). This is
the leading per-sequence fluctuation of the model's single match logit ``x = s a b``; the spread between the m
matching slots and the cross-class overlaps of the other n - m slots (variance 1 / D each) are left out. ``D`` is
``params.D``. With overlap noise the infinite-batch limit is E_s[flow], not the flow at E s (the loss is convex in
x), so the large-batch check is made without it. Token cases (exact token embeddings, s = 1) have no overlap
noise: leave it off there.

Randomness: run ``j`` of a call uses the counter-based stream ``theory._rng.stream(seed, j)`` (SplitMix64), so
its result depends only on (seed, j, the settings), not on the number of runs or of threads. Runs are vectorised
with ``prange`` (one run per seed).

The in-context proxy (probability of the correct label on the icl evaluation case, at the mean overlap s) and the
in-weights proxy are recorded every ``eval_every`` steps; the transition time of a run is the half-rise crossing
of the in-context proxy on those records (:mod:`theory.transition`'s rule: chance 1 / L, final value
the last record, min rise 0.2), NaN when there is none within the horizon.

Caveat: classes are grouped in the flow's Zipf rank bins (one class per bin when K <= max_bins). A sampled
sequence updates its bin's shared w by 1 / bin_size of its gradient, as the flow does, rather than one class of
the bin; this keeps the bin mean right but understates the in-weights noise per class when bins hold many classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np

from theory._reduced_kernel import case_terms
from theory._rng import categorical, inverse_cdf_table, normal, stream
from theory._validate import check_int, check_real, check_seed
from theory.reduced import Cases, ReducedParams, _evaluate, _rhs
from theory.transition import MIN_RISE, crossing

__all__ = ["SGDResult", "Spread", "overlap_sd", "simulate_sgd", "transition_spread"]

# fastmath without nnan / ninf: the runs test their state for divergence.
_FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}


# --------------------------------------------------------------------------------------------------- kernels
@nb.njit(cache=True, fastmath=_FAST)
def _batch_rhs(y, cases, idx, s_seq, bin_size, iw_rate, inv_cap, rho, wd, out):
    """:func:`theory.reduced._rhs` for a batch of sequences, each with its own overlap: sequence j is case
    ``idx[j]`` with overlap ``s_seq[j]`` and weight 1 / len(idx). out[:3 + G] gets the drift, out[3 + G:] is scratch.
    """
    G = bin_size.shape[0]
    a, b, c = y[0], y[1], y[2]
    ga = gb = gc = 0.0
    qa = qb = qc = 0.0
    Q = 0.0
    for g in range(G):
        out[3 + g] = 0.0
    qw = out[3 + G :]
    for g in range(G):
        qw[g] = 0.0
    weight = 1.0 / idx.shape[0]
    for j in range(idx.shape[0]):
        i = idx[j]
        g = int(cases[i, 6])
        w = y[3 + g] if g >= 0 else 0.0
        terms = case_terms(a, b, c, w, s_seq[j], cases[i, 1], cases[i, 2], cases[i, 3], cases[i, 4], cases[i, 5])
        ga += weight * terms[1]
        gb += weight * terms[2]
        gc += weight * terms[3]
        Q += weight * terms[5]
        qa += weight * terms[6]
        qb += weight * terms[7]
        qc += weight * terms[8]
        if g >= 0:
            out[3 + g] += weight * terms[4]
            qw[g] += weight * terms[9]
    S = 0.0
    for g in range(G):
        S += bin_size[g] * y[3 + g] ** 2 / iw_rate
    half = 0.5 * inv_cap * S
    out[0] = -(ga + half * qa) - wd[0] * a
    out[1] = -(gb + half * qb) - wd[0] * b
    out[2] = -(gc + half * qc) - wd[0] * c
    for g in range(G):
        wg = y[3 + g]
        if bin_size[g] > 0:
            per_class = (out[3 + g] + half * qw[g]) / bin_size[g]
            out[3 + g] = rho * (-iw_rate * per_class - inv_cap * Q * wg) - wd[1] * wg
        else:
            out[3 + g] = 0.0


@nb.njit(cache=True, fastmath=_FAST)
def _sgd_step(y, rng, cases, cdf, guide, s, s_sd, bin_size, iw_rate, inv_cap, rho, wd, lr, table, idx, s_seq, drift):
    """One minibatch step in place on ``y``; returns the advanced generator state.

    ``len(idx)`` is the batch. Without overlap noise (``s_sd`` is empty) the batch's counts replace the weights of
    ``table`` (a copy of ``cases``) and the flow's ``_rhs`` gives the drift; with it, each sequence draws its case
    and then one normal for its overlap, and :func:`_batch_rhs` gives the drift.
    """
    batch = idx.shape[0]
    P = y.shape[0]
    if s_sd.shape[0] == 0:
        for i in range(table.shape[0]):
            table[i, 0] = 0.0
        inv = 1.0 / batch
        for _ in range(batch):
            rng, k = categorical(rng, (cdf, guide))
            table[k, 0] += inv
        _rhs(y, table, bin_size, s, iw_rate, inv_cap, rho, wd, drift)
    else:
        for j in range(batch):
            rng, k = categorical(rng, (cdf, guide))
            rng, z = normal(rng)
            idx[j] = k
            s_seq[j] = s + s_sd[k] * z
        _batch_rhs(y, cases, idx, s_seq, bin_size, iw_rate, inv_cap, rho, wd, drift)
    for p in range(P):
        y[p] += lr * drift[p]
    return rng


@nb.njit(cache=True, fastmath=_FAST)
def _simulate_one(
    y0,
    rng,
    cases,
    cdf,
    guide,
    icl,
    iwl,
    s,
    s_sd,
    bin_size,
    iw_rate,
    inv_cap,
    rho,
    wd,
    lr,
    batch,
    steps,
    every,
    t_eval,
    icl_out,
    iwl_out,
    y_out,
):
    """One SGD run; fills its curves and final state, returns the transition time (NaN if none)."""
    P = y0.shape[0]
    G = P - 3
    y = y0.copy()
    table = cases.copy()
    idx = np.zeros(batch, dtype=np.int64)
    s_seq = np.zeros(batch)
    drift = np.empty(3 + 2 * G)
    icl_out[0] = _evaluate(y, icl, s)[0]
    iwl_out[0] = _evaluate(y, iwl, s)[0]
    e = 1
    finite = True
    for step in range(1, steps + 1):
        rng = _sgd_step(
            y, rng, cases, cdf, guide, s, s_sd, bin_size, iw_rate, inv_cap, rho, wd, lr, table, idx, s_seq, drift
        )
        if step % every == 0 or step == steps:
            for p in range(P):
                if not math.isfinite(y[p]):
                    finite = False
            if not finite:
                break
            icl_out[e] = _evaluate(y, icl, s)[0]
            iwl_out[e] = _evaluate(y, iwl, s)[0]
            e += 1
    for p in range(P):
        y_out[p] = y[p] if finite else math.nan
    if not finite:
        for q in range(e, icl_out.shape[0]):
            icl_out[q] = math.nan
            iwl_out[q] = math.nan
        return math.nan
    chance = 1.0 / (1.0 + icl[0, 4] + icl[0, 5])
    return crossing(t_eval, icl_out, e, chance, MIN_RISE, 1, 1)[0]


@nb.njit(cache=True, parallel=True)
def _simulate_many(
    y0,
    seed,
    cases,
    cdf,
    guide,
    icl,
    iwl,
    s,
    s_sd,
    bin_size,
    iw_rate,
    inv_cap,
    rho,
    wd,
    lr,
    batch,
    steps,
    every,
    t_eval,
    icl_out,
    iwl_out,
    y_out,
):
    n_runs = icl_out.shape[0]
    tstar = np.empty(n_runs)
    for j in nb.prange(n_runs):
        rng = stream(seed, np.uint64(j))
        tstar[j] = _simulate_one(
            y0,
            rng,
            cases,
            cdf,
            guide,
            icl,
            iwl,
            s,
            s_sd,
            bin_size,
            iw_rate,
            inv_cap,
            rho,
            wd,
            lr,
            batch,
            steps,
            every,
            t_eval,
            icl_out[j],
            iwl_out[j],
            y_out[j],
        )
    return tstar


# --------------------------------------------------------------------------------------------------- packing
def overlap_sd(s: float, m: np.ndarray | float, D: int) -> np.ndarray:
    """Standard deviation of a sequence's mean same-class overlap: sqrt(s^2 (2 + e2 + e2 (1 + e2) / m) / D), with
    e2 = eps^2 = 1 / s - 1 (module docstring); 0 where m = 0 (no matching slot, s does not enter)."""
    m = np.asarray(m, dtype=np.float64)
    e2 = 1.0 / s - 1.0
    safe = np.where(m > 0, m, 1.0)
    var = s * s * (2.0 + e2 + e2 * (1.0 + e2) / safe) / D
    return np.where(m > 0, np.sqrt(var), 0.0)


@dataclass(frozen=True)
class Packed:
    """The kernel's arrays for one (cases, params) cell (see :func:`pack`)."""

    y0: np.ndarray
    cases: np.ndarray
    cdf: np.ndarray
    guide: np.ndarray
    icl: np.ndarray
    iwl: np.ndarray
    s: float
    s_sd: np.ndarray
    bin_size: np.ndarray
    iw_rate: float
    inv_cap: float
    rho: float
    wd: np.ndarray  # (2,): decay of the circuit's a, b, c and of the in-weights logits


def pack(cases: Cases, params: ReducedParams, overlap_noise: bool = False) -> Packed:
    """Arrays for the kernels: the case table, the sampling CDF of the case weights (last entry exactly 1), the
    evaluation tables (padded to one row), the per-case overlap SD (empty without overlap noise) and the scalars."""
    if not isinstance(cases, Cases):
        raise ValueError(f"cases = {cases!r} is not allowed: cases must be a theory.reduced.Cases")
    if not isinstance(params, ReducedParams):
        raise ValueError(f"params = {params!r} is not allowed: params must be a theory.reduced.ReducedParams")
    if not isinstance(overlap_noise, bool):
        raise ValueError(f"overlap_noise = {overlap_noise!r} is not allowed: overlap_noise must be True or False")
    table = np.ascontiguousarray(cases.table(), dtype=np.float64)
    weight = table[:, 0]
    if np.any(weight < 0) or not weight.sum() > 0:
        raise ValueError("cases.weight must be non-negative with a positive sum")
    cdf = np.cumsum(weight) / weight.sum()
    cdf[-1] = 1.0
    cdf, guide = inverse_cdf_table(cdf)
    G = max(cases.bin_size.shape[0], 1)
    bin_size = np.zeros(G)
    bin_size[: cases.bin_size.shape[0]] = cases.bin_size
    iwl = cases.iwl if cases.iwl.shape[0] else np.zeros((1, 7))
    y0 = np.zeros(3 + G)
    y0[0] = y0[1] = params.init
    s_sd = overlap_sd(cases.s, table[:, 1], params.D) if overlap_noise else np.zeros(0)
    return Packed(
        y0=y0,
        cases=table,
        cdf=cdf,
        guide=guide,
        icl=np.ascontiguousarray(cases.icl, dtype=np.float64),
        iwl=np.ascontiguousarray(iwl, dtype=np.float64),
        s=float(cases.s),
        s_sd=s_sd,
        bin_size=bin_size,
        iw_rate=float(cases.iw_rate),
        inv_cap=1.0 / (params.kappa * params.D * cases.L),
        rho=float(params.iw_speed),
        wd=np.array(params.decay_rates(), dtype=np.float64),
    )


# --------------------------------------------------------------------------------------------------- public API
@dataclass(frozen=True)
class Spread:
    """Seed-to-seed spread of transition times. Runs with no transition (NaN) count as later than every other
    run (+inf): they are the runs that stayed on the plateau or ended in another phase.

    Attributes:
        n: number of runs; missing: how many had no transition.
        median, q25, q75, q90: percentiles (linear interpolation; inf where it would reach a missing run).
        iqr: q75 - q25; rel_iqr: iqr / median.
        tail: q90 / median, the long-tail measure (1 for no spread).
    """

    n: int
    missing: int
    median: float
    q25: float
    q75: float
    q90: float
    iqr: float
    rel_iqr: float
    tail: float


def _quantile(sorted_x: np.ndarray, q: float) -> float:
    pos = q * (sorted_x.shape[0] - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, sorted_x.shape[0] - 1)
    frac = pos - lo
    if frac == 0.0:
        return float(sorted_x[lo])
    if math.isinf(sorted_x[hi]):
        return math.inf
    return float(sorted_x[lo] + frac * (sorted_x[hi] - sorted_x[lo]))


def transition_spread(times: np.ndarray) -> Spread:
    """Median, IQR and tail (q90 / q50) of transition times (NaN = no transition, counted as +inf)."""
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or times.size == 0:
        raise ValueError(f"times has shape {times.shape}: it must be a non-empty 1-d array")
    missing = int(np.isnan(times).sum())
    x = np.sort(np.where(np.isnan(times), np.inf, times))
    q25, median, q75, q90 = (_quantile(x, q) for q in (0.25, 0.5, 0.75, 0.9))

    def ratio(num: float, den: float) -> float:
        if math.isinf(den) or den <= 0.0:
            return math.nan
        return num / den

    iqr = q75 - q25 if not math.isinf(q25) else math.nan
    return Spread(
        n=int(times.size),
        missing=missing,
        median=median,
        q25=q25,
        q75=q75,
        q90=q90,
        iqr=iqr,
        rel_iqr=ratio(iqr, median),
        tail=ratio(q90, median),
    )


@dataclass(frozen=True)
class SGDResult:
    """Independent minibatch-SGD runs of the reduced model.

    Attributes:
        transition: (R,) flow time of each run's in-context transition (NaN when none within the horizon).
        t: (E,) evaluation flow times (lr x step, from 0 to lr x steps).
        icl: (R, E) in-context proxy of each run (probability of the correct label on the icl case).
        iwl: (R, E) in-weights proxy of each run.
        state: (R, 3 + G) final state (a, b, c, w_1..w_G); NaN for a run that diverged.
        L: number of labels (chance 1 / L).
        lr, batch, steps, seed, overlap_noise: the settings.
    """

    transition: np.ndarray
    t: np.ndarray
    icl: np.ndarray
    iwl: np.ndarray
    state: np.ndarray
    L: int
    lr: float
    batch: int
    steps: int
    seed: int
    overlap_noise: bool

    def spread(self) -> Spread:
        """:func:`transition_spread` of the runs' transition times."""
        return transition_spread(self.transition)


def eval_steps(steps: int, eval_every: int) -> np.ndarray:
    """The steps at which a run is evaluated: 0, eval_every, 2 eval_every, ..., and the last step."""
    marks = np.arange(0, steps + 1, eval_every, dtype=np.int64)
    return marks if marks[-1] == steps else np.append(marks, steps)


def simulate_sgd(
    cases: Cases,
    params: ReducedParams,
    *,
    lr: float,
    batch: int,
    steps: int,
    seeds: int,
    eval_every: int = 10,
    seed: int = 0,
    overlap_noise: bool = False,
) -> SGDResult:
    """Run ``seeds`` independent minibatch-SGD simulations of the reduced model (Numba, ``prange`` over runs).

    Args:
        cases: the data (:func:`theory.reduced.classification_cases` or :func:`theory.reduced.token_cases`).
        params: capacity, regularisation, initial state and in-weights clock, as for the flow.
        lr: step size in flow time (the run covers flow time lr x steps), in (0, 10].
        batch: sequences per step, in [1, 2^20].
        steps: number of steps, in [1, 10^8].
        seeds: number of independent runs; run j uses the random stream (seed, j), in [1, 10^6].
        eval_every: steps between evaluations of the proxies, in [1, steps].
        seed: the key of the random streams, in [0, 2^64 - 1].
        overlap_noise: give each sequence its own same-class overlap (classification cases; module docstring).

    Returns:
        An :class:`SGDResult`.
    """
    lr = check_real("lr", lr, 0.0, 10.0, low_open=True)
    batch = check_int("batch", batch, 1, 2**20)
    steps = check_int("steps", steps, 1, 10**8)
    seeds = check_int("seeds", seeds, 1, 10**6)
    eval_every = check_int("eval_every", eval_every, 1, steps)
    seed = check_seed(seed)
    pk = pack(cases, params, overlap_noise)
    marks = eval_steps(steps, eval_every)
    t_eval = marks * lr
    E = marks.shape[0]
    icl = np.full((seeds, E), np.nan)
    iwl = np.full((seeds, E), np.nan)
    y_out = np.full((seeds, pk.y0.shape[0]), np.nan)
    tstar = _simulate_many(
        pk.y0,
        np.uint64(seed),
        pk.cases,
        pk.cdf,
        pk.guide,
        pk.icl,
        pk.iwl,
        pk.s,
        pk.s_sd,
        pk.bin_size,
        pk.iw_rate,
        pk.inv_cap,
        pk.rho,
        pk.wd,
        lr,
        batch,
        steps,
        eval_every,
        t_eval,
        icl,
        iwl,
        y_out,
    )
    G = cases.bin_size.shape[0]
    return SGDResult(
        transition=tstar,
        t=t_eval,
        icl=icl,
        iwl=iwl,
        state=y_out[:, : 3 + G],
        L=cases.L,
        lr=lr,
        batch=batch,
        steps=steps,
        seed=seed,
        overlap_noise=overlap_noise,
    )
