"""Tails of generalised harmonic numbers by Euler-Maclaurin (float64, vectorised over the exponent).

    T_s(a_lo, a_hi) = sum_{r = a_lo, a_lo + 1, ..., a_hi - 1} r^(-s) = zeta(s, a_lo) - zeta(s, a_hi)

is a difference of Hurwitz zeta functions. Both are replaced by their large-argument expansion
zeta(s, a) ~ a^(1-s)/(s-1) + C(s, a), with C the Euler-Maclaurin correction derived in
:mod:`theory.symbolic` (three Bernoulli terms). The leading difference is written in closed form as
a_lo^(1-s) * Delta * phi((1-s) Delta), Delta = ln(a_hi / a_lo), phi(z) = expm1(z)/z, which is exact and
stable through s = 1 (where it becomes the harmonic-number logarithm ln(a_hi / a_lo)) and for s < 1.

Error: the first omitted Euler-Maclaurin term, |B_8/8! (s)_7| a^(-s-7) at each end (returned as ``bound``);
for a_lo >= 65, as used by :mod:`theory.statistics`, it is below 1e-14 of the sum for 0 <= s <= 16.
The naive twin is mpmath's Hurwitz zeta (tests/unit/test_hurwitz.py).

Every function takes ``log_scale`` so that T_s e^(-log_scale) is returned without overflow (the power sums of
probabilities, T_{m alpha} / Z^m, need it).
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from zipfhead.theory import symbolic as sym

__all__ = ["tail_log_power_sum", "tail_power_sum"]

# C(s, a) * a^s and (dC/ds)(s, a) * a^s: polynomials in s and 1/a (and ln a), lambdified once.
_C = sp.lambdify((sym.s, sym.a), sp.expand(sym.em_correction() * sym.a**sym.s), modules="numpy")
_dC = sp.lambdify((sym.s, sym.a), sp.expand(sym.em_correction_ds() * sym.a**sym.s), modules="numpy")
_NEXT = sp.lambdify((sym.s, sym.a), sp.expand(sym.em_next_term * sym.a**sym.s), modules="numpy")


def _phi(z: np.ndarray) -> np.ndarray:
    """expm1(z)/z, equal to 1 at z = 0."""
    z = np.asarray(z, dtype=np.float64)
    small = np.abs(z) < 1e-8
    safe = np.where(small, 1.0, z)
    return np.where(small, 1.0 + z / 2, np.expm1(safe) / safe)


_DPHI_SERIES = np.array([n / float(sp.factorial(n + 1)) for n in range(1, 30)])  # phi'(z) = sum n z^(n-1)/(n+1)!


def _dphi(z: np.ndarray) -> np.ndarray:
    """phi'(z) = (e^z (z - 1) + 1) / z^2; its Taylor series where that formula cancels (|z| < 1)."""
    z = np.asarray(z, dtype=np.float64)
    small = np.abs(z) < 1.0
    zs = np.where(small, z, 0.0)
    series = np.polynomial.polynomial.polyval(zs, _DPHI_SERIES)
    zl = np.where(small, 2.0, z)
    with np.errstate(over="ignore"):
        direct = (np.exp(zl) * (zl - 1.0) + 1.0) / zl**2
    return np.where(small, series, direct)


def _ends(s, a_lo, a_hi, log_scale):
    s = np.asarray(s, dtype=np.float64)
    log_scale = np.broadcast_to(np.asarray(log_scale, dtype=np.float64), s.shape)
    la, lb = np.log(a_lo), np.log(a_hi)
    w_lo = np.exp(-s * la - log_scale)  # a_lo^-s e^-log_scale (may underflow to 0: then negligible)
    w_hi = np.exp(-s * lb - log_scale)
    return s, la, lb, w_lo, w_hi


def tail_power_sum(
    s: np.ndarray | float, a_lo: float, a_hi: float, log_scale: np.ndarray | float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """sum_{r = a_lo}^{a_hi - 1} r^(-s) * exp(-log_scale), for each s (step 1 in r).

    Args:
        s: exponents, any shape, s >= -1.
        a_lo, a_hi: first term's argument and one past the last (a_hi - a_lo a non-negative integer), a_lo > 0.
        log_scale: broadcast with ``s``.

    Returns:
        (value, bound), both shaped like ``s``: the sum and a bound on its Euler-Maclaurin truncation error.
    """
    s, _, _, w_lo, w_hi = _ends(s, a_lo, a_hi, log_scale)
    if a_hi == a_lo:
        zero = np.zeros_like(s)
        return zero, zero
    delta = np.log1p((a_hi - a_lo) / a_lo)  # ln(a_hi / a_lo) without the cancellation of lb - la
    lead = w_lo * a_lo * delta * _phi((1.0 - s) * delta)
    value = lead + w_lo * _C(s, a_lo) - w_hi * _C(s, a_hi)
    bound = np.abs(w_lo * _NEXT(s, a_lo)) + np.abs(w_hi * _NEXT(s, a_hi))
    return value, bound


def tail_log_power_sum(
    s: np.ndarray | float, a_lo: float, a_hi: float, log_scale: np.ndarray | float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """sum_{r = a_lo}^{a_hi - 1} r^(-s) ln r * exp(-log_scale)  (= -d/ds of :func:`tail_power_sum`).

    Returns:
        (value, bound) as in :func:`tail_power_sum`; the bound is that of the differentiated expansion
        (the omitted term times ln a_hi, a safe over-estimate).
    """
    s, la, lb, w_lo, w_hi = _ends(s, a_lo, a_hi, log_scale)
    if a_hi == a_lo:
        zero = np.zeros_like(s)
        return zero, zero
    delta = np.log1p((a_hi - a_lo) / a_lo)  # ln(a_hi / a_lo) without the cancellation of lb - la
    u = 1.0 - s
    # d/du [a_lo^u Delta phi(u Delta)] with a_lo^u = a_lo * a_lo^-s.
    lead = w_lo * a_lo * delta * (la * _phi(u * delta) + delta * _dphi(u * delta))
    value = lead - w_lo * _dC(s, a_lo) + w_hi * _dC(s, a_hi)
    bound = (np.abs(w_lo * _NEXT(s, a_lo)) + np.abs(w_hi * _NEXT(s, a_hi))) * (1.0 + lb)
    return value, bound
