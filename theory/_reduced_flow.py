"""The v1 reduced model's flow as Numba kernels (:mod:`theory.reduced`): what the one integrator
(:mod:`theory.ode`) runs, apart from the model's derivation, case tables and integration API so that the
integrator imports the flow and the model imports the integrator, with no circle between them.

The case table's columns (:data:`COLUMNS`), the generated kernel's outputs, and the parameter layout of
:func:`drift` are defined here; :mod:`theory.reduced` packs its cells into them.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from zipfhead.theory._reduced_kernel import case_terms

__all__ = ["COLUMNS", "HEADER", "drift", "evaluate", "probe", "rhs", "track"]

#: the columns of a case table (v1), in order: the case's weight, the query's label slots m among n context slots,
#: each other label present r times, n_o such labels, M labels absent, and the query class's rank bin (-1: none)
COLUMNS = ("weight", "m", "n", "r", "n_o", "M", "bin")
W, CM, CN, CR, CNO, CMM, CBIN = range(len(COLUMNS))
#: the outputs of the kernel's case_terms, in order: the loss, its gradient on (a, b, c, w), the softmax curvature,
#: and the curvature's gradient on (a, b, c, w)
LOSS, DL_A, DL_B, DL_C, DL_W, CURV, DK_A, DK_B, DK_C, DK_W = range(10)


@nb.njit(cache=True, fastmath=True)
def rhs(y, cases, bin_size, s, iw_rate, inv_cap, rho, wd, out):
    """d(state)/dt into out[:3 + G]; out[3 + G : 3 + 2G] is scratch. wd = (decay of a, b, c; decay of the w's)."""
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
    for i in range(cases.shape[0]):
        weight = cases[i, W]
        if weight == 0.0:
            continue
        g = int(cases[i, CBIN])
        w = y[3 + g] if g >= 0 else 0.0
        row = cases[i]
        terms = case_terms(a, b, c, w, s, row[CM], row[CN], row[CR], row[CNO], row[CMM])
        ga += weight * terms[DL_A]
        gb += weight * terms[DL_B]
        gc += weight * terms[DL_C]
        Q += weight * terms[CURV]
        qa += weight * terms[DK_A]
        qb += weight * terms[DK_B]
        qc += weight * terms[DK_C]
        if g >= 0:
            out[3 + g] += weight * terms[DL_W]
            qw[g] += weight * terms[DK_W]
    # interference cost R = inv_cap / 2 * S * Q, S = sum over classes of the raw read-out norm w^2 / iw_rate
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


@nb.njit(cache=True, fastmath=True)
def evaluate(y, table, s):
    """Weighted mean probability of the correct label and mean loss over a case table."""
    total = 0.0
    prob = 0.0
    loss = 0.0
    for i in range(table.shape[0]):
        weight = table[i, W]
        if weight == 0.0:
            continue
        g = int(table[i, CBIN])
        w = y[3 + g] if g >= 0 else 0.0
        row = table[i]
        ell = case_terms(y[0], y[1], y[2], w, s, row[CM], row[CN], row[CR], row[CNO], row[CMM])[LOSS]
        total += weight
        prob += weight * math.exp(-ell)
        loss += weight * ell
    if total == 0.0:
        return math.nan, math.nan
    return prob / total, loss / total


@nb.njit(cache=True, fastmath=True)
def _record(y, cases, icl, iwl, s, with_loss, out_row):
    out_row[0] = evaluate(y, icl, s)[0]
    out_row[1] = evaluate(y, iwl, s)[0]
    out_row[2] = evaluate(y, cases, s)[1] if with_loss else math.nan
    out_row[3] = y[0]
    out_row[4] = y[1]
    out_row[5] = y[2]


_NO_DECAY = np.zeros(2)  # a compile-time constant inside the kernels


@nb.njit(cache=True, fastmath=True)
def _drift(y, cases, bin_size, bin_p, s, iw_rate, inv_cap, rho, wd, noise2, out):
    """The model's flow: :func:`rhs` (gradient flow) when noise2 == 0, else Adam's normalised flow with noise
    floor noise2 = 1 / batch (see :class:`ReducedParams`)."""
    if noise2 == 0.0:
        rhs(y, cases, bin_size, s, iw_rate, inv_cap, rho, wd, out)
        return
    rhs(y, cases, bin_size, s, iw_rate, inv_cap, 1.0, _NO_DECAY, out)
    for p in range(3):
        d = out[p]
        out[p] = d / math.sqrt(d * d + noise2) - wd[0] * y[p]  # noise2 > 0 here
    for g in range(bin_size.shape[0]):
        d = out[3 + g]
        floor = d * d + noise2 * bin_p[g]
        out[3 + g] = (rho * d / math.sqrt(floor) if floor > 0.0 else 0.0) - wd[1] * y[3 + g]


# v1 in the layout of the generic integrator (theory.ode): data = cases (C, 7) | icl (Ei, 7) | iwl (Ew, 7);
# prm = s, iw_rate, inv_cap, rho, wd_circuit, wd_weights, noise2, G, C, Ei, with_loss, bin_size (G), bin_p (G)
P_S, P_IW_RATE, P_INV_CAP, P_RHO, P_WD, P_NOISE2, P_G, P_C, P_EI, P_WITH_LOSS = 0, 1, 2, 3, 4, 6, 7, 8, 9, 10
HEADER = 11  # then bin_size (G), bin_p (G)


@nb.njit(cache=True, fastmath=True)
def drift(y, data, prm, out):
    """dy/dt into out (:mod:`theory.ode`'s interface)."""
    G, C = int(prm[P_G]), int(prm[P_C])
    bins = prm[HEADER : HEADER + G]
    bin_p = prm[HEADER + G : HEADER + 2 * G]
    wd = prm[P_WD : P_WD + 2]  # circuit, weights
    _drift(y, data[:C], bins, bin_p, prm[P_S], prm[P_IW_RATE], prm[P_INV_CAP], prm[P_RHO], wd, prm[P_NOISE2], out)


@nb.njit(cache=True, fastmath=True)
def track(y, data, prm):
    """The in-context accuracy proxy whose transition :mod:`theory.ode` locates."""
    C, Ei = int(prm[P_C]), int(prm[P_EI])
    return evaluate(y, data[C : C + Ei], prm[P_S])[0]


@nb.njit(cache=True, fastmath=True)
def probe(y, data, prm, row):
    """What is recorded at an output time, into row (:mod:`theory.ode`'s interface)."""
    C, Ei = int(prm[P_C]), int(prm[P_EI])
    _record(y, data[:C], data[C : C + Ei], data[C + Ei :], prm[P_S], prm[P_WITH_LOSS] > 0.0, row)
