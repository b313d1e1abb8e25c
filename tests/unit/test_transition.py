"""The one transition rule (theory.transition): its Numba kernel against a plain-Python twin, and its users."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zipfhead.theory.transition import crossing, curve_phase_flags, half_rise, smoothed_curve
from zipfhead.toy_models.measures import transition_step


def naive_half_rise(t, v, chance, smooth, final_window, min_rise, known=None):
    """Twin of the rule, written from the module docstring with lists and no shared helper."""
    n = len(v)
    tail = v[max(0, n - final_window) :]
    final = sum(tail) / len(tail) if known is None else known
    if final - chance < min_rise:
        return None, None
    thr = chance + (final - chance) / 2
    h = smooth // 2
    sm = [sum(v[max(0, i - h) : min(n, i + h + 1)]) / (min(n, i + h + 1) - max(0, i - h)) for i in range(n)]
    for i in range(n):
        if sm[i] >= thr:
            if i == 0:
                return t[0], math.inf
            return t[i - 1] + (thr - sm[i - 1]) / (sm[i] - sm[i - 1]) * (t[i] - t[i - 1]), (t[i] - t[i - 1]) / 2
    return None, None


curves = st.integers(2, 40).flatmap(
    lambda n: st.tuples(
        st.lists(st.floats(0.01, 10.0), min_size=n, max_size=n),
        st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n),
    )
)


@settings(max_examples=300, deadline=None)
@given(
    curves,
    st.floats(0.0, 0.5),
    st.sampled_from([1, 3, 5]),
    st.integers(1, 4),
    st.floats(0.0, 0.4),
    st.none() | st.floats(0.0, 1.0),
)
def test_kernel_matches_its_naive_twin(curve, chance, smooth, final_window, min_rise, final):
    """Random curves, spacings, chance levels, smoothing widths, final windows and (or not) a known end: the Numba
    rule and the twin give the same transition (1e-9 relative: the same arithmetic in a different order) or both
    none."""
    gaps, v = curve
    t = np.cumsum(gaps)
    got = half_rise(t, v, chance, smooth=smooth, final_window=final_window, min_rise=min_rise, final=final)
    want = naive_half_rise(list(t), list(v), chance, smooth, final_window, min_rise, final)
    if want[0] is None:
        assert got == (None, None)
    else:
        assert got.time == pytest.approx(want[0], rel=1e-9, abs=1e-9)
        assert got.uncertainty == pytest.approx(want[1], rel=1e-9)


def test_toys_and_theory_share_the_rule():
    """transition_step (the toys) is half_rise with the toys' smoothing; the kernel the integrator calls gives the
    same crossing on the same points."""
    steps = np.arange(0.0, 3000.0, 100.0)
    rng = np.random.default_rng(3)
    values = 1 / 16 + 0.9 / (1 + np.exp(-(steps - 1400) / 120)) + 0.02 * rng.normal(size=steps.size)
    toy = transition_step(steps, values, 1 / 16)
    rule = half_rise(steps, values, 1 / 16)
    assert (toy.step, toy.uncertainty) == (rule.time, rule.uncertainty)
    kernel = crossing(steps, values, steps.size, 1 / 16, 0.2, 3, 3, math.nan)
    assert kernel == (rule.time, rule.uncertainty)
    # the logistic's centre is 1400; noise 0.02 on a rise of 0.9 moves the crossing by well under one spacing
    assert abs(toy.step - 1400) < 100


def test_phase_flags_read_the_smoothed_curve():
    """A single noisy evaluation above the threshold does not make a phase (3-point smoothing); a curve that
    rises past the threshold and ends below it has faded."""
    spike = np.array([0.1, 0.1, 0.9, 0.1, 0.1, 0.1])
    assert curve_phase_flags(spike, 0.56) == (False, False)
    fade = np.array([0.1, 0.6, 0.9, 0.9, 0.9, 0.4, 0.3, 0.3])
    assert curve_phase_flags(fade, 0.56) == (True, True)
    assert curve_phase_flags(np.zeros(0), 0.5) == (False, False)
    np.testing.assert_allclose(smoothed_curve(np.array([0.0, 3.0, 0.0]), 3), [1.5, 1.0, 1.5])


def test_bad_input_names_the_parameter():
    with pytest.raises(ValueError, match="smooth = 2"):
        half_rise([0, 1, 2], [0, 1, 1], 0.0, smooth=2)
    with pytest.raises(ValueError, match="final_window = 0"):
        half_rise([0, 1, 2], [0, 1, 1], 0.0, final_window=0)
    with pytest.raises(ValueError, match="strictly increasing"):
        half_rise([0, 0, 1], [0, 1, 1], 0.0)
