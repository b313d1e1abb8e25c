"""Reduced model v2 (theory.reduced_v2): derivation, kernel, flow, integrator, and its claims about the toys.

References never come from the code under test: the kernel and the flow are checked against finite differences of
an expected loss written here from the module docstring's definition (plain Python, one case at a time), the
generic integrator against a fixed-step RK4 twin, and the claims against the toys' measurements of
``zipfhead experiment repetition`` (proofs_notebooks/04_repetition.py), with thresholds stated per test.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import naive
from zipfhead.theory._reduced_v2_flow import ADAM_EPS2, COLUMNS, drift, gradient, probe
from zipfhead.theory.distributions import ClassificationTask
from zipfhead.theory.predict import load_calibration, predict_many, reduced_params
from zipfhead.theory.reduced_v2 import (
    KERNEL_MODULE,
    ParamsV2,
    cases_v2,
    copy_plateau,
    integrate_v2,
    kernel_source,
    pack,
    recruitment_index,
)
from zipfhead.theory.schedule import Schedule

DEMO = ClassificationTask(K=1024, N=8, D=16, L=16, B=2, p_B=1.0, eps=0.1, alpha=0.0)
#: the packaged calibration: the fit to the repetition toys (K sweep, relabelled and novel controls)
FIT = load_calibration()


def test_generated_kernel_is_the_current_derivation():
    """theory/_reduced_v2_kernel.py is exactly what sympy derives now (python -m zipfhead.theory.reduced_v2
    regenerates it)."""
    assert KERNEL_MODULE.read_text() == kernel_source()


def naive_case_loss(x: float, c: float, u: float, q: float, row) -> float:
    """One case's cross-entropy from the definition: the logits z* = c (m e^x + j) / Z + u - q, z_o = c r / Z and
    0, with Z = m e^x + n - m, and the loss -z* + log(e^z* + n_o e^z_o + M)."""
    _, m, j, n, r, n_o, M, _ = row
    Z = m * math.exp(x) + n - m
    zs = c * (m * math.exp(x) + j) / Z + u - q
    zo = c * r / Z
    return -zs + math.log(math.exp(zs) + n_o * math.exp(zo) + M)


def naive_loss(y: list[float], table: np.ndarray, sizes: list[float], s: float, inv_cap: float, leak: float) -> float:
    """The expected training loss from the definition: the cases' weighted cross-entropies, with x = s a b e^2,
    the in-weights logit u = e w and q = e^2 (inv_cap sum_g size_g w_g^2 + leak)."""
    a, b, c, e = y[:4]
    w = y[4:]
    q = e * e * (inv_cap * sum(sz * wg * wg for sz, wg in zip(sizes, w, strict=True)) + leak)
    x = s * a * b * e * e
    return sum(row[0] * naive_case_loss(x, c, e * w[int(row[7])] if row[7] >= 0 else 0.0, q, row) for row in table)


def naive_sensitivities(y: list[float], table: np.ndarray, sizes: list[float], s: float, inv_cap: float, leak: float):
    """(E_case[(dl/dx)^2], E_case[(dl/dc)^2]) over the training cases, each case's derivative by central
    differences of :func:`naive_case_loss` (step 1e-6)."""
    a, b, c, e = y[:4]
    w = y[4:]
    q = e * e * (inv_cap * sum(sz * wg * wg for sz, wg in zip(sizes, w, strict=True)) + leak)
    x = s * a * b * e * e
    h = 1e-6
    fx = fc = 0.0
    for row in table:
        u = e * w[int(row[7])] if row[7] >= 0 else 0.0
        dx = (naive_case_loss(x + h, c, u, q, row) - naive_case_loss(x - h, c, u, q, row)) / (2 * h)
        dc = (naive_case_loss(x, c + h, u, q, row) - naive_case_loss(x, c - h, u, q, row)) / (2 * h)
        fx += row[0] * dx * dx
        fc += row[0] * dc * dc
    return fx, fc


states = st.tuples(
    st.tuples(st.floats(-1.5, 1.5), st.floats(-1.5, 1.5)),  # (a, b)
    st.floats(0, 4),  # c
    st.floats(0.3, 3),  # e
    st.lists(st.floats(-1, 1), min_size=12, max_size=12),  # read-outs (G <= 12)
)


@settings(max_examples=40, deadline=None)
@given(states, st.sampled_from([0.0, 0.5, 1.0]), st.sampled_from([256, 4096]), st.floats(0.0, 0.5))
def test_gradient_matches_finite_differences_of_the_definition(state, p_B, K, leak):
    """The kernel's gradient (per class for the read-outs) equals central differences of naive_loss, for random
    states, burstiness (i.i.d. cases with collisions included), K and leak: 1e-5 relative + 1e-6 absolute
    (central differences with step 1e-6 are accurate to ~1e-8 here; the rest is float rounding)."""
    (a, b), c, e, w = state
    task = dataclasses.replace(DEMO, K=K, p_B=p_B)
    cs = cases_v2(task)
    G = cs.bin_size.shape[0]
    prm_obj = ParamsV2(D=16, kappa=2.0, leak=leak)
    y = np.array([a, b, c, e, *w[:G]])
    _, data, prm, _, _ = pack([(cs, prm_obj, np.array([0.0, 1.0]))])
    out = np.zeros(y.size + 2)
    gradient(y, data[0], prm[0], out)
    inv_cap = 1.0 / (2.0 * 16 * 16 * cs.s)
    f = lambda v: naive_loss(list(v), cs.train, list(cs.bin_size), cs.s, inv_cap, leak)  # noqa: E731
    fx, fc = naive_sensitivities(list(y), cs.train, list(cs.bin_size), cs.s, inv_cap, leak)
    assert out[y.size] == pytest.approx(fx, rel=1e-5, abs=1e-8)
    assert out[y.size + 1] == pytest.approx(fc, rel=1e-5, abs=1e-8)
    for p in range(y.size):
        h = 1e-6
        yp, ym = y.copy(), y.copy()
        yp[p] += h
        ym[p] -= h
        fd = (f(yp) - f(ym)) / (2 * h)
        if p >= 4:
            fd /= cs.bin_size[p - 4]  # the flow of one class's read-out
        assert out[p] == pytest.approx(fd, rel=1e-5, abs=1e-6), (p, out[p], fd)


def test_adam_drift_is_the_normalised_gradient():
    """drift = -g / sqrt(g^2 + floor) (no decay), from the same gradient, with the floors of ParamsV2 and drift:
    spread E[(dl/dx)^2] / batch + eps^2 on a and b, spread E[(dl/dc)^2] / batch + eps^2 on c (the sensitivities
    from naive_sensitivities), 1 / batch on e; rho x the same with floor bin_p / batch on the read-outs.
    Tolerance 1e-5: the sensitivities' central differences."""
    cs = cases_v2(dataclasses.replace(DEMO, p_B=0.5))
    p = ParamsV2(D=16, kappa=8.0, iw_speed=30.0, leak=0.2, optimizer="adam", batch=64, spread=25.0)
    y0, data, prm, _, _ = pack([(cs, p, np.array([0.0, 1.0]))])
    rng = np.random.default_rng(0)
    y = y0[0] + 0.3 * rng.random(y0.shape[1])
    g = np.zeros(y.size + 2)
    d = np.zeros(y.size + 2)
    gradient(y, data[0], prm[0], g)
    drift(y, data[0], prm[0], d)
    g = g[: y.size]
    inv_cap = 1.0 / (8.0 * 16 * 16 * cs.s)
    fx, fc = naive_sensitivities(list(y), cs.train, list(cs.bin_size), cs.s, inv_cap, 0.2)
    floor = np.array([25.0 * fx, 25.0 * fx, 25.0 * fc, 1.0]) / 64 + np.array([ADAM_EPS2] * 3 + [0.0])
    want = -g[:4] / np.sqrt(g[:4] ** 2 + floor)
    bin_p = cs.bin_mass / cs.bin_size
    want_w = 30.0 * -g[4:] / np.sqrt(g[4:] ** 2 + bin_p / 64)
    np.testing.assert_allclose(d[:4], want, rtol=1e-5)
    np.testing.assert_allclose(d[4 : y.size], want_w, rtol=1e-12)


