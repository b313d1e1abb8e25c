"""The v2 reduced model's flow as Numba kernels (:mod:`theory.reduced_v2`): what the one integrator
(:mod:`theory.ode`) runs, apart from the model's derivation, case tables and integration API so that the
integrator imports the flow and the model imports the integrator, with no circle between them.

The case table's columns (:data:`COLUMNS`) and the parameter layout of :func:`drift` are defined here;
:mod:`theory.reduced_v2` packs its cells into them. The flow's physics (Adam's floors, the interference margin)
is documented in :mod:`theory.reduced_v2` and at :func:`drift`.
"""

from __future__ import annotations

import math

import numba as nb

from zipfhead.theory._reduced_v2_kernel import case_terms

__all__ = ["ADAM_EPS2", "COLUMNS", "HEADER", "N_STATE", "drift", "gradient", "probe", "track"]

#: the columns of a case table, in order
COLUMNS = ("weight", "m", "j", "n", "r", "n_o", "M", "bin")
W, CM, CJ, CN, CR, CNO, CMM, CBIN = range(len(COLUMNS))


# prm layout: s, inv_cap, rho, wd_circuit, wd_weights, noise2, G, n_train, n_icl, leak, spread, then bin_size (G),
# bin_p (G)
S_, INV_CAP, RHO, WD0, WD1, NOISE2, NG, NTRAIN, NICL, LEAK, SPREAD = range(11)
HEADER = 11
N_STATE = 4  # a, b, c, e before the G read-outs
#: Adam's epsilon, squared, in units of the expected loss's gradient. The circuit's noise floor scales with the
#: data's sensitivity, so a saturated loss (gradient and floor both ~0) would still move a strength at Adam's unit
#: speed; this term stops it, as Adam's eps stops a weight whose gradients vanish. Measured: with it at 1e-6, 1e-5
#: or 1e-4 instead, the demo's, reddy2024's and chan2022's scores of notebook 04, section 9 move by at most 0.02,
#: and no predicted phase changes.
ADAM_EPS2 = 1e-12


@nb.njit(cache=True, fastmath=True)
def _interference(y, prm):
    """q = e^2 (inv_cap sum_g size_g w_g^2 + leak): the Jensen margin of the interference noise."""
    G = int(prm[NG])
    total = 0.0
    for g in range(G):
        total += prm[HEADER + g] * y[N_STATE + g] ** 2
    return y[3] ** 2 * (prm[INV_CAP] * total + prm[LEAK])


@nb.njit(cache=True, fastmath=True)
def _case(y, row, prm, q):
    g = int(row[CBIN])
    w = y[N_STATE + g] if g >= 0 else 0.0
    return case_terms(y[0], y[1], y[2], y[3], w, q, prm[S_], row[CM], row[CJ], row[CN], row[CR], row[CNO], row[CMM])


@nb.njit(cache=True, fastmath=True)
def gradient(y, data, prm, out):
    """dL/d(state) of the expected training loss into out[:4 + G] (a, b, c, e, w_1..w_G); the w entries are
    per class (the bin's gradient over its size). Also the data's second moments E_case[(dl/dx)^2] and
    E_case[(dl/dc)^2] into out[4 + G] and out[5 + G] (the circuit's Adam noise, :func:`drift`): ``out`` needs
    6 + G entries."""
    G = int(prm[NG])
    P = N_STATE + G
    for p in range(P + 2):
        out[p] = 0.0
    q = _interference(y, prm)
    dq = 0.0
    for i in range(int(prm[NTRAIN])):
        row = data[i]
        weight = row[W]
        if weight == 0.0:
            continue
        t = _case(y, row, prm, q)
        out[0] += weight * t[1]
        out[1] += weight * t[2]
        out[2] += weight * t[3]
        out[3] += weight * t[4]
        out[P] += weight * t[7] * t[7]
        out[P + 1] += weight * t[3] * t[3]
        g = int(row[CBIN])
        if g >= 0:
            out[N_STATE + g] += weight * t[5]
        dq += weight * t[6]
    # q = e^2 (inv_cap S + leak): dq/de = 2 q / e, dq/dw_g = 2 inv_cap e^2 size_g w_g
    e = y[3]
    out[3] += dq * (2.0 * q / e if e != 0.0 else 0.0)
    for g in range(G):
        size = prm[HEADER + g]
        if size > 0:
            out[N_STATE + g] = out[N_STATE + g] / size + dq * 2.0 * prm[INV_CAP] * e * e * y[N_STATE + g]
        else:
            out[N_STATE + g] = 0.0


