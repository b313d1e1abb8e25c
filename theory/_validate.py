"""Parameter checks shared by every config: each error names the parameter, its value and the allowed range."""

from __future__ import annotations

import math
import numbers

__all__ = ["check_choice", "check_int", "check_real", "check_seed"]


def check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    """Return ``value`` as an int if it is an integer in ``[low, high]`` (``high=None``: no upper bound).

    Raises:
        ValueError: naming ``name``, ``value`` and the allowed range.
    """
    allowed = f"an integer in [{low}, {'inf' if high is None else high}]"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} = {value!r} is not allowed: {name} must be {allowed}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} = {value!r} is out of range: {name} must be {allowed}")
    return int(value)


def check_real(
    name: str,
    value: object,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
) -> float:
    """Return ``value`` as a float if it is a finite real in ``[low, high]`` (``(low, high]`` if ``low_open``).

    NaN and infinities are always refused.

    Raises:
        ValueError: naming ``name``, ``value`` and the allowed range.
    """
    left = "(" if low_open else "["
    allowed = f"a finite number in {left}{low}, {high}]"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} = {value!r} is not allowed: {name} must be {allowed}")
    v = float(value)
    if not math.isfinite(v) or v < low or v > high or (low_open and v == low):
        raise ValueError(f"{name} = {value!r} is out of range: {name} must be {allowed}")
    return v


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``.

    Raises:
        ValueError: naming ``name``, ``value`` and the allowed choices.
    """
    if value not in choices:
        raise ValueError(f"{name} = {value!r} is not allowed: {name} must be one of {', '.join(choices)}")
    return str(value)


def check_seed(seed: object) -> int:
    """Return ``seed`` if it is an integer in [0, 2**64 - 1] (the samplers' counter-based generator's key)."""
    return check_int("seed", seed, 0, 2**64 - 1)
