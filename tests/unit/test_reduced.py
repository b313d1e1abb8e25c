"""The reduced model of induction-head formation: derivation, integrator and the claims of issue 4 (item 1a, 1b).

Reference values never come from the code under test: the kernel is checked against finite differences of a loss
written from the model's definition (tests/naive.py), the integrator against a plain-Python RK4 twin, and the
claims against thresholds stated in the issue and REFERENCES.md.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import naive
from zipfhead.theory import closed_form as cf
from zipfhead.theory._reduced_flow import rhs
from zipfhead.theory._reduced_kernel import case_terms
from zipfhead.theory.distributions import ClassificationTask
from zipfhead.theory.reduced import (
    KERNEL_MODULE,
    ReducedParams,
    _pack,
    classification_cases,
    integrate,
    kernel_source,
)
from zipfhead.theory.transition import half_rise

BASE = {"K": 4096, "N": 8, "D": 16, "L": 16, "B": 2, "p_B": 1.0, "eps": 0.1, "alpha": 0.0}
T_OUT = np.concatenate([[0.0], np.geomspace(1e-2, 2000.0, 300)])


def run(init: float = 1e-3, iw_speed: float = 10.0, weight_decay: float = 0.0, **kw):
    task = ClassificationTask(**(BASE | kw))
    prm = ReducedParams(D=task.D, init=init, iw_speed=iw_speed, weight_decay=weight_decay)
    return task, integrate(classification_cases(task), prm, T_OUT)


def test_generated_kernel_is_the_current_derivation():
    """theory/_reduced_kernel.py is exactly what sympy derives now (python -m zipfhead.theory.reduced
    regenerates it)."""
    assert KERNEL_MODULE.read_text() == kernel_source()


case_params = st.fixed_dictionaries(
    {
        "a": st.floats(-2, 3),
        "b": st.floats(-2, 3),
        "c": st.floats(0, 8),
        "w": st.floats(-1, 6),
        "s": st.floats(0.3, 1),
        "n": st.integers(2, 16),
        "m_frac": st.floats(0, 1),
        "r": st.integers(1, 4),
        "n_o": st.integers(0, 10),
        "M": st.integers(0, 20),
    }
)


def _args(p):
    m = round(p["m_frac"] * p["n"])
    counts = (float(m), float(p["n"]), float(p["r"]), float(p["n_o"]), float(p["M"]))
    return (p["a"], p["b"], p["c"], p["w"], p["s"], *counts)


@given(case_params)
@settings(max_examples=60, deadline=None)
def test_kernel_matches_the_definition_and_finite_differences(p):
    """Loss and curvature equal the softmax written out; the partials equal central differences.

    Tolerance: central differences with h = 1e-6 err by O(h^2 f''') + O(eps_mach / h) ~ 1e-9 here; 1e-6 is safe.
    """
    args = _args(p)
    terms = case_terms(*args)
    assert terms[0] == pytest.approx(naive.reduced_case_loss(*args), rel=1e-12, abs=1e-12)
    assert terms[5] == pytest.approx(naive.reduced_case_curvature(*args), rel=1e-10, abs=1e-12)
    h = 1e-6
    for i in range(4):
        up, dn = list(args), list(args)
        up[i] += h
        dn[i] -= h
        fd_loss = (naive.reduced_case_loss(*up) - naive.reduced_case_loss(*dn)) / (2 * h)
        fd_curv = (naive.reduced_case_curvature(*up) - naive.reduced_case_curvature(*dn)) / (2 * h)
        assert terms[1 + i] == pytest.approx(fd_loss, rel=1e-6, abs=1e-6)
        assert terms[6 + i] == pytest.approx(fd_curv, rel=1e-6, abs=1e-6)


small_tasks = st.builds(
    ClassificationTask,
    K=st.integers(4, 5),
    N=st.just(4),
    D=st.integers(2, 8),
    L=st.integers(6, 12),
    B=st.sampled_from([1, 2]),
    p_B=st.floats(0, 1),
    p_C=st.floats(0, 0.5),
    eps=st.floats(0, 1),
    alpha=st.floats(0, 2),
)


@given(
    small_tasks,
    st.floats(0.01, 0.5),
    st.floats(0.3, 30),
    st.floats(0, 0.05),
    st.floats(0.2, 1.0),
    st.sampled_from(("all", "attention")),
)
@settings(max_examples=5, deadline=None)  # each example integrates the naive twin in Python (~3 s)
def test_flow_matches_finite_differences_of_the_naive_objective(task, init, rho, wd, t_end, decay_on):
    """The Numba right-hand side equals the finite-difference flow of the hand-written objective (1e-6), and the
    adaptive integrator (rtol 1e-10) ends where a fine plain-Python RK4 does (RK4 step <= 0.01: error ~ 1e-9).
    With ``decay_on='attention'`` only a, b, c decay."""
    cs = classification_cases(task)
    prm = ReducedParams(D=task.D, init=init, iw_speed=rho, weight_decay=wd, decay_on=decay_on)
    wd = (wd, wd if decay_on == "all" else 0.0)
    packed = _pack([(cs, prm, np.array([0.0, t_end]))])
    y0, cases, _, _, bin_size, _, s, iw_rate, inv_cap, rho_a, wd_a, _, _ = packed
    rng = np.random.default_rng(0)
    y = y0[0] + rng.uniform(0, 1, y0.shape[1])
    G = bin_size.shape[1]
    out = np.zeros(3 + 2 * G)
    rhs(y, cases[0], bin_size[0], s[0], iw_rate[0], inv_cap[0], rho_a[0], wd_a[0], out)
    twin = naive.reduced_flow(list(y), cs.table(), list(cs.bin_size), cs.s, cs.iw_rate, inv_cap[0], rho, wd)
    np.testing.assert_allclose(out[: 3 + G], twin, rtol=1e-6, atol=1e-7)
    tr = integrate(cs, prm, np.array([0.0, t_end]), rtol=1e-10, atol=1e-12)
    end = naive.reduced_integrate(
        list(y0[0]), cs.table(), list(cs.bin_size), cs.s, cs.iw_rate, inv_cap[0], rho, wd, t_end, 100
    )
    np.testing.assert_allclose(tr.state[-1], end, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("optimizer", ["gd", "adam"])
def test_plateau_at_the_copy_level_then_an_abrupt_cliff(optimizer):
    """Reddy's plateau and cliff. Before the transition the accuracy stays at or below the copy level B/N while the
    loss falls toward ln(N/B) from above (it reaches it only in the one-layer limit, tested below: under the flow
    the output strength grows like ln t, so the escape comes first); the rise from 0.3 to 0.8 takes less than half
    the time spent before it; the end is a formed circuit."""
    task = ClassificationTask(**(BASE | {"L": 32}))
    prm = ReducedParams(D=task.D, init=1e-4, optimizer=optimizer)
    tr = integrate(classification_cases(task), prm, T_OUT)
    BN = task.B / task.N
    t_lo = tr.t[np.argmax(tr.icl > 0.3)]
    t_hi = tr.t[np.argmax(tr.icl > 0.8)]
    assert t_hi - t_lo < 0.5 * t_lo, (t_lo, t_hi)
    before = tr.t < t_lo
    assert tr.icl[before].max() < BN + 0.05
    plateau = tr.loss[before][tr.t[before] > 0.5 * t_lo]
    assert np.all(plateau > math.log(task.N / task.B)) and np.all(np.diff(plateau) < 0), plateau
    assert tr.icl[-1] > 0.95
    # t_lo and t_hi are read on the output grid (4% spacing); the transition is located between steps
    assert tr.transition is not None and t_lo / 1.05 <= tr.transition <= t_hi * 1.05


def test_learns_when_L_exceeds_N_and_fails_when_L_equals_N():
    """With B = 1, L = N makes copying useless (every label is in context): the plateau is a fixed point."""
    _, fails = run(B=1, L=8)
    assert np.all(np.abs(fails.icl - 1 / 8) < 1e-3) and fails.transition is None
    _, learns = run(B=1, L=16)
    assert learns.transition is not None and learns.icl[-1] > 0.95


def test_direction_of_dependences_reported_by_reddy():
    """Earlier transition with more burstiness B; later with more within-class noise eps (a weaker match)."""
    times = [run(B=B)[1].transition for B in (1, 2, 4)]
    assert times[0] > times[1] > times[2], times
    t_eps = [run(eps=e)[1].transition for e in (0.0, 0.5, 1.0)]
    assert t_eps[0] < t_eps[1] < t_eps[2], t_eps


def _adam(**kw):
    task = ClassificationTask(**(BASE | {"L": 32, "p_B": 0.9} | kw))
    prm = ReducedParams(D=task.D, init=0.1, iw_speed=30, kappa=4, optimizer="adam")
    return integrate(classification_cases(task), prm, T_OUT)


def test_in_context_vs_in_weights_competition_over_K_and_alpha():
    """Large K: in-context learning forms with nothing memorised; small K: memorisation comes first and removes
    its drive (no transition); a skewed Zipf law (larger alpha) memorises the head, so the in-weights accuracy
    rises with alpha and in-context learning is lost at large alpha (Chan et al., Reddy)."""
    big, small = _adam(K=4096), _adam(K=32)
    assert big.transition is not None and big.icl[-1] > 0.9 and big.iwl.max() < 0.2
    assert small.transition is None and small.iwl[-1] > 0.9
    by_alpha = [_adam(K=4096, alpha=a) for a in (0.0, 1.0, 2.0)]
    iwl = [tr.iwl[-1] for tr in by_alpha]
    assert iwl[0] < iwl[1] < iwl[2] and iwl[2] > 0.9, iwl
    assert by_alpha[0].icl[-1] > 0.9 and by_alpha[-1].icl[-1] < 0.5


def test_one_layer_counterpart_lands_on_the_copy_plateau():
    """init = 0 (no previous-token step), nothing memorisable (novel classes only, p_C = 1): the loss tends to
    ln(N/B) and the accuracy to B/N, the closed form."""
    task, tr = run(init=0.0, K=4096, p_C=1.0)
    plateau = cf.copy_plateau(task)
    assert tr.transition is None
    assert tr.loss[-1] == pytest.approx(plateau["loss"], abs=0.02)
    assert tr.icl[-1] == pytest.approx(plateau["icl_accuracy"], abs=0.01)
    # and the output strength follows the Lambert-W closed form all along (float64 + rtol 1e-5 integration)
    np.testing.assert_allclose(tr.state[:, 2], cf.output_strength(task, tr.t), rtol=1e-3, atol=1e-4)


def test_in_context_learning_is_transient_when_memorisation_catches_up():
    """Singh et al. 2023, Nguyen & Reddy: near the boundary in-context learning forms first, then fades as
    memorisation covers the data; weight decay deepens the fade (measured: 0.89 -> 0.84 without, 0.88 -> 0.65
    with weight decay 0.003)."""
    fades = []
    for wd in (0.0, 0.003):
        task = ClassificationTask(**(BASE | {"K": 256, "L": 32, "p_B": 0.9}))
        prm = ReducedParams(D=16, init=0.1, iw_speed=3, kappa=4, weight_decay=wd, optimizer="adam")
        tr = integrate(classification_cases(task), prm, T_OUT)
        peak = int(np.argmax(tr.icl))
        assert tr.icl[peak] > 0.85 and tr.iwl[-1] > 0.95
        fades.append(tr.icl[peak] - tr.icl[-1])
    assert 0.02 < fades[0] < fades[1] and fades[1] > 0.15, fades


def test_decay_on_the_in_context_path_alone_erases_it_once_memorised():
    """Nguyen & Reddy 2025: decay on the in-context path only (``decay_on='attention'``) lets memorisation finish
    undecayed, and then nothing holds the circuit up: in-context accuracy falls back to chance (measured: peak
    0.87, end 0.057), where the same decay on every weight leaves it at 0.65."""
    task = ClassificationTask(**(BASE | {"K": 256, "L": 32, "p_B": 0.9}))
    ends = {}
    for on in ("all", "attention"):
        prm = ReducedParams(D=16, init=0.1, iw_speed=3, kappa=4, weight_decay=0.003, decay_on=on, optimizer="adam")
        tr = integrate(classification_cases(task), prm, T_OUT)
        assert tr.icl.max() > 0.85
        ends[on] = (tr.icl[-1], tr.iwl[-1])
    assert ends["attention"][0] < 0.1 and ends["attention"][1] > 0.99
    assert ends["all"][0] > 0.5


def test_unsmoothed_rule_interpolates_the_crossing():
    """The one rule without smoothing (as the reduced model applies it): half of the final 1.0 is crossed between
    t = 2 (0.3) and t = 3 (0.9), at 2 + 0.2 / 0.6 by linear interpolation; a rise of 0.1 < 0.2 is none."""
    t = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    got = half_rise(t, np.array([0.0, 0.1, 0.3, 0.9, 1.0]), 0.0, smooth=1, final_window=1)
    assert got.time == pytest.approx(2 + 0.2 / 0.6)
    assert got.uncertainty == 0.5
    assert half_rise(t, np.array([0.0, 0.05, 0.1, 0.1, 0.1]), 0.0, smooth=1, final_window=1).time is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"D": 0}, "D = 0"), ({"init": -1.0}, "init = -1.0"), ({"iw_speed": 0.0}, "iw_speed = 0.0")],
)
def test_bad_parameters_name_themselves(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ReducedParams(**kwargs)


def test_bad_times_are_refused():
    task = ClassificationTask(**BASE)
    with pytest.raises(ValueError, match="t_out"):
        integrate(classification_cases(task), ReducedParams(), np.array([0.0, 2.0, 1.0]))