def test_integrator_matches_a_fixed_step_rk4_twin():
    """zipfhead.theory.ode on v2's drift against 20000 RK4 steps of the same drift in plain numpy: states within 1e-4
    relative at t = 40 (the adaptive scheme's rtol is 1e-7 here; RK4's error at h = 2e-3 is ~1e-10)."""
    cs = cases_v2(dataclasses.replace(DEMO, p_B=0.75, K=512))
    p = ParamsV2(D=16, kappa=8.0, iw_speed=10.0, leak=0.2, init=0.1)
    t_end = 40.0
    tr = integrate_v2([(cs, p, np.array([0.0, t_end / 2, t_end]))], rtol=1e-7)[0]
    y0, data, prm, _, _ = pack([(cs, p, np.array([0.0, 1.0]))])
    y = naive.rk4(drift, y0[0], data[0], prm[0], t_end, 20000, scratch=y0.shape[1] + 2)
    np.testing.assert_allclose(tr.state[-1], y, rtol=1e-4, atol=1e-7)
    row = np.zeros(5)
    probe(y, data[0], prm[0], row)
    assert tr.icl[-1] == pytest.approx(row[0], rel=1e-4)


def test_cases_are_distributions_and_relabelled_labels_cannot_be_memorised():
    """Training weights sum to 1 (to the binomial tail cut, 1e-4 per block); every i.i.d. row's slots add up
    (m + j + n_o r = N); with label_map = per_sequence no row has a bin."""
    for p_B in (0.0, 0.6, 1.0):
        cs = cases_v2(dataclasses.replace(DEMO, p_B=p_B, p_C=0.2))
        assert cs.train[:, COLUMNS.index("weight")].sum() == pytest.approx(1.0, abs=1e-9)
        t = cs.train
        slots = t[:, 1] + t[:, 2] + t[:, 5] * t[:, 4]
        np.testing.assert_allclose(slots, 8.0, atol=1e-9)
    relabelled = cases_v2(dataclasses.replace(DEMO, label_map="per_sequence"))
    assert np.all(relabelled.train[:, COLUMNS.index("bin")] == -1)


