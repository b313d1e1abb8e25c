"""A counter-based random generator for the Numba samplers (SplitMix64).

Every sequence i of a batch drawn with seed s gets its own stream, ``stream(s, i)``, so a batch's content is a
pure function of (seed, sequence index): identical for any number of threads and for a batch split into
chunks, which is what makes the parallel samplers reproducible. ``tests/naive.py`` holds a plain-Python twin.

A generator state is a uint64; each draw returns ``(new_state, value)``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_TWO_M53 = 1.0 / 9007199254740992.0  # 2^-53


@njit(inline="always")
def mix64(z: np.uint64) -> np.uint64:
    """SplitMix64's finaliser: a bijective avalanche of 64 bits."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(inline="always")
def stream(seed: np.uint64, index: np.uint64) -> np.uint64:
    """Initial state of stream ``index`` under ``seed``."""
    return mix64(mix64(seed + GOLDEN) ^ (index * GOLDEN))


@njit(inline="always")
def next_u64(state: np.uint64) -> tuple[np.uint64, np.uint64]:
    """One 64-bit draw."""
    state = state + GOLDEN
    return state, mix64(state)


@njit(inline="always")
def uniform(state: np.uint64) -> tuple[np.uint64, float]:
    """A uniform float64 in [0, 1) with 53 random bits."""
    state, z = next_u64(state)
    return state, float(z >> _S11) * _TWO_M53


@njit(inline="always")
def randint(state: np.uint64, n: int) -> tuple[np.uint64, int]:
    """A uniform integer in [0, n) (bias below 2^-53 * n: negligible for the n used here)."""
    state, u = uniform(state)
    return state, min(int(u * n), n - 1)


def inverse_cdf_table(cdf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cdf, guide): a CDF (K,) float64 ending at 1 and its guide table (K,) int64 for :func:`categorical`.

    guide[g] is the first index k with cdf[k] > g / K, so a draw u in [g/K, (g+1)/K) needs only a short forward
    scan from guide[g] (about two comparisons on average) instead of a binary search.
    """
    cdf = np.ascontiguousarray(cdf, dtype=np.float64)
    K = cdf.shape[0]
    guide = np.searchsorted(cdf, np.arange(K, dtype=np.float64) / K, side="right").astype(np.int64)
    return cdf, np.minimum(guide, K - 1)


@njit(inline="always")
def categorical(state: np.uint64, table: tuple[np.ndarray, np.ndarray]) -> tuple[np.uint64, int]:
    """Index k (0-based) with probability cdf[k] - cdf[k-1]: the first k with u < cdf[k] (guide-table search)."""
    cdf, guide = table
    state, u = uniform(state)
    K = cdf.shape[0]
    k = guide[min(int(u * K), K - 1)]
    while u >= cdf[k]:
        k += 1
    return state, k


# --- Ziggurat normals (Marsaglia & Tsang 2000), 128 layers, 52-bit signed draws ------------------------------
# Layer i covers the region under the density f(x) = exp(-x^2/2) between x_(i+1) and x_i; a draw hz lands in
# layer iz = low 7 bits and is accepted at once when |hz| < k[iz] (the rectangle wholly under f), about 99%
# of the time: one 64-bit draw, one multiply and one comparison per normal.
ZIG_R = 3.442619855899  # right edge of the base layer
_ZIG_V = 9.91256303526217e-3  # area of each layer
_ZIG_M = 4503599627370496.0  # 2^52, the range of |hz|


def _ziggurat_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    k = np.zeros(128)
    w = np.zeros(128)
    f = np.zeros(128)
    dn = tn = ZIG_R
    q = _ZIG_V / np.exp(-0.5 * dn * dn)
    k[0] = (dn / q) * _ZIG_M
    k[1] = 0.0
    w[0] = q / _ZIG_M
    w[127] = dn / _ZIG_M
    f[0] = 1.0
    f[127] = np.exp(-0.5 * dn * dn)
    for i in range(126, 0, -1):
        dn = np.sqrt(-2.0 * np.log(_ZIG_V / dn + np.exp(-0.5 * dn * dn)))
        k[i + 1] = (dn / tn) * _ZIG_M
        tn = dn
        f[i] = np.exp(-0.5 * dn * dn)
        w[i] = dn / _ZIG_M
    return k, w, f


ZIG_K, ZIG_W, ZIG_F = _ziggurat_tables()
_LOW7 = np.uint64(127)


@njit(inline="always")
def _signed_draw(state: np.uint64) -> tuple[np.uint64, float, int]:
    """(state, hz, iz): hz uniform on the integers of [-2^52, 2^52) as a float, iz in [0, 128) from other bits."""
    state, z = next_u64(state)
    return state, float(z >> _S11) - _ZIG_M, int(z & _LOW7)


@njit(inline="always")
def normal(state: np.uint64) -> tuple[np.uint64, float]:
    """One standard normal by the ziggurat method."""
    state, hz, iz = _signed_draw(state)
    while True:
        if abs(hz) < ZIG_K[iz]:
            return state, hz * ZIG_W[iz]
        x = hz * ZIG_W[iz]
        if iz == 0:  # the tail beyond R: Marsaglia's exponential rejection
            while True:
                state, u1 = uniform(state)
                state, u2 = uniform(state)
                x = -np.log(1.0 - u1) / ZIG_R
                y = -np.log(1.0 - u2)
                if y + y >= x * x:
                    break
            return state, (ZIG_R + x) if hz > 0 else -(ZIG_R + x)
        state, u = uniform(state)
        if ZIG_F[iz] + u * (ZIG_F[iz - 1] - ZIG_F[iz]) < np.exp(-0.5 * x * x):
            return state, x
        state, hz, iz = _signed_draw(state)


@njit(inline="always")
def gamma_log(state: np.uint64, a: float) -> tuple[np.uint64, float]:
    """log of one Gamma(a, 1) draw, a > 0 (Marsaglia & Tsang 2000; for a < 1, Gamma(a + 1) U^(1/a), in logs so
    that a tiny a cannot underflow to 0)."""
    boost = 0.0
    if a < 1.0:
        state, u = uniform(state)
        boost = np.log(1.0 - u) / a
        a = a + 1.0
    d = a - 1.0 / 3.0
    c = 1.0 / np.sqrt(9.0 * d)
    while True:
        state, x = normal(state)
        v = 1.0 + c * x
        if v <= 0.0:
            continue
        v = v * v * v
        state, u = uniform(state)
        if np.log(1.0 - u) < 0.5 * x * x + d - d * v + d * np.log(v):
            return state, boost + np.log(d * v)
