"""Reduced model v2: the induction circuit, memorisation, and the item features they share.

What the toys showed (``proofs_notebooks/04_repetition.py``, ``zipfhead experiment repetition``): the transition
is fastest just above the memorisation edge and slows as K grows (K^0.4 above K = 1024); with novel classes only
(p_C = 1), or with the known classes' labels redrawn for every sequence, no head forms in 3000 steps. What
repetition teaches is the fixed class -> label map, and its trace in the toy is the scale of the item rows of the
embedding: it grows (x5 by step 600 at K = 512, x1.3 at K = 16384) only when the labels can be learned in
weights, and both the in-weights read-out and the induction match multiply it. v1 (:mod:`theory.reduced`) lets
memorisation only compete; here it also cooperates.

State: previous-token strength ``a``, match strength ``b``, output (copy) strength ``c``, item-feature gain ``e``
(the item embedding's scale, e(0) = 1), and an in-weights read-out ``w_g`` per Zipf rank bin. Fitted to the
toys, the leak (below) first pulls e down, and memorisation rebuilds it, sooner for smaller K; the head forms as
it does. (The toys' item rows grow from the start: v2 gets the order and timing of the head right, not the early
shape of the feature trajectory.) A training case is
as in v1 (the query's class occurs ``m`` times among ``n`` context slots; ``n_o`` other labels present ``r`` times
each; ``M`` labels absent) plus ``j``: other slots that carry the query's label by collision (classes share
labels k mod L; in i.i.d. contexts this happens about (N - m) / L times). The logits are

    x  = s a b e^2                                  the match (item features on both sides of the query-key product)
    Z  = m e^x + n - m
    z* = c (m e^x + j) / Z + e w - q                the query's label: copied mass, in-weights logit, interference
    z_o = c r / Z                                   each other label present
    0                                               each absent label

and the case loss is  l = log(1 + n_o e^(z_o - z*) + M e^(-z*)).  The interference ``q`` replaces v1's
second-order cost: a linear read-out of K random class means in D dimensions leaks every memorised class into
every label's logit, Gaussian noise of variance sigma^2 = e^2 sum_k w_k^2 / (kappa D L s) per label. By Jensen,
E_xi log(1 + sum_l e^(Delta_l + xi_l - xi*)) <= log(1 + sum_l e^(Delta_l + sigma^2)): the noise costs at most a
margin of sigma^2 on the correct label, ``q = sigma^2``. The bound does not vanish when predictions are
confident (v1's curvature-weighted term did, and memorisation then ran away); it grows with the memorised norm,
so memorisation saturates at a finite capacity.

Adam's noise on the circuit comes from the data (the flow, :func:`theory._reduced_v2_flow.drift`): one sample's
gradient on a or b is its case's sensitivity to the match, dl/dx, times random item activations, so its variance is
spread x E_case[(dl/dx)^2] (E_case[(dl/dc)^2] for c), while the mean keeps the gain of the learned directions,
E_case[dl/dx] s b e^2. The speed is then free of the drive's size (B cancels, p_B enters as the square root of the
fraction of sequences that carry the signal) and keeps the item gain e^2: the toys' K clock without v1's burstiness
clock (notebook 04, sections 6-9; notebook 02, section 11).

The heads are shared with memorisation (notebook 04, sections 11-12): where the in-weights proxy is at least the
copy plateau B / N when the circuit would escape, memorisation holds the heads and no induction head forms
(:func:`integrate_v2`'s recruitment rule; the toys' heads then attend to the query's own item).

The gradient flow (or Adam's normalised flow, as in v1) is derived with sympy (:data:`CASE_LOSS`), compiled to a
Numba kernel (``python -m zipfhead.theory.reduced_v2`` regenerates ``theory/_reduced_v2_kernel.py``; a test checks it is
current) and integrated by :mod:`theory.ode`. Derivation and checks: ``proofs_notebooks/02_induction_reduced_model.py``
section 10.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import sympy as sp

from zipfhead.theory._codegen import kernel_module, write_module
from zipfhead.theory._reduced_v2_flow import (
    CBIN,
    CM,
    CN,
    COLUMNS,
    HEADER,
    N_STATE,
    W,
)
from zipfhead.theory._validate import check_int, check_real
from zipfhead.theory.distributions import ClassificationTask, Zipf
from zipfhead.theory.ode import integrate_cells
from zipfhead.theory.reduced import ReducedParams

__all__ = [
    "CASE_LOSS",
    "CASE_SYMBOLS",
    "COLUMNS",
    "CasesV2",
    "ParamsV2",
    "TrajectoryV2",
    "cases_v2",
    "integrate_v2",
    "kernel_source",
]

# --------------------------------------------------------------------------------------------------- derivation
a_, b_, c_, e_, w_, q_ = sp.symbols("a b c e w q", real=True)
s_, m_, j_, n_, r_, no_, M_ = sp.symbols("s m j n r n_o M", nonnegative=True)
#: the state variables, the interference margin and the case parameters, in the kernel's argument order
CASE_SYMBOLS = (a_, b_, c_, e_, w_, q_, s_, m_, j_, n_, r_, no_, M_)
_x = s_ * a_ * b_ * e_**2
_Z = m_ * sp.exp(_x) + n_ - m_
_z_star = c_ * (m_ * sp.exp(_x) + j_) / _Z + e_ * w_ - q_
_z_other = c_ * r_ / _Z
#: one case's cross-entropy as log(1 + ...), so that the compiled kernel never overflows for large logits
CASE_LOSS = sp.log(1 + no_ * sp.exp(_z_other - _z_star) + M_ * sp.exp(-_z_star))
_GRADIENT_OF = (a_, b_, c_, e_, w_, q_)
#: the match x as a free symbol: the case's sensitivity to the match, dl/dx, sets the circuit's Adam noise
x_ = sp.Symbol("x", real=True)
CASE_LOSS_DX = sp.diff(CASE_LOSS.subs(_x, x_), x_).subs(x_, _x)

KERNEL_MODULE = Path(__file__).with_name("_reduced_v2_kernel.py")


def kernel_source() -> str:
    """Source of ``case_terms(a, b, c, e, w, q, s, m, j, n, r, n_o, M)`` -> (loss, dl/da, dl/db, dl/dc, dl/de,
    dl/dw, dl/dq, dl/dx), derived with sympy, common subexpressions shared (x = s a b e^2, the match)."""
    exprs = [CASE_LOSS] + [sp.diff(CASE_LOSS, v) for v in _GRADIENT_OF] + [CASE_LOSS_DX]
    return kernel_module("python -m zipfhead.theory.reduced_v2", "CASE_LOSS", "case_terms", exprs, CASE_SYMBOLS)


def write_kernel() -> None:
    """Regenerate ``theory/_reduced_v2_kernel.py`` (write, then rename)."""
    write_module(KERNEL_MODULE, kernel_source())


# --------------------------------------------------------------------------------------------------- data cases


@dataclass(frozen=True)
class CasesV2:
    """The expectation over the data as a finite sum of cases (columns :data:`COLUMNS`), and the evaluation cases.

    ``train`` (C, 8): the training mixture, weights summing to 1; ``bin`` is the in-weights bin of the query's
    class, -1 where no read-out can predict it (novel classes, labels redrawn per sequence, token outputs).
    ``icl`` (novel bursty sequences) and ``iwl`` (known classes absent from an i.i.d. context) are evaluation
    tables with the same columns. ``bin_size`` (G,) and ``bin_mass`` (G,) describe the rank bins; ``s`` is the
    same-class item overlap, ``L`` the number of labels.
    """

    train: np.ndarray
    icl: np.ndarray
    iwl: np.ndarray
    bin_size: np.ndarray
    bin_mass: np.ndarray
    s: float
    L: int


def _binomial(N: int, p: float, tail: float) -> tuple[np.ndarray, np.ndarray]:
    """(counts, pmf) of Binomial(N, p), cut where the upper tail falls below ``tail`` (the cut mass goes to the
    last kept count)."""
    k = np.arange(N + 1, dtype=np.float64)
    if p <= 0.0 or p >= 1.0:
        pmf = (k == round(N * min(max(p, 0.0), 1.0))) * 1.0
    else:
        logc = np.array([math.lgamma(N + 1) - math.lgamma(i + 1) - math.lgamma(N - i + 1) for i in range(N + 1)])
        pmf = np.exp(logc + k * math.log(p) + (N - k) * math.log1p(-p))
    upper = np.cumsum(pmf[::-1])[::-1]
    cut = max(int(np.flatnonzero(upper >= tail)[-1]), 0) if (upper >= tail).any() else 0
    kept = pmf[: cut + 1].copy()
    kept[cut] += pmf[cut + 1 :].sum()
    return k[: cut + 1], kept


def _others(n_slots: float, L: int) -> tuple[float, float, float]:
    """(n_o, r, M) for ``n_slots`` context slots whose labels are uniform over the L - 1 labels other than the
    query's: the expected number of distinct labels, their mean multiplicity, and the labels left absent."""
    if n_slots <= 0:
        return 0.0, 1.0, L - 1.0
    n_o = (L - 1.0) * (1.0 - (1.0 - 1.0 / (L - 1.0)) ** n_slots) if L > 1 else 0.0
    return n_o, n_slots / n_o, L - 1.0 - n_o


