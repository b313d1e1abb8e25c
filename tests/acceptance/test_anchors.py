"""The published toys as reduced flows (theory.anchors): derivations, Numba vs its plain-Python twin, the laws.

Published laws checked: Zucchet et al. 2025 (plateau ~ T^1 d^(1/2) B^-1, slopes within +-0.1) and Singh et al. 2024
(clamping two factors at their final values shortens the plateau; plateau ~ 1/sigma as the closed form says).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

from zipfhead.theory import anchors as A
from zipfhead.theory.ode import integrate_cells

SLOPE_TOL = 0.1  # the tolerance on every log-log slope
# Numba and the twin run the same algorithm on the same sympy expressions, but not bit for bit: the kernel is the
# generated theory/_<model>_kernel.py (sympy.cse, Numba turns x**3 into products), the twin sympy's lambdify (its
# own cse, Python's pow). The step controller reads those ulps through the error estimate, a
# difference of nearly equal numbers (~1e-9 of the state), so step sizes differ by ~1e-8 relative; the solutions
# then differ by no more than the integrator's own error (rtol 1e-9) times a modest growth: 1e-6 is a safe bound.
TWIN_RTOL = 1e-6


# --------------------------------------------------------------------------------------------------------------
# The plain-Python twin: theory.ode's Bogacki-Shampine 3(2) loop and the half-rise rule with the known end 1, on
# lists of floats, with the sympy flows lambdified for the math module (not the module's jitted copies).
# --------------------------------------------------------------------------------------------------------------
def _twin_functions(model: A.ReducedModel, order_args: tuple[sp.Symbol, ...]):
    f = sp.lambdify((*model.state, *model.params), model.flow, modules="math", cse=True)
    o = sp.lambdify(order_args, model.order, modules="math")
    return f, o


SINGH_F, SINGH_O = _twin_functions(A.SINGH, A.SINGH.state)
ZUCCHET_F, ZUCCHET_O = _twin_functions(A.ZUCCHET, (*A.ZUCCHET.state, *A.ZUCCHET.params))


def singh_rhs(y, p):
    v = SINGH_F(*y, p[0])
    return [v[j] * p[1 + j % 3] for j in range(6)]


def singh_order(y, p):
    return SINGH_O(*y)


def zucchet_rhs(y, p):
    return list(ZUCCHET_F(*y, *p))


def zucchet_order(y, p):
    return ZUCCHET_O(*y, *p)


def twin_step(rhs, y, k1, h, p, rtol, atol):
    """One Bogacki-Shampine 3(2) step: (y_new, f(y_new), the error ratio, inf where a stage is not finite)."""
    k2 = rhs([a + 0.5 * h * b for a, b in zip(y, k1, strict=True)], p)
    k3 = rhs([a + 0.75 * h * b for a, b in zip(y, k2, strict=True)], p)
    y_new = [a + h * (2 / 9 * b + 1 / 3 * c + 4 / 9 * e) for a, b, c, e in zip(y, k1, k2, k3, strict=True)]
    k4 = rhs(y_new, p)
    err = 0.0
    for i in range(len(y)):
        e = h * (-5 / 72 * k1[i] + 1 / 12 * k2[i] + 1 / 9 * k3[i] - 1 / 8 * k4[i])
        ratio = abs(e) / (atol + rtol * max(abs(y[i]), abs(y_new[i])))
        err = max(err, ratio) if math.isfinite(ratio) else math.inf
    return y_new, k4, err


def twin_integrate(rhs, order, y0, p, t_max, rtol, atol, until_crossing):
    """Plain-Python twin of one cell: returns (plateau or nan, state, time, attempted steps). The plateau: the
    first accepted point whose order parameter reaches half-way from O(0) to 1, linearly interpolated with the one
    before it (the half-rise rule with the end known)."""
    y, t, steps = list(y0), 0.0, 0
    ts, vs = [0.0], [order(y, p)]
    level = vs[0] + 0.5 * (1.0 - vs[0])
    h, k1 = max(t_max * 1e-6, 1e-9), rhs(y, p)
    while t < t_max:
        h = min(h, t_max - t)
        y_new, k4, err = twin_step(rhs, y, k1, h, p, rtol, atol)
        steps += 1
        if err <= 1.0 or h <= 1e-12:
            t, y, k1 = t + h, y_new, k4
            ts.append(t)
            vs.append(order(y, p))
            if until_crossing and vs[-1] >= level:
                break
        h *= min(5.0, max(0.2, 0.9 * (1.0 / max(err, 1e-10)) ** (1 / 3)))
    cross = math.nan
    if 1.0 - vs[0] >= 0.0:
        i = next((i for i, v in enumerate(vs) if v >= level), None)
        if i == 0:
            cross = ts[0]
        elif i is not None:
            cross = ts[i - 1] + (level - vs[i - 1]) / (vs[i] - vs[i - 1]) * (ts[i] - ts[i - 1])
    return cross, y, t, steps


def assert_twins_agree(res: A.FlowResult, twin) -> None:
    cross, y, t, steps = twin
    assert res.ok[0]
    assert abs(int(res.steps[0]) - steps) <= 2  # a step accepted on one side, rejected on the other, near err = 1
    if math.isnan(cross):
        assert np.isnan(res.plateau[0])
    else:
        assert res.plateau[0] == pytest.approx(cross, rel=TWIN_RTOL)
    np.testing.assert_allclose(res.state[0], y, rtol=TWIN_RTOL, atol=1e-12)
    assert res.time[0] == pytest.approx(t, rel=TWIN_RTOL)


@pytest.mark.parametrize("model", sorted(A.KERNEL_MODULES))
def test_generated_kernels_are_current(model):
    """theory/_<model>_kernel.py is what the derivations above generate (run ``python -m zipfhead.theory.anchors``
    after changing them)."""
    assert A.KERNEL_MODULES[model].read_text() == A.kernel_source(model)


@st.composite
def singh_cases(draw):
    n = draw(st.integers(1, 32))
    xs = [draw(st.floats(0.05, 0.9)) * draw(st.sampled_from([-1.0, 1.0])) for _ in range(3)]
    rs = [x * x + draw(st.floats(0.0, 0.3)) for x in xs]  # Cauchy-Schwarz: mean(f^2) >= mean(f)^2
    clamped = tuple(draw(st.booleans()) for _ in range(3))
    t_max = draw(st.floats(1.0, 60.0)) * n
    return np.array(xs + rs), n, clamped, t_max, draw(st.booleans())


@given(singh_cases())
def test_singh_numba_matches_python_twin(case):
    """theory.ode.integrate_cells on the anchor equals the plain-Python twin, step for step, on hypothesis-drawn
    cells."""
    y0, n, clamped, t_max, until = case
    res = A.singh_plateau(y0, n, t_max, clamped=clamped, until_crossing=until, rtol=1e-9, atol=1e-12)
    p = [float(n)] + [0.0 if c else 1.0 for c in clamped]
    assert_twins_agree(res, twin_integrate(singh_rhs, singh_order, y0, p, t_max, 1e-9, 1e-12, until))


@st.composite
def zucchet_cases(draw):
    T = draw(st.integers(2, 400))
    B = draw(st.integers(1, T - 1))
    d = draw(st.integers(1, 64))
    key = draw(st.sampled_from(A.ZUCCHET_KEYS))
    return T, d, B, key, draw(st.floats(-2, 2)), draw(st.floats(-1, 1)), draw(st.floats(1, 3000)), draw(st.booleans())


@given(zucchet_cases())
def test_zucchet_numba_matches_python_twin(case):
    T, d, B, key, kappa0, w0, t_max, until = case
    res = A.zucchet_plateau(
        T, d, B, key=key, kappa0=kappa0, w0=w0, t_max=t_max, until_crossing=until, rtol=1e-9, atol=1e-12
    )
    g = float(A.zucchet_key_metric(key).subs({A.ZUCCHET.params[0]: T, A.ZUCCHET.params[2]: B}))
    p = [float(T), float(d), float(B), g]
    assert_twins_agree(res, twin_integrate(zucchet_rhs, zucchet_order, [kappa0, w0], p, t_max, 1e-9, 1e-12, until))


# --------------------------------------------------------------------------------------------------------------
# The flows are the gradient flows of the losses (an independent numerical route)
# --------------------------------------------------------------------------------------------------------------
@given(st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_singh_flow_is_the_projected_vector_gradient(n, seed):
    """Scalar flow = <grad feature, -grad_f L> with grad_f L from the explicit n x n x n tensor loss (numpy)."""
    a, b, c = np.random.default_rng(seed).normal(0.0, 0.7, size=(3, n))
    resid = 1.0 - np.einsum("i,j,k->ijk", a, b, c)  # T* - T with T* = 1 (x) 1 (x) 1
    grads = [  # -dL/df for L = 1/2 mean(resid^2)
        np.einsum("ijk,j,k->i", resid, b, c) / n**3,
        np.einsum("ijk,i,k->j", resid, a, c) / n**3,
        np.einsum("ijk,i,j->k", resid, a, b) / n**3,
    ]
    state = [f.mean() for f in (a, b, c)] + [(f**2).mean() for f in (a, b, c)]
    expect = [g.sum() / n for g in grads] + [2.0 * (f * g).sum() / n for f, g in zip((a, b, c), grads, strict=True)]
    got = SINGH_F(*state, float(n))
    np.testing.assert_allclose(got, expect, rtol=1e-10, atol=1e-13)  # float rounding of sums of n^3 terms
    loss = sp.lambdify((*A.SINGH.state, *A.SINGH.params), A.SINGH.loss)(*state, n)
    assert loss == pytest.approx(0.5 * np.mean(resid**2), rel=1e-10, abs=1e-14)


def test_zucchet_loss_is_the_expected_loss():
    """L(kappa, w) against a Monte Carlo average of 1/(2d) |y* - y|^2 (within 5 standard errors)."""
    T, d, B, kappa, w = 7, 5, 2, 0.8, 0.6
    rng = np.random.default_rng(3)
    W_star = np.linalg.qr(rng.normal(size=(d, d)))[0]
    logits = np.array([kappa] * B + [0.0] * (T - B))
    att = np.exp(logits) / np.exp(logits).sum()
    S = 200_000
    x_star = rng.normal(size=(S, d))
    others = rng.normal(size=(S, T - B, d))
    mix = att[:B].sum() * x_star + np.einsum("t,std->sd", att[B:], others)
    per = ((x_star @ W_star.T - w * mix @ W_star.T) ** 2).sum(axis=1) / (2 * d)
    values = dict(zip(A.ZUCCHET.state + A.ZUCCHET.params[:3], (kappa, w, T, d, B), strict=True))
    loss = float(A.ZUCCHET.loss.subs(values))
    assert abs(per.mean() - loss) < 5 * per.std() / math.sqrt(S)


# --------------------------------------------------------------------------------------------------------------
# The laws
# --------------------------------------------------------------------------------------------------------------
ZUCCHET_GRIDS = {  # parameter -> (values, other parameters); T/B >= 64 and d >= 64, the closed form's range
    "T": (np.array([128, 256, 512, 1024, 2048]), {"d": 256, "B": 1}),
    "d": (np.array([64, 256, 1024, 4096]), {"T": 1024, "B": 1}),
    "B": (np.array([1, 2, 4, 8, 16]), {"T": 1024, "d": 256}),
}
PUBLISHED = {"T": 1.0, "d": 0.5, "B": -1.0}


@pytest.mark.parametrize("name", ["T", "d", "B"])
def test_zucchet_published_slopes(name):
    """Plateau vs T, d, B: log-log slopes within 0.1 of Zucchet et al.'s 1, 1/2, -1 (shared key)."""
    values, others = ZUCCHET_GRIDS[name]
    res = A.zucchet_plateau(**{name: values, **others})
    assert res.ok.all() and np.all(np.isfinite(res.plateau))
    slope = A.loglog_slope(values, res.plateau)
    assert abs(slope - PUBLISHED[name]) < SLOPE_TOL, slope
    # and the closed form (T/B) sqrt(pi d / 2) erf(sqrt(kappa_h)) within 6% on this range
    closed = A.zucchet_escape_time(**{name: values, **others})
    np.testing.assert_allclose(res.plateau, closed, rtol=0.06)


