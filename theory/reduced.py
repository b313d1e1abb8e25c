"""Reduced model of induction-head formation in competition with in-weights memorisation.

State (all scalars, one model):

* ``a``  previous-token strength: how much of the preceding item a label token carries (layer 1);
* ``b``  match strength: how strongly the query's key/query product picks out a carried item (layer 2);
* ``c``  output strength: how much attention mass on a label raises that label's logit (OV copy);
* ``w_g`` in-weights logit of the classes in Zipf rank bin ``g`` (the direct path item -> label).

A training sequence is one *case*: the query's class occurs ``m`` times among ``n`` context slots; the other context
labels form ``n_o`` distinct labels carried ``r`` times each; ``M`` labels are absent. With the match logit
``x = s a b`` (``s`` = overlap of two items of one class, 1 / (1 + eps^2) in the large-D limit, 0 across classes),
the query attends to each matching slot with weight e^x / Z and to every other slot with weight 1 / Z,
``Z = m e^x + n - m``. The label logits are

    z* = c m e^x / Z + w          (the query's label: copied mass plus the in-weights logit)
    z_o = c r / Z                 (each other label present in the context)
    0                             (each absent label)

and the case's loss is the cross-entropy  l = -z* + log(e^z* + n_o e^z_o + M).  The training loss is the expectation
of ``l`` over the data (a finite sum over cases, built by :func:`classification_cases` from
the distribution's parameters) plus the in-weights interference cost ``(1 + eps^2) / (2 kappa D L) sum_k w_k^2``:
a linear read-out of K random class means in D dimensions leaks every memorised class into every other class's
logits (noise of variance ``sum_k w_k^2 / (D L)`` per label), and a second-order expansion of the expected
log-sum-exp gives that quadratic cost. ``kappa`` (a calibration constant, 1 by the derivation) scales the capacity.

The gradient flow ``d theta / dt = -grad(loss) - lambda theta`` is derived with sympy (:data:`CASE_LOSS`), compiled
to a Numba kernel, and integrated by an adaptive Bogacki-Shampine 3(2) scheme for a whole grid of distributions at
once (``prange``). Time ``t`` is gradient-flow time: for SGD it is learning rate x steps; the map to training steps
of the toys (and Adam's time scale) is the calibration of :mod:`theory.predict`.

Derivation, identities and closed forms: ``proofs_notebooks/02_induction_reduced_model.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import sympy as sp

from zipfhead.theory._codegen import kernel_module, write_module
from zipfhead.theory._reduced_flow import CBIN, CM, CMM, CN, CNO, COLUMNS, CR, W
from zipfhead.theory._validate import check_int, check_real
from zipfhead.theory.distributions import ClassificationTask, Zipf
from zipfhead.theory.ode import integrate_cells
from zipfhead.theory.schedule import DECAY_ON

__all__ = [
    "CASE_LOSS",
    "CASE_SYMBOLS",
    "Cases",
    "ReducedParams",
    "Trajectory",
    "classification_cases",
    "integrate",
    "integrate_grid",
    "kernel_source",
]

# --------------------------------------------------------------------------------------------------- derivation
a_, b_, c_, w_ = sp.symbols("a b c w", real=True)
s_, m_, n_, r_, no_, M_ = sp.symbols("s m n r n_o M", nonnegative=True)
#: the state variables and the case parameters, in the kernel's argument order
CASE_SYMBOLS = (a_, b_, c_, w_, s_, m_, n_, r_, no_, M_)

_x = s_ * a_ * b_
_Z = m_ * sp.exp(_x) + n_ - m_
_z_star = c_ * m_ * sp.exp(_x) / _Z + w_
_z_other = c_ * r_ / _Z
_u = sp.exp(_z_other - _z_star)  # P_other / P*
_v = sp.exp(-_z_star)  # P_absent / P*
_denominator = 1 + no_ * _u + M_ * _v
#: one case's cross-entropy, written as log(1 + ...) so that the compiled kernel never overflows for large logits
CASE_LOSS = sp.log(_denominator)
#: one case's softmax curvature 1 - sum_l P_l^2: the factor by which logit noise raises the expected loss
CASE_CURVATURE = 1 - (1 + no_ * _u**2 + M_ * _v**2) / _denominator**2


KERNEL_MODULE = Path(__file__).with_name("_reduced_kernel.py")


def kernel_source() -> str:
    """Source of the module holding ``case_terms(a, b, c, w, s, m, n, r, n_o, M)``, derived with sympy.

    It returns (loss, dl/da, dl/db, dl/dc, dl/dw, curvature, dk/da, dk/db, dk/dc, dk/dw), common subexpressions
    shared (``sympy.cse``).
    """
    exprs = [CASE_LOSS] + [sp.diff(CASE_LOSS, v) for v in (a_, b_, c_, w_)]
    exprs += [CASE_CURVATURE] + [sp.diff(CASE_CURVATURE, v) for v in (a_, b_, c_, w_)]
    return kernel_module(
        "python -m zipfhead.theory.reduced", "CASE_LOSS and CASE_CURVATURE", "case_terms", exprs, CASE_SYMBOLS
    )


def write_kernel() -> None:
    """Regenerate ``theory/_reduced_kernel.py`` (write, then rename)."""
    write_module(KERNEL_MODULE, kernel_source())


# --------------------------------------------------------------------------------------------------- data cases
@dataclass(frozen=True)
class Cases:
    """The expectation over the data as a finite sum of cases, plus the in-weights bins and evaluation cases.

    Arrays of shape (C,) describe the training cases: ``weight`` (probabilities, summing to 1), ``m``, ``n``, ``r``,
    ``n_o``, ``M`` (as in the module docstring) and ``bin`` (the in-weights bin of the query's class, -1 when the
    class cannot be memorised: novel classes, uniform token outputs). ``bin_size`` (G,) counts the classes of each
    bin and ``bin_mass`` (G,) their total probability. ``icl`` and ``iwl`` are evaluation cases of shape (E, 7) with
    columns (weight, m, n, r, n_o, M, bin): novel bursty sequences, and known classes absent from an i.i.d. context.
    ``s`` is the same-class item overlap, ``iw_rate`` the factor 1 / (1 + eps^2) of the in-weights flow, ``L`` the
    number of labels (chance accuracy 1 / L).
    """

    weight: np.ndarray
    m: np.ndarray
    n: np.ndarray
    r: np.ndarray
    n_o: np.ndarray
    M: np.ndarray
    bin: np.ndarray
    bin_size: np.ndarray
    bin_mass: np.ndarray
    icl: np.ndarray
    iwl: np.ndarray
    s: float
    iw_rate: float
    L: int

    def table(self) -> np.ndarray:
        """Training cases as one (C, 7) array, columns :data:`COLUMNS` (those of the evaluation tables)."""
        return np.stack([self.weight, self.m, self.n, self.r, self.n_o, self.M, self.bin.astype(float)], axis=1)


def _counts(n_o: np.ndarray | float, L: int) -> tuple[np.ndarray, np.ndarray]:
    n_o = np.minimum(n_o, L - 1.0)
    return n_o, L - 1.0 - n_o


@lru_cache(maxsize=512)
def _iid_block(K: int, alpha: float, q: float, N: int, L: int, max_bins: int, tail: float) -> np.ndarray:
    """The i.i.d.-context cases of every bin, (C, 7), weights = bin mass x Binomial(m; N, p) (cut at ``tail``)."""
    sizes, masses = Zipf(K, alpha, q).rank_bins(max_bins)
    k = np.arange(N + 1, dtype=np.float64)
    log_comb = np.array([math.lgamma(N + 1) - math.lgamma(j + 1) - math.lgamma(N - j + 1) for j in range(N + 1)])
    blocks = []
    for g, mass in enumerate(masses):
        p = min(mass / sizes[g], 1.0)
        with np.errstate(divide="ignore"):
            pmf = np.exp(log_comb + k * np.log(p) + (N - k) * np.log1p(-p)) if 0 < p < 1 else (k == N * p) * 1.0
        upper = np.cumsum(pmf[::-1])[::-1]  # upper[j] = P(m >= j)
        cut = max(int(np.flatnonzero(upper >= tail)[-1]), 0)
        kept = pmf[: cut + 1].copy()
        kept[cut] += pmf[cut + 1 :].sum()
        n_o, M = _counts(N - k[: cut + 1], L)
        block = np.stack(
            [mass * kept, k[: cut + 1], np.full(cut + 1, N), np.ones(cut + 1), n_o, M, np.full(cut + 1, g)], axis=1
        )
        blocks.append(block[kept > 0])
    return np.concatenate(blocks)


def classification_cases(task: ClassificationTask, *, max_bins: int = 12, tail: float = 1e-4) -> Cases:
    """The cases of the in-context classification mixture (Reddy 2024's task; symbols: :mod:`theory.distributions`).

    * bursty known sequences (probability (1 - p_C) p_B): the query's class is among N / B classes each present
      B times: m = B, r = B, n_o = N / B - 1;
    * i.i.d. known sequences ((1 - p_C)(1 - p_B)): m ~ Binomial(N, p) for a class of probability p; the N - m
      other items are taken as carrying distinct labels (r = 1): exact when the head of the Zipf law is not
      repeated, an overestimate of n_o otherwise;
    * novel sequences (p_C): bursty, with no in-weights channel.

    Classes are grouped into at most ``max_bins`` geometric rank bins (one class per bin when K <= max_bins). The
    binomial is cut where its upper tail falls below ``tail`` (the cut mass goes to the last kept count). Label
    collisions (classes sharing a label k mod L) are ignored, and n_o is capped at L - 1.
    """
    if not isinstance(task, ClassificationTask):
        raise ValueError(f"task = {task!r} is not allowed: task must be a ClassificationTask")
    check_int("max_bins", max_bins, 1)
    check_real("tail", tail, 0.0, 0.5, low_open=True)
    K, N, B, L = task.K, task.N, task.B, task.L
    sizes, masses = Zipf(K, task.alpha, task.q).rank_bins(max_bins)
    G = masses.shape[0]
    known = 1.0 - task.p_C
    n_o, M = _counts(N / B - 1.0, L)
    parts = []
    if known * task.p_B > 0:
        bursty = np.zeros((G, len(COLUMNS)))
        bursty[:] = [0.0, B, N, B, n_o, M, 0.0]
        bursty[:, W] = known * task.p_B * masses
        bursty[:, CBIN] = np.arange(G)
        parts.append(bursty)
    if known * (1 - task.p_B) > 0:
        iid = _iid_block(K, task.alpha, task.q, N, L, max_bins, tail).copy()
        iid[:, W] *= known * (1 - task.p_B)
        parts.append(iid)
    if task.p_C > 0:
        parts.append(np.array([[task.p_C, B, N, B, n_o, M, -1.0]]))
    table = np.concatenate(parts)
    icl = np.array([[1.0, B, N, B, n_o, M, -1]], dtype=np.float64)
    no_iwl, M_iwl = _counts(float(N), L)
    iwl = np.zeros((G, len(COLUMNS)))
    iwl[:] = [0.0, 0.0, N, 1.0, no_iwl, M_iwl, 0.0]
    iwl[:, W] = masses
    iwl[:, CBIN] = np.arange(G)
    s = 1.0 / (1.0 + task.eps**2)
    return Cases(
        weight=table[:, W],
        m=table[:, CM],
        n=table[:, CN],
        r=table[:, CR],
        n_o=table[:, CNO],
        M=table[:, CMM],
        bin=table[:, CBIN].astype(np.int64),
        bin_size=sizes,
        bin_mass=masses,
        icl=icl,
        iwl=iwl,
        s=s,
        iw_rate=s,
        L=L,
    )


# --------------------------------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class ReducedParams:
    """What the reduced model needs beyond the data: capacity, regularisation and the initial state.

    Attributes:
        D: item dimension of the toy (its in-weights capacity is kappa D L classes' worth of logit norm).
        kappa: capacity constant (1 from the second-order derivation; calibrated in :mod:`theory.predict`).
        weight_decay: lambda of the flow's -lambda theta term (per unit of flow time), >= 0.
        decay_on: which strengths decay: ``all`` (a, b, c and the in-weights logits), or ``attention`` (the
            circuit's a, b, c only: the in-context path, as a toy trained with ``decay_on='attention'``).
        init: initial previous-token and match strengths a(0) = b(0) (small: random init); c(0) = w(0) = 0.
            init = 0 is the one-layer counterpart: without a previous-token step a = b = 0 stays a fixed point.
        iw_speed: rho, the in-weights channel's clock relative to the induction channel's (a preconditioner on
            the w's: the direct path of a toy is a product of fewer, wider matrices than the induction circuit,
            so its effective learning rate differs). It changes when memorisation happens, not what it reaches.
    """

    D: int = 16
    kappa: float = 1.0
    weight_decay: float = 0.0
    decay_on: str = "all"
    init: float = 0.05
    iw_speed: float = 1.0
    optimizer: str = "gd"
    batch: int = 64

    def __post_init__(self) -> None:
        check_int("D", self.D, 1)
        check_real("kappa", self.kappa, 0.0, 1e6, low_open=True)
        check_real("weight_decay", self.weight_decay, 0.0, 1e3)
        if self.decay_on not in DECAY_ON:
            raise ValueError(f"decay_on = {self.decay_on!r} is not allowed: decay_on must be one of all, attention")
        check_real("init", self.init, 0.0, 10.0)
        check_real("iw_speed", self.iw_speed, 0.0, 1e6, low_open=True)
        if self.optimizer not in ("gd", "adam"):
            raise ValueError(f"optimizer = {self.optimizer!r} is not allowed: optimizer must be one of gd, adam")
        check_int("batch", self.batch, 1)

    def decay_rates(self) -> tuple[float, float]:
        """(lambda on the circuit's a, b, c; lambda on the in-weights logits), per unit of flow time."""
        return self.weight_decay, self.weight_decay if self.decay_on == "all" else 0.0


@dataclass(frozen=True)
class Trajectory:
    """One integrated model on its output times.

    Attributes:
        t: (E,) flow times.
        icl: (E,) probability of the correct label on novel bursty sequences (the in-context accuracy proxy).
        iwl: (E,) probability of the correct label on known classes absent from the context (in-weights proxy).
        loss: (E,) expected training cross-entropy (nats, without the interference cost).
        state: (E, 3 + G) the state (a, b, c, w_1..w_G).
        L: number of labels (chance = 1 / L).
        transition: flow time at which ``icl`` covers half the way from 1 / L to its final value (the one rule of
            :mod:`theory.transition`, without smoothing, on the integrator's own steps), or None (no rise).
    """

    t: np.ndarray
    icl: np.ndarray
    iwl: np.ndarray
    loss: np.ndarray
    state: np.ndarray
    L: int
    transition: float | None


def _pack(items: list[tuple[Cases, ReducedParams, np.ndarray]]):
    """Pad a list of cells into the integrator's arrays."""
    n = len(items)
    C = max(cs.weight.shape[0] for cs, _, _ in items)
    G = max(max(cs.bin_size.shape[0], 1) for cs, _, _ in items)
    Ei = max(max(cs.icl.shape[0], 1) for cs, _, _ in items)
    Ew = max(max(cs.iwl.shape[0], 1) for cs, _, _ in items)
    E = items[0][2].shape[0]
    cases = np.zeros((n, C, len(COLUMNS)))
    icl = np.zeros((n, Ei, len(COLUMNS)))
    iwl = np.zeros((n, Ew, len(COLUMNS)))
    bin_size = np.zeros((n, G))
    bin_p = np.zeros((n, G))
    noise2 = np.zeros(n)
    y0 = np.zeros((n, 3 + G))
    s = np.zeros(n)
    iw_rate = np.zeros(n)
    inv_cap = np.zeros(n)
    rho = np.zeros(n)
    wd = np.zeros((n, 2))
    t_out = np.zeros((n, E))
    for i, (cs, prm, t) in enumerate(items):
        if t.shape != (E,):
            raise ValueError(f"t_out has shape {t.shape} in cell {i}: every cell needs the same number of times {E}")
        tab = cs.table()
        cases[i, : tab.shape[0]] = tab
        icl[i, : cs.icl.shape[0]] = cs.icl
        iwl[i, : cs.iwl.shape[0]] = cs.iwl
        bin_size[i, : cs.bin_size.shape[0]] = cs.bin_size
        if cs.bin_size.shape[0]:
            bin_p[i, : cs.bin_size.shape[0]] = cs.bin_mass / cs.bin_size
        noise2[i] = 1.0 / prm.batch if prm.optimizer == "adam" else 0.0
        y0[i, 0] = y0[i, 1] = prm.init
        s[i] = cs.s
        iw_rate[i] = cs.iw_rate
        inv_cap[i] = 1.0 / (prm.kappa * prm.D * cs.L)
        rho[i] = prm.iw_speed
        wd[i] = prm.decay_rates()
        t_out[i] = t
    return y0, cases, icl, iwl, bin_size, bin_p, s, iw_rate, inv_cap, rho, wd, noise2, t_out


def _check_times(t_out: np.ndarray) -> np.ndarray:
    t_out = np.asarray(t_out, dtype=np.float64)
    if t_out.ndim != 1 or t_out.size < 2 or not np.all(np.isfinite(t_out)) or np.any(np.diff(t_out) <= 0):
        raise ValueError("t_out must be a 1-d array of at least 2 finite, strictly increasing times")
    if t_out[0] < 0:
        raise ValueError(f"t_out[0] = {t_out[0]!r} is out of range: flow times must be >= 0")
    return t_out


def integrate_grid(
    cells: list[tuple[Cases, ReducedParams, np.ndarray]],
    *,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    max_steps: int = 200_000,
    with_loss: bool = True,
) -> list[Trajectory]:
    """Integrate many cells at once (Numba ``prange`` over cells).

    Args:
        cells: (cases, params, t_out) per cell; every t_out has the same length E (times may differ).
        rtol, atol: the adaptive step's relative and absolute error targets per state variable.
        max_steps: per-cell cap on attempted steps (outputs past the cap are NaN).
        with_loss: record the training loss (one more pass over the cases per output time; NaN when False).

    Returns:
        One :class:`Trajectory` per cell.
    """
    if not cells:
        raise ValueError("cells is empty: give at least one (cases, params, t_out)")
    cells = [(cs, prm, _check_times(t)) for cs, prm, t in cells]
    y0, cases, icl, iwl, bin_size, bin_p, s, iw_rate, inv_cap, rho, wd, noise2, t_out = _pack(cells)
    n, C = cases.shape[:2]
    G = bin_size.shape[1]
    data = np.concatenate([cases, icl, iwl], axis=1)
    # in the order P_S ... P_WITH_LOSS
    head = [s, iw_rate, inv_cap, rho, wd[:, 0], wd[:, 1], noise2]
    head += [np.full(n, G), np.full(n, C), np.full(n, icl.shape[1]), np.full(n, float(with_loss))]
    prm = np.concatenate([np.stack(head, axis=1), bin_size, bin_p], axis=1)
    chance = 1.0 / (1.0 + icl[:, 0, CNO] + icl[:, 0, CMM])  # one correct label among 1 + n_o + M
    P = y0.shape[1]
    res, ys, tstar, *_ = integrate_cells(
        "v1",
        y0,
        data,
        prm,
        chance,
        t_out,
        6,
        scratch=2 * P - 3,
        rtol=rtol,
        atol=atol,
        max_steps=max_steps,
    )
    out = []
    for i, (cs, _, t) in enumerate(cells):
        G = cs.bin_size.shape[0]
        out.append(
            Trajectory(
                t=t,
                icl=res[i, :, 0],
                iwl=res[i, :, 1],
                loss=res[i, :, 2],
                state=ys[i, :, : 3 + G],
                L=cs.L,
                transition=None if math.isnan(tstar[i]) else float(tstar[i]),
            )
        )
    return out


def integrate(cases: Cases, params: ReducedParams, t_out: np.ndarray, **kwargs) -> Trajectory:
    """Integrate one cell; see :func:`integrate_grid`."""
    return integrate_grid([(cases, params, t_out)], **kwargs)[0]


if __name__ == "__main__":
    write_kernel()