@lru_cache(maxsize=256)
def _iid_rows(K: int, alpha: float, q: float, N: int, L: int, max_bins: int, tail: float, query_absent: bool):
    """i.i.d.-context cases per bin: weight = bin mass x P(m) x P(j); (rows, 8) with bin column g."""
    sizes, masses = Zipf(K, alpha, q).rank_bins(max_bins)
    rows = []
    for g, mass in enumerate(masses):
        p = min(mass / sizes[g], 1.0)
        ms, pm = (np.zeros(1), np.ones(1)) if query_absent else _binomial(N, p, tail)
        for m, wm in zip(ms, pm, strict=True):
            js, pj = _binomial(int(N - m), 1.0 / L, tail)
            for j, wj in zip(js, pj, strict=True):
                n_o, r, M = _others(N - m - j, L)
                rows.append((mass * wm * wj, m, j, N, r, n_o, M, g))
    return np.array(rows, dtype=np.float64)


def cases_v2(task: ClassificationTask, *, max_bins: int = 12, tail: float = 1e-4) -> CasesV2:
    """The cases of the in-context classification mixture (symbols: :mod:`theory.distributions`).

    * bursty known sequences ((1 - p_C) p_B): m = B, j = 0, r = B, n_o = N / B - 1, per rank bin;
    * i.i.d. known sequences ((1 - p_C)(1 - p_B)): m ~ Binomial(N, p) for a class of probability p, and of the
      other N - m slots j ~ Binomial(N - m, 1 / L) carry the query's label by collision; the rest carry labels
      uniform over the other L - 1 (n_o, r: their expected distinct count and multiplicity);
    * novel sequences (p_C): bursty, bin -1.

    With ``label_map = per_sequence`` no known class has a learnable label: every bin is -1.
    """
    if not isinstance(task, ClassificationTask):
        raise ValueError(f"task = {task!r} is not allowed: task must be a ClassificationTask")
    check_int("max_bins", max_bins, 1)
    check_real("tail", tail, 0.0, 0.5, low_open=True)
    K, N, B, L = task.K, task.N, task.B, task.L
    sizes, masses = Zipf(K, task.alpha, task.q).rank_bins(max_bins)
    G = masses.shape[0]
    known = 1.0 - task.p_C
    n_o = min(N / B - 1.0, L - 1.0)
    M = L - 1.0 - n_o
    parts = []
    if known * task.p_B > 0:
        bursty = np.zeros((G, 8))
        bursty[:] = [0.0, B, 0.0, N, B, n_o, M, 0.0]
        bursty[:, W] = known * task.p_B * masses
        bursty[:, CBIN] = np.arange(G)
        parts.append(bursty)
    if known * (1 - task.p_B) > 0:
        iid = _iid_rows(K, task.alpha, task.q, N, L, max_bins, tail, False).copy()
        iid[:, W] *= known * (1 - task.p_B)
        parts.append(iid)
    if task.p_C > 0:
        parts.append(np.array([[task.p_C, B, 0.0, N, B, n_o, M, -1.0]]))
    train = np.concatenate(parts)
    if task.label_map == "per_sequence":
        train[:, CBIN] = -1.0
    icl = np.array([[1.0, B, 0.0, N, B, n_o, M, -1.0]])
    iwl = _iid_rows(K, task.alpha, task.q, N, L, max_bins, tail, True).copy()
    return CasesV2(train=train, icl=icl, iwl=iwl, bin_size=sizes, bin_mass=masses, s=1 / (1 + task.eps**2), L=L)