def test_zucchet_positional_logits_give_half_the_repetition_exponent():
    """With a free logit per position each copy gets 1/B of the score's gradient: plateau ~ B^(-1/2), not B^-1."""
    values, others = ZUCCHET_GRIDS["B"]
    res = A.zucchet_plateau(B=values, key="positional", **others)
    assert abs(A.loglog_slope(values, res.plateau) + 0.5) < SLOPE_TOL


def test_zucchet_plateau_then_sparse_attention():
    """The attention mass sits near B/T for most of the plateau, then goes to ~1; the loss drops with it."""
    T, d, B = 512, 256, 1
    t_h = float(A.zucchet_plateau(T, d, B).plateau[0])
    times = t_h * np.array([0.0, 0.25, 0.5, 2.0, 4.0])
    traj = A.zucchet_trajectory(T, d, B, times)
    s = sp.lambdify((*A.ZUCCHET.state, *A.ZUCCHET.params), A.ZUCCHET.order)(traj[:, 0], traj[:, 1], T, d, B, 1.0)
    assert s[0] == pytest.approx(B / T)
    assert s[2] < 4 * B / T  # half-way through the plateau the attention is still nearly uniform
    assert s[-1] > 0.99


SIGMAS = np.array([1e-3, 3e-3, 1e-2, 3e-2, 1e-1])


