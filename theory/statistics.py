"""Exact statistics of Zipfian data: fast evaluators, a Hurwitz-zeta series form, and the task-level tables.

Every statistic is a rank sum  S = sum_{k=1}^{K} w(p_k),  p_k = (k + q)^(-alpha) / Z,  with a summand w from
:data:`theory.symbolic.SUMMANDS`, or a mixture of such sums. Three evaluators, compared in the tests:

``method="exact"``
    The sum itself in a parallel Numba kernel (O(K); about 20 ms for 10^6 ranks on 2 cores). The kernel
    evaluates w through its term structure (:func:`theory.symbolic.summand_terms`), so the formula is the
    sympy one, not a retyped copy; for ranks with x p_k <= 1/2, where the terms cancel (1 - (1-p)^N ~ N p),
    it sums w's power series in p instead, so rare ranks keep full relative precision.
``method="asymptotic"``
    The large-K form: the first M ranks summed exactly, where M >= 64 is the smallest rank beyond which
    x p_k <= 1/2 for the summand's largest rate x (N, T, c t, ...), and the tail expanded as a power series in p
    whose coefficients are power sums of the tail, i.e. differences of Hurwitz zeta functions:
        sum_{k>M} p_k^m = [zeta(m alpha, M + 1 + q) - zeta(m alpha, K + 1 + q)] / Z^m,
    evaluated by Euler-Maclaurin (:mod:`theory.hurwitz`). Its cost does not grow with K. The returned error
    bound adds the series truncation (geometric, ratio <= 1/2) and the Euler-Maclaurin remainders; in
    practice the result agrees with the exact sum to ~1e-13 relative for K up to 10^7 and alpha in [0, 4].
``method="reference"``
    The lambdified sympy ``Sum`` (plain Python; small K only). The naive twin of the other two.

Statistics (names are the keys of the tables and of ``zipfhead stats --json``):

* ``normaliser`` Z, ``entropy_nats`` H = ln Z + (alpha/Z) sum (k+q)^-alpha ln(k+q), ``mean_rank`` E[k];
* ``p_query_in_context``: P(the query's class is among the N context items); i.i.d. contexts
  (``_iid``: sum_k p_k [1 - (1 - p_k)^N]) and the training mixture (novel and bursty contexts always hold it);
* ``expected_distinct``: E[distinct classes in a context] (N/B when bursty, sum_k [1 - (1 - p_k)^N] i.i.d.);
* ``expected_query_occurrences``: E[earlier items of the query's class] (B when bursty, N sum_k p_k^2 i.i.d.);
* token streams: ``p_seen_before`` (the token at position t of the i.i.d. background repeats one of the t - 1
  before it) and ``p_trigger_repeat`` (a trigger occurs twice among positions 1..T-1, so its output after the
  second occurrence is inside the sequence: the induction signal; exact for ``n_triggers = 1``);
* ``unmemorised_mass`` U(t; c) = sum_k p_k exp(-c p_k t) and ``unmemorised_integral``
  int_0^tau U dt = sum_k (1 - exp(-c p_k tau)) / c, which tends to K / c.
"""

from __future__ import annotations

import math
from functools import cache, lru_cache
from typing import Any

import numpy as np
import sympy as sp
from numba import njit, prange

from zipfhead.theory import symbolic as sym
from zipfhead.theory.distributions import ClassificationTask, TokenStreamTask, Zipf
from zipfhead.theory.hurwitz import tail_log_power_sum, tail_power_sum

__all__ = [
    "METHODS",
    "all_statistics",
    "classification_statistics",
    "clear_caches",
    "entropy",
    "mean_rank",
    "memorisation_statistics",
    "normaliser",
    "rank_sum",
    "rank_sum_with_bound",
    "token_statistics",
    "zipf_statistics",
]

METHODS = ("exact", "asymptotic", "reference")
_HEAD = 64  # ranks always summed exactly by the asymptotic form: Euler-Maclaurin then starts at a >= 65
_ORDER = 96  # power-series terms of the tail; with ratio <= 1/2 the truncation is below 2^-96 of the first


# --- Numba kernels ---------------------------------------------------------------------------------------
# Sums run over blocks of _BLOCK ranks, sequential inside a block and parallel across blocks, then the
# block sums are added: the rounding error grows like (_BLOCK + K/_BLOCK) eps rather than K eps.
_BLOCK = 4096