# --------------------------------------------------------------------------------------------------- the flow
@dataclass(frozen=True)
class ParamsV2(ReducedParams):
    """:class:`theory.reduced.ReducedParams` plus the leak of the untrained read-out.

    Attributes:
        leak: the logit-noise variance per unit e^2 that a random (untrained) item read-out puts on every label
            (an initialised embedding and unembedding map items to random logits): q = e^2 (sum_k w_k^2 /
            (kappa D L s) + leak). With nothing to memorise, it is what the item features are pushed down by
            (the toys' item rows shrink at p_C = 1). >= 0.
        spread: the circuit's Adam noise per unit of the data's sensitivity (see
            :func:`theory._reduced_v2_flow.drift`): the variance of one sample's gradient on a circuit strength is
            spread x E_case[(dl/dx)^2] for a and b, spread x E_case[(dl/dc)^2] for c. > 0.
    """

    leak: float = 0.05
    spread: float = 30.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_real("leak", self.leak, 0.0, 1e3)
        check_real("spread", self.spread, 0.0, 1e9, low_open=True)


@dataclass(frozen=True)
class TrajectoryV2:
    """One integrated cell on its output times: ``t`` (T,) flow times; ``icl``, ``iwl`` (T,) accuracy proxies
    (probability of the correct label on novel bursty sequences, and on known classes absent from the context);
    ``loss`` (T,) the training loss (nats); ``state`` (T, 4 + G) = (a, b, c, e, w_1..w_G); ``q`` (T,) the
    interference margin; ``transition``: the flow time of the one rule's crossing of ``icl``, or None. T is the
    E requested times, or more where memorisation recruited the heads (:func:`integrate_v2`)."""

    t: np.ndarray
    icl: np.ndarray
    iwl: np.ndarray
    loss: np.ndarray
    state: np.ndarray
    q: np.ndarray
    L: int
    transition: float | None