def _steps(tasks, **kw):
    res = predict_many(tasks, lr=3e-3, steps=3000, calibration=FIT, closed_form=False, **kw)
    return [r["transition_step"] for r in res], [r["phase"] for r in res]


def test_the_in_context_window_of_the_toys():
    """With the constants fitted to the repetition toys, the theory reproduces what those toys showed
    (proofs_notebooks/04_repetition.py): transition steps that grow with K above the memorisation edge (toys: 726
    steps at K = 1024, 1364 at 4096, 2340 at 16384: each predicted within 25%, the seeds' own spread is 14%), and
    no head within 3000 steps with novel classes only or with labels redrawn per sequence (toys: none in 3 seeds
    each)."""
    Ks = (1024, 4096, 16384)
    steps, phases = _steps([dataclasses.replace(DEMO, K=k) for k in Ks])
    for got, toy in zip(steps, (726, 1364, 2340), strict=True):
        assert got is not None and abs(got / toy - 1) < 0.25, (got, toy)
    assert steps[0] < steps[1] < steps[2]
    controls = [dataclasses.replace(DEMO, p_C=1.0), dataclasses.replace(DEMO, label_map="per_sequence")]
    steps, phases = _steps(controls)
    assert steps == [None, None] and all(p != "icl" for p in phases)


@settings(max_examples=15, deadline=None)
@given(st.sampled_from([64, 512, 4096, 65536]), st.floats(0.0, 1.0), st.floats(0.0, 2.0), st.sampled_from([1, 2, 4]))
def test_one_layer_never_forms_an_induction_head(K, p_B, alpha, B):
    """n_layers = 1 (a = b = 0 is a fixed point): the phase is never icl, both or transient, whatever the data."""
    task = dataclasses.replace(DEMO, K=K, p_B=p_B, alpha=alpha, B=B)
    steps, phases = _steps([task], n_layers=1)
    assert steps == [None] and phases[0] in ("iwl", "neither")


@pytest.mark.parametrize(("B", "N"), [(1, 8), (2, 8), (4, 8), (3, 12)])
def test_the_copy_plateau_is_B_over_N(B, N):
    """A head that copies a context label without matching is right B / N of the time (m = B of n = N slots)."""
    assert copy_plateau(cases_v2(dataclasses.replace(DEMO, B=B, N=N))) == pytest.approx(B / N, rel=1e-15)


@settings(max_examples=50, deadline=None)
@given(st.floats(0.0, 1.0), st.floats(0.05, 0.95), st.floats(0.5, 9.5))
def test_recruitment_is_the_in_weights_proxy_at_the_transition(slope, plateau, transition):
    """On a ramp iwl(t) = slope t / 10 over t = 0..10, memorisation holds the heads exactly when slope x transition
    / 10 >= plateau, and the restart is the last output time at or before the transition; never without one."""
    t = np.linspace(0.0, 10.0, 11)
    iwl = slope * t / 10.0
    got = recruitment_index(iwl, t, plateau, transition)
    # 1e-12: np.interp's rounding on a unit ramp is ~1e-16; cases that close to the plateau are not asserted
    if slope * transition / 10.0 >= plateau * (1 + 1e-12):
        assert got == math.floor(transition)
    elif slope * transition / 10.0 < plateau * (1 - 1e-12):
        assert got is None
    assert recruitment_index(iwl, t, plateau, None) is None


def test_a_recruited_cell_restarts_without_the_match():
    """K = 64 uniform classes (reddy2024's memorisers): without recruitment the integrated head forms while the
    in-weights proxy already exceeds B / N = 1/4 (the rule's trigger); with it, no transition, the trajectory equals
    the first integration up to the restart, then a = b = 0 to the horizon, on strictly increasing times."""
    task = dataclasses.replace(DEMO, K=64)
    cs = cases_v2(task)
    p = reduced_params(task, FIT, Schedule(lr=6e-3))  # reddy2024's schedule: Adam 6e-3, 1500 steps
    t = np.concatenate([[0.0], np.geomspace(1e-3, FIT.time_scale * 6e-3 * 1500, 59)])
    free = integrate_v2([(cs, p, t)], rtol=1e-6, recruitment=False)[0]
    held = integrate_v2([(cs, p, t)], rtol=1e-6)[0]
    assert free.transition is not None and np.interp(free.transition, free.t, free.iwl) >= 0.25
    assert held.transition is None
    j = int(np.searchsorted(t, free.transition, side="right")) - 1
    np.testing.assert_array_equal(held.t[:j], t[:j])
    np.testing.assert_array_equal(held.state[:j], free.state[:j])
    # the restart's times are rescaled (a few float operations, ~1e-16 each): the horizon to 1e-12
    assert np.all(np.diff(held.t) > 0) and held.t[-1] == pytest.approx(t[-1], rel=1e-12)
    assert np.all(held.state[j:, :2] == 0.0)