@njit(parallel=True, cache=True)
def _power_sums_kernel(K, alpha, q):  # pragma: no cover - compiled
    """(sum r^-alpha, sum r^-alpha ln r, sum r^(1-alpha)) over r = k + q, k = 1..K."""
    n_blocks = (K + _BLOCK - 1) // _BLOCK
    parts = np.zeros((n_blocks, 3))
    for b in prange(n_blocks):
        z = 0.0
        zl = 0.0
        zr = 0.0
        for i in range(b * _BLOCK, min(K, (b + 1) * _BLOCK)):
            r = i + 1.0 + q
            lr = math.log(r)
            w = math.exp(-alpha * lr)
            z += w
            zl += w * lr
            zr += w * r
        parts[b, 0] = z
        parts[b, 1] = zl
        parts[b, 2] = zr
    return parts[:, 0].sum(), parts[:, 1].sum(), parts[:, 2].sum()


@njit(parallel=True, cache=True)
def _normaliser_kernel(K, alpha, q):  # pragma: no cover - compiled
    """sum_k (k + q)^-alpha alone (one log and one exp per rank)."""
    n_blocks = (K + _BLOCK - 1) // _BLOCK
    parts = np.zeros(n_blocks)
    for b in prange(n_blocks):
        z = 0.0
        for i in range(b * _BLOCK, min(K, (b + 1) * _BLOCK)):
            z += math.exp(-alpha * math.log(i + 1.0 + q))
        parts[b] = z
    return parts.sum()


@njit(parallel=True, cache=True)
def _summand_kernel(K, alpha, q, log_z, coef, j, kind, y, series, scale, series_bound):  # pragma: no cover
    """sum_{k<=K} w(p_k), w = sum_terms coef p^j (1-p)^y (kind 0) or coef p^j exp(-y p) (kind 1).

    Where p_k <= scale = 1/(2 rate) the terms cancel (1 - (1-p)^N ~ N p), so w is summed from its power series
    in u = p / scale instead: w = sum_m series[m] u^m, whose remainder after m is at most
    series_bound (u/2)^(m+1); the loop stops when that is below 1e-17 of the partial sum.
    """
    n_terms = coef.shape[0]
    order = series.shape[0]
    n_blocks = (K + _BLOCK - 1) // _BLOCK
    parts = np.zeros(n_blocks)
    for b in prange(n_blocks):
        total = 0.0
        for i in range(b * _BLOCK, min(K, (b + 1) * _BLOCK)):
            p = math.exp(-alpha * math.log(i + 1.0 + q) - log_z)
            acc = 0.0
            if p <= scale:
                u = p / scale
                um = 1.0
                rest = series_bound * 0.5 * u
                for m in range(order):
                    acc += series[m] * um
                    um *= u
                    rest *= 0.5 * u
                    if rest <= 1e-17 * abs(acc):
                        break
            else:
                l1p = math.log1p(-p) if p < 1.0 else -math.inf
                # Terms come sorted by (kind, y): (1-p)^y one step above the previous is a multiplication.
                last_kind = -1
                last_y = 0.0
                factor = 1.0
                for m in range(n_terms):
                    if kind[m] != last_kind or y[m] != last_y:
                        if kind[m] == 0 and last_kind == 0 and y[m] == last_y + 1.0:
                            factor *= 1.0 - p
                        elif kind[m] == 0:
                            factor = math.exp(y[m] * l1p) if y[m] != 0.0 else 1.0
                        else:
                            factor = math.exp(-y[m] * p)
                        last_kind = kind[m]
                        last_y = y[m]
                    v = coef[m] * factor
                    for _ in range(j[m]):  # small integer powers: multiply, no transcendental
                        v *= p
                    acc += v
            total += acc
        parts[b] = total
    return parts.sum()


# --- helpers ---------------------------------------------------------------------------------------------
def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method = {method!r} is not allowed: method must be one of {', '.join(METHODS)}")


@cache
def _term_functions(name: str):
    """Lambdified (coef, y) of each term of a summand, as functions of the summand's parameters."""
    _, params = sym.SUMMANDS[name]
    terms = sym.summand_terms(name)
    names = tuple(x.name for x in params)
    coef = [sp.lambdify(params, term.coef, modules="math") for term in terms]
    y = [sp.lambdify(params, term.y, modules="math") for term in terms]
    j = np.array([term.j for term in terms], dtype=np.int64)
    kind = np.array([term.kind for term in terms], dtype=np.int64)
    return names, coef, y, j, kind