def pack(items: list[tuple[CasesV2, ReducedParams, np.ndarray]]):
    """The integrator's padded arrays (y0, data, prm, chance, t_out) for cells (cases, params, t_out)."""
    n = len(items)
    G = max(max(cs.bin_size.shape[0], 1) for cs, _, _ in items)
    R = max(cs.train.shape[0] + cs.icl.shape[0] + max(cs.iwl.shape[0], 1) for cs, _, _ in items)
    E = items[0][2].shape[0]
    y0 = np.zeros((n, N_STATE + G))
    data = np.zeros((n, R, len(COLUMNS)))
    prm = np.zeros((n, HEADER + 2 * G))
    chance = np.zeros(n)
    t_out = np.zeros((n, E))
    for i, (cs, p, t) in enumerate(items):
        if t.shape != (E,):
            raise ValueError(f"t_out has shape {t.shape} in cell {i}: every cell needs the same number of times {E}")
        tables = [cs.train, cs.icl, cs.iwl]
        stacked = np.concatenate(tables)
        data[i, : stacked.shape[0]] = stacked
        g = cs.bin_size.shape[0]
        wd0, wd1 = p.decay_rates()
        prm[i, :HEADER] = [
            cs.s,
            1.0 / (p.kappa * p.D * cs.L * cs.s),
            p.iw_speed,
            wd0,
            wd1,
            1.0 / p.batch if p.optimizer == "adam" else 0.0,
            G,
            cs.train.shape[0],
            cs.icl.shape[0],
            p.leak if isinstance(p, ParamsV2) else 0.0,
            p.spread if isinstance(p, ParamsV2) else ParamsV2.spread,
        ]
        prm[i, HEADER : HEADER + g] = cs.bin_size
        prm[i, HEADER + G : HEADER + G + g] = cs.bin_mass / cs.bin_size
        y0[i, :3] = [p.init, p.init, 0.0]
        y0[i, 3] = 1.0
        chance[i] = 1.0 / cs.L
        t_out[i] = t
    return y0, data, prm, chance, t_out


def copy_plateau(cases: CasesV2) -> float:
    """B / N: the in-context accuracy of a head that copies a label of the context without matching (the one-layer
    toys' plateau), read from the novel bursty evaluation case (m = B slots of the query's label among n = N)."""
    return float(cases.icl[0, CM] / cases.icl[0, CN])


def recruitment_index(iwl: np.ndarray, t: np.ndarray, plateau: float, transition: float | None) -> int | None:
    """Whether memorisation holds the heads when the circuit would escape: None where the head never forms
    (``transition`` None) or the in-weights proxy ``iwl`` (E,), interpolated at the transition (flow time; ``t``
    (E,) the output times), is below the copy plateau; else the last output index at or before the transition,
    the state from which the recruited model restarts (see :func:`integrate_v2`)."""
    if transition is None:
        return None
    ok = np.isfinite(iwl)
    if not ok.any() or np.interp(transition, t[ok], iwl[ok]) < plateau:
        return None
    return int(np.searchsorted(t, transition, side="right")) - 1