def test_singh_plateau_scales_as_the_closed_form():
    """Aligned init: plateau vs sigma has the closed form's log-log slope (within 0.1), itself ~ -1."""
    n = 8
    res = A.singh_plateau(np.stack([A.singh_initial_state(n, s) for s in SIGMAS]), n, 2e6)
    closed = A.singh_escape_time(n, SIGMAS)
    # the crossing interpolated linearly between accepted steps at the default rtol 1e-11 (theory.anchors.RTOL):
    # 2e-9 relative or better measured; 1e-6 leaves over two decades
    np.testing.assert_allclose(res.plateau, closed, rtol=1e-6)
    slope, closed_slope = A.loglog_slope(SIGMAS, res.plateau), A.loglog_slope(SIGMAS, closed)
    assert abs(slope - closed_slope) < SLOPE_TOL and abs(slope + 1.0) < SLOPE_TOL


@pytest.mark.parametrize("init", ["aligned", "random"])
def test_singh_clamping_two_factors_shortens_the_plateau(init):
    """Clamp b and c at their final values (end of the free run): the plateau of P shrinks by > 50x at sigma=0.01."""
    n, sigma = 16, 1e-2
    y0 = A.singh_initial_state(n, sigma, init, seed=0)
    free = A.singh_plateau(y0, n, 1e6)
    final = A.singh_plateau(y0, n, 3 * free.plateau[0] + 100 * n, until_crossing=False).state[0]
    assert np.allclose(np.prod(final[:3]), 1.0, atol=1e-6)  # converged: P = 1
    y_clamped = y0.copy()
    y_clamped[[1, 2, 4, 5]] = final[[1, 2, 4, 5]]
    clamped = A.singh_plateau(y_clamped, n, 1e6, clamped=(False, True, True))
    ratio = free.plateau[0] / clamped.plateau[0]
    assert ratio > 50, ratio
    if init == "aligned":  # 4e-8 or better measured at the default rtol (theory.anchors.RTOL): 25 times inside
        assert clamped.plateau[0] == pytest.approx(float(A.singh_escape_time(n, sigma, clamped=True)), rel=1e-6)