@cache
def _summand_numpy(name: str):
    expr, params = sym.SUMMANDS[name]
    return sp.lambdify((sym.p, *params), expr, modules="numpy"), tuple(x.name for x in params)


def _terms(name: str, params: dict[str, float]):
    names, coef_f, y_f, j, kind = _term_functions(name)
    missing = sorted(set(names) - set(params))
    if missing:
        raise ValueError(f"statistic {name!r} needs parameter(s) {missing}")
    args = [params[n] for n in names]
    coef = np.array([f(*args) for f in coef_f], dtype=np.float64)
    y = np.array([f(*args) for f in y_f], dtype=np.float64)
    order = np.lexsort((y, kind))  # the kernel's chaining of (1-p)^y needs terms sorted by (kind, y)
    return coef[order], j[order], kind[order], y[order]


def _power_sums_asymptotic(zipf: Zipf, s_shift: float = 0.0, with_log: bool = False):
    """sum_k (k+q)^-(alpha+s_shift) [ln(k+q)], exactly over the first 64 ranks, Euler-Maclaurin beyond."""
    K, q = zipf.K, zipf.q
    s = zipf.alpha + s_shift
    M = min(K, _HEAD)
    r = np.arange(1, M + 1, dtype=np.float64) + q
    head_terms = np.exp(-s * np.log(r))
    if with_log:
        head_terms = head_terms * np.log(r)
    tail_f = tail_log_power_sum if with_log else tail_power_sum
    tail, bound = tail_f(s, M + 1 + q, K + 1 + q)
    return float(math.fsum(head_terms) + tail), float(bound)


# --- the public evaluators -------------------------------------------------------------------------------
@lru_cache(maxsize=1024)
def _normaliser_exact(K: int, alpha: float, q: float) -> float:
    # Cached: every rank sum of the same distribution needs Z first.
    return float(_normaliser_kernel(K, alpha, q))


def clear_caches() -> None:
    """Forget cached normalisers (for benchmarks that time a cold evaluation)."""
    _normaliser_exact.cache_clear()


def normaliser(zipf: Zipf, method: str = "exact") -> float:
    """Z = sum_{k=1}^{K} (k + q)^(-alpha), the generalised harmonic number H_{K, alpha} (shifted by q)."""
    _check_method(method)
    if method == "exact":
        return _normaliser_exact(zipf.K, zipf.alpha, zipf.q)
    if method == "asymptotic":
        return _power_sums_asymptotic(zipf)[0]
    return float(sym.reference("normaliser")(K=zipf.K, alpha=zipf.alpha, q=zipf.q))


def entropy(zipf: Zipf, method: str = "exact") -> float:
    """Shannon entropy in nats: H = ln Z + (alpha / Z) sum_k (k+q)^-alpha ln(k+q)."""
    _check_method(method)
    if method == "exact":
        z, zl, _ = _power_sums_kernel(zipf.K, zipf.alpha, zipf.q)
    elif method == "asymptotic":
        z = _power_sums_asymptotic(zipf)[0]
        zl = _power_sums_asymptotic(zipf, with_log=True)[0]
    else:
        return float(sym.reference("entropy_nats")(K=zipf.K, alpha=zipf.alpha, q=zipf.q))
    return float(math.log(z) + zipf.alpha * zl / z)


def mean_rank(zipf: Zipf, method: str = "exact") -> float:
    """E[k] = sum_k k p_k = sum_k (k+q)^(1-alpha) / Z - q (ranks 1..K)."""
    _check_method(method)
    if method == "exact":
        z, _, zr = _power_sums_kernel(zipf.K, zipf.alpha, zipf.q)
    elif method == "asymptotic":
        z = _power_sums_asymptotic(zipf)[0]
        zr = _power_sums_asymptotic(zipf, s_shift=-1.0)[0]
    else:
        return float(sym.reference("mean_rank")(K=zipf.K, alpha=zipf.alpha, q=zipf.q))
    return float(zr / z - zipf.q)