def _restart_recruited(parts: list, taken: dict[int, int], ys, data, prm, chance, t_out, kw) -> list:
    """Restart the recruited cells (index -> output index ``taken``) from their state there with a = b = 0 and
    integrate the rest of each horizon on E times counted from the restart; their parts become the first
    integration up to the restart, then the second (see :func:`integrate_v2`)."""
    idx = sorted(taken)
    y1 = ys[idx, [taken[i] for i in idx]].copy()
    y1[:, 0] = y1[:, 1] = 0.0
    first, last = t_out[idx, :1], t_out[idx, -1:]
    restart = t_out[idx, [taken[i] for i in idx]][:, None]
    t1 = (t_out[idx] - first) * (last - restart) / (last - first)
    rec1, ys1, tstar1, *_ = integrate_cells("v2", y1, data[idx], prm[idx], chance[idx], t1, 5, **kw)
    parts = list(parts)
    for k, i in enumerate(idx):
        j, t0 = taken[i], t_out[i, taken[i]]
        t, rec, y, _ = parts[i]
        after = None if math.isnan(tstar1[k]) else t0 + float(tstar1[k])
        parts[i] = (
            np.concatenate([t[:j], t0 + t1[k]]),
            np.concatenate([rec[:j], rec1[k]]),
            np.concatenate([y[:j], ys1[k]]),
            after,
        )
    return parts


def integrate_v2(
    cells: list[tuple[CasesV2, ReducedParams, np.ndarray]],
    *,
    rtol: float = 1e-5,
    max_steps: int = 200_000,
    recruitment: bool = True,
) -> list[TrajectoryV2]:
    """Integrate many cells at once (``prange`` over cells); ``cells`` are (cases, params, t_out), every t_out of
    the same length E, each strictly increasing from >= 0.

    Recruitment (``recruitment=True``; ``proofs_notebooks/04_repetition.py``, sections 11-12): the toys' heads are
    shared with memorisation. Where, when the circuit would escape, the in-weights read-out already predicts the
    known classes better than a copying head would (the in-weights proxy at the transition is at least the copy
    plateau B / N), memorisation holds the heads (the toys' layer-2 head attends to the query itself, or the
    layer-1 head to its own token) and no induction head forms. The model then restarts from its last output
    state at or before that time with the previous-token and match strengths at 0 (a = b = 0 is a fixed point:
    the match is gone), the copy and memorisation free. Such a cell's trajectory holds the first integration up to
    the restart and the second after it, on E more times spread over the rest of the horizon."""
    if not cells:
        raise ValueError("cells is empty: give at least one (cases, params, t_out)")
    for _, _, t in cells:
        t = np.asarray(t, dtype=np.float64)
        if t.ndim != 1 or t.size < 2 or not np.all(np.isfinite(t)) or np.any(np.diff(t) <= 0) or t[0] < 0:
            raise ValueError("t_out must be a 1-d array of at least 2 finite, strictly increasing times >= 0")
    y0, data, prm, chance, t_out = pack([(cs, p, np.asarray(t, dtype=np.float64)) for cs, p, t in cells])
    scratch = y0.shape[1] + 2
    rec, ys, tstar, *_ = integrate_cells(
        "v2", y0, data, prm, chance, t_out, 5, rtol=rtol, max_steps=max_steps, scratch=scratch
    )
    parts = [(t_out[i], rec[i], ys[i], None if math.isnan(tstar[i]) else float(tstar[i])) for i in range(len(cells))]
    if recruitment:
        taken = {}
        for i, (cs, _, _) in enumerate(cells):
            j = recruitment_index(rec[i, :, 1], t_out[i], copy_plateau(cs), parts[i][3])
            if j is not None and j + 1 < t_out.shape[1]:
                taken[i] = j
        if taken:
            kw = {"rtol": rtol, "max_steps": max_steps, "scratch": scratch}
            parts = _restart_recruited(parts, taken, ys, data, prm, chance, t_out, kw)
    out = []
    for (cs, _, _), (t, r, y, transition) in zip(cells, parts, strict=True):
        G = cs.bin_size.shape[0]
        out.append(
            TrajectoryV2(
                t=t,
                icl=r[:, 0],
                iwl=r[:, 1],
                loss=r[:, 2],
                state=y[:, : N_STATE + G],
                q=r[:, 4],
                L=cs.L,
                transition=transition,
            )
        )
    return out


if __name__ == "__main__":
    write_kernel()