@nb.njit(cache=True, fastmath=True)
def drift(y, data, prm, out):
    """The flow: gradient flow (noise2 = 0) or Adam's normalised flow d / sqrt(d^2 + noise floor), with the
    in-weights clock rho on the read-outs and decoupled weight decay (circuit a, b, c; weights e, w).

    Adam's floors, noise2 = 1 / batch: the circuit strengths a, b (c) take noise2 x spread x E_case[(dl/dx)^2]
    (E_case[(dl/dc)^2]): the noise scales with the data's sensitivity to the match (how much loss the bursty
    cases leave, and how many of them there are) and not with the strengths or the item gain, so that B and p_B
    largely cancel from the speed while the gain e^2 of the signal -g = -E[dl/dx] s b e^2 stays; the item gain e
    takes noise2; a read-out, its class's probability x noise2. ``out`` needs 6 + G entries."""
    gradient(y, data, prm, out)
    G = int(prm[NG])
    P = N_STATE + G
    noise2 = prm[NOISE2]
    for p in range(N_STATE):
        d = -out[p]
        if noise2 > 0.0:
            if p < 3:
                sensitivity = out[P] if p < 2 else out[P + 1]
                d = d / math.sqrt(d * d + noise2 * prm[SPREAD] * sensitivity + ADAM_EPS2)
            else:
                d = d / math.sqrt(d * d + noise2)
        out[p] = d - (prm[WD0] if p < 3 else prm[WD1]) * y[p]
    for g in range(G):
        d = -out[N_STATE + g]
        if noise2 > 0.0:
            floor = d * d + noise2 * prm[HEADER + G + g]
            d = d / math.sqrt(floor) if floor > 0.0 else 0.0
        out[N_STATE + g] = prm[RHO] * d - prm[WD1] * y[N_STATE + g]


@nb.njit(cache=True, fastmath=True)
def _accuracy(y, data, prm, start, stop, q):
    """Weighted mean probability of the correct label over rows [start, stop), and the mean loss."""
    total = prob = loss = 0.0
    for i in range(start, stop):
        weight = data[i, W]
        if weight == 0.0:
            continue
        ell = _case(y, data[i], prm, q)[0]
        total += weight
        prob += weight * math.exp(-ell)
        loss += weight * ell
    if total == 0.0:
        return math.nan, math.nan
    return prob / total, loss / total


@nb.njit(cache=True, fastmath=True)
def track(y, data, prm):
    """The in-context accuracy proxy (novel bursty sequences): the curve whose transition is located."""
    n_train = int(prm[NTRAIN])
    return _accuracy(y, data, prm, n_train, n_train + int(prm[NICL]), _interference(y, prm))[0]


@nb.njit(cache=True, fastmath=True)
def probe(y, data, prm, row):
    """(icl accuracy proxy, iwl accuracy proxy, training loss, e, q) at state y."""
    q = _interference(y, prm)
    n_train, n_icl = int(prm[NTRAIN]), int(prm[NICL])
    row[0] = _accuracy(y, data, prm, n_train, n_train + n_icl, q)[0]
    row[1] = _accuracy(y, data, prm, n_train + n_icl, data.shape[0], q)[0]
    row[2] = _accuracy(y, data, prm, 0, n_train, q)[1]
    row[3] = y[3]
    row[4] = q