def _taylor_coefficients(
    coef: np.ndarray, j: np.ndarray, kind: np.ndarray, y: np.ndarray, order: int, scale: float = 1.0
) -> np.ndarray:
    """b_m = a_m scale^m, m = 0..order, where sum_m a_m p^m is the power series of
    sum_terms coef p^j (1-p)^y (POW) or coef p^j exp(-y p) (EXP). Scaling by the largest p of the tail keeps
    every b_m finite (a_m alone overflows for rates y ~ 10^5)."""
    b = np.zeros(order + 1)
    idx = np.arange(1, order + 1, dtype=np.float64)
    for cf, jj, kd, yy in zip(coef, j, kind, y, strict=True):
        # ratio of successive coefficients: binomial(y, i) (-1)^i or (-y)^i / i!
        ratios = (-(yy - idx + 1.0) / idx if kd == sym.POW else -yy / idx) * scale
        series = np.concatenate([[1.0], np.cumprod(ratios)])
        b[jj:] += cf * scale**jj * series[: order + 1 - jj]
    return b


def rank_sum(name: str, zipf: Zipf, method: str = "exact", **params: float) -> float:
    """sum_{k=1}^{K} w(p_k) for the summand ``theory.symbolic.SUMMANDS[name]`` with parameters ``params``.

    Args:
        name: a key of ``SUMMANDS`` (in_context, distinct, collision, unmemorised, unmemorised_integral,
            trigger_repeat_zipf, trigger_repeat_uniform).
        zipf: the distribution.
        method: ``exact``, ``asymptotic`` or ``reference`` (see the module docstring).
        params: the summand's parameters (for example N=8).
    """
    return _rank_sum(name, zipf, method, params)[0]


def rank_sum_with_bound(name: str, zipf: Zipf, **params: float) -> tuple[float, float]:
    """The asymptotic form of :func:`rank_sum` and a bound on its truncation error."""
    return _rank_sum(name, zipf, "asymptotic", params)


def _rank_sum(name: str, zipf: Zipf, method: str, params: dict[str, float]) -> tuple[float, float]:
    _check_method(method)
    if name not in sym.SUMMANDS:
        raise ValueError(f"name = {name!r} is not allowed: name must be one of {', '.join(sym.SUMMANDS)}")
    coef, j, kind, y = _terms(name, params)
    if method == "reference":
        fun, names = _summand_numpy(name)
        probs = zipf.probs()
        args = [params[n] for n in names]
        return float(sum(float(fun(float(pk), *args)) for pk in probs)), 0.0

    # The power series of w in u = p / scale, scale = 1/(2 rate): every |series[m]| <= sum|coef| 2^(j_max - m),
    # because each term's coefficients grow by at most `rate` per order (see _taylor_coefficients).
    rate = max(1.0, float(np.max(np.abs(y))) if y.size else 1.0)
    scale = 0.5 / rate
    series = _taylor_coefficients(coef, j, kind, y, _ORDER, scale)
    series_bound = float(np.sum(np.abs(coef))) * 2.0 ** (int(np.max(j)) + 1)
    kernel_args = (coef, j, kind, y, series, scale, series_bound)
    K, alpha, q = zipf.K, zipf.alpha, zipf.q
    if method == "exact":
        log_z = math.log(normaliser(zipf, "exact"))
        return float(_summand_kernel(K, alpha, q, log_z, *kernel_args)), 0.0

    z, z_bound = _power_sums_asymptotic(zipf)
    log_z = math.log(z)
    # Head: the ranks with p_k > scale, where the series converges slowly, and at least 64.
    # (k + q)^alpha >= 2 rate / Z, solved in logs (alpha may be tiny).
    log_r = math.log(2.0 * rate / z)
    if log_r <= 0.0:
        m_min = 0
    elif alpha == 0.0 or log_r / alpha > math.log(K + q + 1.0):
        m_min = K
    else:
        m_min = math.ceil(math.exp(log_r / alpha) - q - 1.0)
    M = int(min(K, max(_HEAD, m_min)))
    head = float(_summand_kernel(M, alpha, q, log_z, *kernel_args))
    if M == K:
        return head, 1e-14 * abs(head)
    # Tail: sum_{k>M} (p_k / scale)^m = T_{m alpha}(M+1+q, K+1+q) / (Z scale)^m, a Hurwitz zeta difference.
    m = np.arange(_ORDER + 1, dtype=np.float64)
    tails, bounds = tail_power_sum(m * alpha, M + 1 + q, K + 1 + q, log_scale=m * (log_z + math.log(scale)))
    contributions = series * tails
    value = head + math.fsum(contributions.tolist())
    # Series truncation (geometric, ratio <= 1/2: the rest is below the last term), the Euler-Maclaurin
    # remainders, Z's own remainder (it enters p^m as Z^-m, m up to ~2 rate), and float64 rounding of the sums.
    bound = 2.0 * abs(contributions[-1]) + float(np.sum(np.abs(series) * bounds))
    bound += abs(value) * (z_bound / z) * min(_ORDER, 2.0 * rate + 2.0)
    bound += 1e-14 * (abs(head) + float(np.sum(np.abs(contributions))))
    return float(value), float(bound)


