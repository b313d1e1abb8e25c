"""The published anchors' flows as Numba kernels (:mod:`theory.anchors`): what the one integrator
(:mod:`theory.ode`) runs as its models ``singh`` and ``zucchet``, apart from the derivations and the integration
API so that the integrator imports the flows and the anchors import the integrator, with no circle between them.

Each toy's generated kernel (``theory/_singh_kernel.py``, ``theory/_zucchet_kernel.py``) returns its flow and its
order parameter at a state; :func:`singh_drift` adds the clamping of factors. Neither toy has case tables: the
integrator's ``data`` argument is unused.
"""

from __future__ import annotations

import numba as nb

from zipfhead.theory._singh_kernel import singh_terms
from zipfhead.theory._zucchet_kernel import zucchet_terms

__all__ = ["singh_drift", "singh_track", "zucchet_drift", "zucchet_track"]


@nb.njit(cache=True)
def singh_drift(y, data, prm, out):  # pragma: no cover - compiled
    """d(state)/dt of the three-factor toy, state (x_a, x_b, x_c, r_a, r_b, r_c), prm = (n, free_a, free_b,
    free_c): a clamped factor (free = 0) keeps its (x, r)."""
    v = singh_terms(y[0], y[1], y[2], y[3], y[4], y[5], prm[0])
    for j in range(6):
        out[j] = v[j] * prm[1 + j % 3]


@nb.njit(cache=True)
def singh_track(y, data, prm):  # pragma: no cover - compiled
    """The order parameter P = x_a x_b x_c."""
    return singh_terms(y[0], y[1], y[2], y[3], y[4], y[5], prm[0])[6]


@nb.njit(cache=True)
def zucchet_drift(y, data, prm, out):  # pragma: no cover - compiled
    """d(kappa, w)/dt of the single-location regression, prm = (T, d, B, g)."""
    u = zucchet_terms(y[0], y[1], prm[0], prm[1], prm[2], prm[3])
    out[0] = u[0]
    out[1] = u[1]


@nb.njit(cache=True)
def zucchet_track(y, data, prm):  # pragma: no cover - compiled
    """The attention mass s on the relevant tokens."""
    return zucchet_terms(y[0], y[1], prm[0], prm[1], prm[2], prm[3])[2]
