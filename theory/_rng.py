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
TWO_PI = 6.283185307179586


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


@njit(inline="always")
def normal_pair(state: np.uint64) -> tuple[np.uint64, float, float]:
    """Two independent standard normals (Box-Muller)."""
    state, u1 = uniform(state)
    state, u2 = uniform(state)
    radius = np.sqrt(-2.0 * np.log(1.0 - u1))  # 1 - u1 in (0, 1]: the log is finite
    return state, radius * np.cos(TWO_PI * u2), radius * np.sin(TWO_PI * u2)


@njit(inline="always")
def categorical(state: np.uint64, cdf: np.ndarray) -> tuple[np.uint64, int]:
    """Index k (0-based) with probability cdf[k] - cdf[k-1]: the first k with u < cdf[k] (binary search)."""
    state, u = uniform(state)
    lo = 0
    hi = cdf.shape[0] - 1
    while lo < hi:
        mid = (lo + hi) >> 1
        if u < cdf[mid]:
            hi = mid
        else:
            lo = mid + 1
    return state, lo
