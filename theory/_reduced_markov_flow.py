"""The single-head mixture model's flow as Numba kernels (:mod:`theory.reduced_markov`): what the one integrator
(:mod:`theory.ode`) runs, apart from the model's derivation, case tables and integration API so that the
integrator imports the flow and the model imports the integrator, with no circle between them.

The case table's columns (:data:`COLUMNS`) and the parameter layout of :func:`drift` are defined here;
:mod:`theory.reduced_markov` packs its cells into them.
"""

from __future__ import annotations

import math

import numba as nb

from zipfhead.theory._reduced_markov_kernel import case_terms

__all__ = ["COLUMNS", "HEADER", "drift", "loss_grad", "probe", "track"]

#: the columns of a case table, in order
COLUMNS = ("weight", "C", "R", "N", "M")
W, CC, CR, CN, CM = range(len(COLUMNS))


# prm layout: noise2, n_rows, unigram loss, bigram loss, weight decay
NOISE2, NROWS, LUNI, LBI, WD = range(5)
HEADER = 5


@nb.njit(cache=True, fastmath=True)
def loss_grad(y, data, prm):
    """(L, dL/da, dL/db) at state y."""
    loss = ga = gb = 0.0
    for i in range(int(prm[NROWS])):
        w = data[i, W]
        t = case_terms(y[0], y[1], data[i, CC], data[i, CR], data[i, CN], data[i, CM])
        loss += w * t[0]
        ga += w * t[1]
        gb += w * t[2]
    return loss, ga, gb


@nb.njit(cache=True, fastmath=True)
def drift(y, data, prm, out):
    """Adam's normalised flow d / sqrt(d^2 + noise2) of (a, b) (gradient flow when noise2 = 0), with decoupled
    weight decay."""
    _, ga, gb = loss_grad(y, data, prm)
    noise2 = prm[NOISE2]
    da, db = -ga, -gb
    if noise2 > 0.0:
        da = da / math.sqrt(da * da + noise2)
        db = db / math.sqrt(db * db + noise2)
    out[0] = da - prm[WD] * y[0]
    out[1] = db - prm[WD] * y[1]


@nb.njit(cache=True, fastmath=True)
def track(y, data, prm):
    """The bigram progress (L(0) - L(x)) / (L(0) - L_Bayes): the curve whose transition is located."""
    return (prm[LUNI] - loss_grad(y, data, prm)[0]) / (prm[LUNI] - prm[LBI])


@nb.njit(cache=True, fastmath=True)
def probe(y, data, prm, row):
    """(bigram progress, loss, match logit x) at state y."""
    loss = loss_grad(y, data, prm)[0]
    row[0] = (prm[LUNI] - loss) / (prm[LUNI] - prm[LBI])
    row[1] = loss
    row[2] = y[0] * y[1]