def test_a_flow_that_leaves_the_finite_range_ends_the_cell_not_ok():
    """Factors of 1e60 overflow the flow (products of 1e120 cubed): the integrator ends the cell at once, flagged,
    instead of accepting NaN steps at the smallest step size until its budget (10 million steps) runs out."""
    res = A.singh_plateau(np.array([1e60] * 3 + [1e120] * 3), 4, 10.0)
    assert not res.ok[0] and np.isnan(res.plateau[0])
    assert res.steps[0] < 1000  # a step size shrinking by 5 per rejection reaches 1e-12 within tens of steps


def test_singh_norm_differences_are_conserved():
    """Gradient flow on a product conserves |a|^2 - |b|^2 (balancedness): r_a - r_b and r_b - r_c stay put."""
    y0 = A.singh_initial_state(12, 0.3, "random", seed=5)
    traj = A.singh_trajectory(y0, 12, np.linspace(0.0, 400.0, 9))
    np.testing.assert_allclose(traj[:, 3] - traj[:, 4], y0[3] - y0[4], atol=1e-7)
    np.testing.assert_allclose(traj[:, 4] - traj[:, 5], y0[4] - y0[5], atol=1e-7)


# --------------------------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: A.zucchet_plateau(1, 8), "T = 1"),
        (lambda: A.zucchet_plateau(8, 0), "d = 0"),
        (lambda: A.zucchet_plateau(8, 8, 8), "B = 8"),
        (lambda: A.zucchet_plateau(8, 8, key="content"), "key = 'content'"),
        (lambda: A.zucchet_plateau(8, 8, rtol=0.5), "rtol = 0.5"),
        (lambda: A.zucchet_plateau(8, 8, t_max=-1.0), "t_max = -1.0"),
        (lambda: A.singh_initial_state(0, 0.1), "n = 0"),
        (lambda: A.singh_initial_state(4, 0.0), "sigma = 0.0"),
        (lambda: A.singh_initial_state(4, 0.1, "ones"), "init = 'ones'"),
        (lambda: A.singh_escape_time(4, 1.5), "sigma = 1.5"),
        (lambda: A.singh_plateau(np.zeros(5), 4, 10.0), "state0"),
        (lambda: A.singh_trajectory(np.zeros(6), 4, [2.0, 1.0]), "times"),
        (lambda: A.loglog_slope([1.0], [1.0]), "x, y"),
        (
            lambda: integrate_cells("dp5", np.zeros((1, 2)), np.zeros((1, 1, 1)), np.zeros((1, 4)), [0.0], [[1.0]], 0),
            "dp5",
        ),
        (
            lambda: integrate_cells(
                "zucchet",
                np.zeros((1, 2)),
                np.zeros((1, 1, 1)),
                np.zeros((1, 4)),
                [0.0],
                [[1.0]],
                0,
                stop_at_crossing=True,
            ),
            "stop_at_crossing",
        ),
    ],
)
def test_bad_arguments_name_the_parameter(call, needle):
    with pytest.raises(ValueError) as info:
        call()
    assert needle in str(info.value)