# --- task-level tables -----------------------------------------------------------------------------------
def zipf_statistics(zipf: Zipf, method: str = "exact") -> dict[str, float]:
    """Normaliser, entropy (nats) and mean rank of a Zipf distribution."""
    return {
        "normaliser": normaliser(zipf, method),
        "entropy_nats": entropy(zipf, method),
        "mean_rank": mean_rank(zipf, method),
    }


def classification_statistics(task: ClassificationTask, method: str = "exact") -> dict[str, float]:
    """The exact statistics of an in-context classification task (see the module docstring for each key).

    The mixture values use the law of total probability over the three kinds of training sequence: novel
    (p_C; bursty), bursty (p_B of the rest) and i.i.d. (the remainder).
    """
    zipf = task.zipf
    stats = zipf_statistics(zipf, method)
    in_ctx = rank_sum("in_context", zipf, method, N=task.N)
    distinct = rank_sum("distinct", zipf, method, N=task.N)
    occ = task.N * rank_sum("collision", zipf, method)
    bursty = task.p_C + (1 - task.p_C) * task.p_B
    stats.update(
        {
            "p_query_in_context": bursty + (1 - bursty) * in_ctx,
            "p_query_in_context_iid": in_ctx,
            "expected_distinct": bursty * task.classes_per_burst + (1 - bursty) * distinct,
            "expected_distinct_iid": distinct,
            "expected_query_occurrences": bursty * task.B + (1 - bursty) * occ,
            "expected_query_occurrences_iid": occ,
            "p_bursty": bursty,
        }
    )
    return stats


def token_statistics(task: TokenStreamTask, t: int | None = None, method: str = "exact") -> dict[str, float]:
    """Statistics of a token-stream task: repetition of the background and the induction signal.

    Args:
        task: the token-stream task.
        t: the position (1-based) for ``p_seen_before``; default T.
        method: see the module docstring.
    """
    t = task.T if t is None else t
    if not 1 <= t <= task.T:
        raise ValueError(f"t = {t} is out of range: t must be an integer in [1, T = {task.T}]")
    zipf = task.zipf
    if task.trigger_dist == "zipf":
        repeat = rank_sum("trigger_repeat_zipf", zipf, method, T=task.T)
    else:
        repeat = rank_sum("trigger_repeat_uniform", zipf, method, T=task.T, V=task.V)
    return {
        "token_entropy_nats": entropy(zipf, method),
        "p_seen_before": rank_sum("in_context", zipf, method, N=t - 1),
        "p_trigger_repeat": repeat,
    }


def memorisation_statistics(zipf: Zipf, c: float, t: float, method: str = "exact") -> dict[str, float]:
    """The unmemorised mass U(t; c), its integral up to t, and the integral's limit K / c."""
    if not (math.isfinite(c) and c > 0):
        raise ValueError(f"c = {c!r} is out of range: c must be a finite number in (0, inf)")
    if not (math.isfinite(t) and t >= 0):
        raise ValueError(f"t = {t!r} is out of range: t must be a finite number in [0, inf)")
    return {
        "unmemorised_mass": rank_sum("unmemorised", zipf, method, c=c, t=t),
        "unmemorised_integral": rank_sum("unmemorised_integral", zipf, method, c=c, tau=t),
        "unmemorised_integral_limit": zipf.K / c,
    }


def all_statistics(
    cls_task: ClassificationTask, tok_task: TokenStreamTask, c: float, t: float, method: str = "exact"
) -> dict[str, Any]:
    """Every table at once, as printed by ``zipfhead stats``."""
    return {
        **classification_statistics(cls_task, method),
        **token_statistics(tok_task, method=method),
        **memorisation_statistics(cls_task.zipf, c, t, method),
    }
