"""The published toy models of emergence, as reduced gradient flows: calibration anchors of the machinery.

Two toys, each reduced *exactly* to a few scalars, its flow derived here once with sympy from its loss (taken in
expectation over the data where there is data), lambdified, and integrated by zipfhead's one ODE integrator
(:func:`theory.ode.integrate_cells`, adaptive Bogacki-Shampine 3(2), ``numba.prange`` over a parameter grid) as
its models ``singh`` and ``zucchet``. Time is gradient-flow time (learning rate x steps). The derivations are
checked step by step in ``proofs_notebooks/03_anchor_toys.py``.

**Plateau length** (both toys): the half-rise transition of the order parameter O(t) (the one rule of
:mod:`theory.transition`, unsmoothed, on every accepted step) with its end known: both order parameters tend to 1
at the global minimum, so the plateau ends where O(t) first reaches O(0) + (1 - O(0)) / 2, interpolated linearly
between the two accepted steps around it, and no fitted asymptote is needed.

Singh et al. 2024, "What needs to go right for an induction head?" (arXiv 2404.07129), three-factor toy
    L = 1/2 mean_{ijk} (a*_i b*_j c*_k - a_i b_j c_k)^2  over vectors a, b, c in R^n.
    Targets: a* = b* = c* = 1 (all ones), so every entry of the target tensor is 1 and L(0) = 1/2 whatever n.
    Glossary: ``n`` factor dimension; for a factor f in {a, b, c}: x_f = <f, 1>/n (overlap with its target),
    r_f = |f|^2/n (mean square); the order parameter P = x_a x_b x_c = <T, T*>/n^3, which goes 0 -> 1.
    Why these scalars: <u1 (x) v1 (x) w1, u2 (x) v2 (x) w2> = <u1,u2><v1,v2><w1,w2>, so L depends on the
    factors only through (x_f, r_f), and -grad_f L lies in span{1, f}; the flow of the six scalars is closed and
    exact for any initialisation (not only aligned ones). The scalar flow is  d phi/dt = -G grad_phi L  with the
    Gram matrix G = (1/n) [[1, 2 x], [2 x, 4 r]] of the features' gradients.
    Init: ``"aligned"`` f(0) = sigma 1 (x = sigma, r = sigma^2; the flow then stays on x_a = x_b = x_c,
    r = x^2), or ``"random"`` f(0) with i.i.d. N(0, sigma^2) entries (seeded).
    Clamping: a clamped factor has zero velocity (held at the value it was given).

Zucchet et al. 2025, "The emergence of sparse attention: impact of data distribution and benefits of
repetition" (arXiv 2505.17863), single-location regression
    Tokens x_1..x_T in R^d, i.i.d. N(0, I_d), except that one token x* is repeated at B fixed positions (B = 1:
    no repetition); target y* = W* x* with W* in R^{d x d} orthogonal. Model: y = W sum_t softmax(kappa m)_t x_t,
    m_t = 1 at the B relevant positions and 0 elsewhere, so kappa is the query-key score of the relevant token
    (the same token, so the same key, at each of its B copies) and W the value/readout matrix.
    Loss: L = 1/(2d) E ||y* - y||^2, the mean over the d output coordinates.
    State: ``kappa`` and the value alignment w = <W, W*>/d (W(0) = w0 W*, so W stays on the line W = w W*:
    the gradient is a combination of W* and W). The order parameter is the attention mass on the relevant
    tokens, s = B e^kappa / (B e^kappa + T - B).
    Expected loss (exact, no large-d or large-T approximation):
        L = 1/2 [(1 - s w)^2 + w^2 (1 - s)^2 / (T - B)].
    Gradient flow:  dkappa/dt = -g dL/dkappa,  dw/dt = -(1/d) dL/dw  (1/d = |W*|_F^2 / d^2, the Gram entry of w).
    The 1/d, i.e. the value learning d times slower than the score, is where the sqrt(d) comes from; with the sum
    over outputs instead of the mean, time is divided by d and the exponent of d becomes -1/2.
    The metric g of the score: ``key="shared"`` g = 1 (one score shared by the B copies, as content-based
    attention gives a repeated token); ``key="positional"`` g = 1/B + 1/(T - B) (a free logit per position: the
    score of each copy receives only 1/B of the gradient). Only ``"shared"`` gives the published T/B law.

Closed forms (derived in the notebook):
    Singh, aligned init, nothing clamped: dx/dt = (x^2 - x^5)/n, so the time to go from x0 to x1 is
    n [I(x1) - I(x0)], I = antiderivative of 1/(x^2 (1 - x^3)); for sigma -> 0 the plateau is n/sigma + O(n)
    (the finite-time blow-up of dx/dt = x^2/n). With b and c clamped at their final value 1:
    dx_a/dt = (1 - x_a)/n, plateau n ln 2 for every sigma.
    Zucchet, d >> 1 and T >> B: during the plateau dw/dt ~ s/d and dkappa/dt ~ g w s with s ~ B e^kappa / T,
    so z = e^-kappa obeys z z'' = -g B^2/(d T^2); its first integral z'^2 = 2 g B^2 ln(1/z)/(d T^2) gives the
    plateau (T/B) sqrt(pi d/(2 g)) erf(sqrt(kappa_half)) -> (T/B) sqrt(pi d / 2) for the shared key:
    slopes +1 in T, +1/2 in d and -1 in B (shared key); -1/2 in B with positional logits (g ~ 1/B).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import sympy as sp

from zipfhead.theory._anchors_flow import singh_track, zucchet_track
from zipfhead.theory._codegen import kernel_module, write_module
from zipfhead.theory._validate import check_choice, check_int, check_real, check_seed
from zipfhead.theory.ode import integrate_cells

__all__ = [
    "ATOL",
    "KERNEL_MODULES",
    "MAX_STEPS",
    "RTOL",
    "SINGH",
    "ZUCCHET",
    "ZUCCHET_KEYS",
    "FlowResult",
    "ReducedModel",
    "gram_flow",
    "kernel_source",
    "loglog_slope",
    "rank_one_inner",
    "singh_escape_time",
    "singh_initial_state",
    "singh_plateau",
    "singh_trajectory",
    "write_kernels",
    "zucchet_escape_time",
    "zucchet_key_metric",
    "zucchet_plateau",
    "zucchet_trajectory",
]


# --------------------------------------------------------------------------------------------------------------
# Derivations (sympy). Each model: state symbols, parameter symbols, loss, flow, order parameter.
# --------------------------------------------------------------------------------------------------------------
class ReducedModel(NamedTuple):
    """A reduced model's sympy derivation: the flow d(state)/dt = ``flow`` and the order parameter."""

    state: tuple[sp.Symbol, ...]
    params: tuple[sp.Symbol, ...]
    loss: sp.Expr
    flow: tuple[sp.Expr, ...]
    order: sp.Expr


def rank_one_inner(u: tuple[sp.Expr, ...], v: tuple[sp.Expr, ...]) -> sp.Expr:
    """<u1 (x) u2 (x) u3, v1 (x) v2 (x) v3> = prod_i <u_i, v_i>, given the factors' inner products as pairs."""
    return sp.Mul(*(ui * vi for ui, vi in zip(u, v, strict=True)))


def gram_flow(loss: sp.Expr, features: list[tuple[sp.Symbol, ...]], grams: list[sp.Matrix]) -> tuple[sp.Expr, ...]:
    """Gradient flow of scalar features phi of the parameters: d phi/dt = -G grad_phi L, per block of features.

    Each block is the features of one parameter group with Gram matrix G_ij = <grad phi_i, grad phi_j> (the
    chain rule: d phi_i/dt = <grad phi_i, -grad_theta L> and grad_theta L = sum_j dL/dphi_j grad phi_j).
    """
    out: list[sp.Expr] = []
    for block, gram in zip(features, grams, strict=True):
        grad = sp.Matrix([sp.diff(loss, f) for f in block])
        out.extend(sp.expand(e) for e in -gram * grad)
    return tuple(out)


def _derive_singh() -> ReducedModel:
    n = sp.Symbol("n", positive=True)
    xs = sp.symbols("x_a x_b x_c", real=True)
    rs = sp.symbols("r_a r_b r_c", nonnegative=True)
    # Inner products (pairs): <f, f*> = n x_f, <f, f> = n r_f, <f*, f*> = <1, 1> = n.
    target = (n, n, n)
    model_target = tuple(n * x for x in xs)
    model_model = tuple(n * r for r in rs)
    sq = rank_one_inner(target, (1, 1, 1)) - 2 * rank_one_inner(model_target, (1, 1, 1))
    sq += rank_one_inner(model_model, (1, 1, 1))
    loss = sp.expand(sq / (2 * n**3))  # 1/2 mean over the n^3 entries
    grams = [sp.Matrix([[1, 2 * x], [2 * x, 4 * r]]) / n for x, r in zip(xs, rs, strict=True)]
    flat = gram_flow(loss, [(x, r) for x, r in zip(xs, rs, strict=True)], grams)
    # gram_flow returns (x_a, r_a, x_b, r_b, x_c, r_c); the state is ordered (x_a, x_b, x_c, r_a, r_b, r_c).
    flow = (flat[0], flat[2], flat[4], flat[1], flat[3], flat[5])
    return ReducedModel((*xs, *rs), (n,), loss, flow, xs[0] * xs[1] * xs[2])


def _derive_zucchet() -> ReducedModel:
    T, B, d, g = sp.symbols("T B d g", positive=True)
    kappa, w = sp.symbols("kappa w", real=True)
    t = sp.Symbol("t", integer=True, positive=True)
    s = B * sp.exp(kappa) / (B * sp.exp(kappa) + T - B)  # softmax mass on the B relevant positions
    # E||W* x* - W (s x* + sum_{t not relevant} s_t x_t)||^2 with E[x x^T] = I, W = w W*, tr(W*^T W*) = d:
    # tr((W* - s W)^T (W* - s W)) + sum_t s_t^2 tr(W^T W), each irrelevant weight s_t = (1 - s)/(T - B).
    tr_tt, tr_tw, tr_ww = d, w * d, w**2 * d
    noise = sp.Sum(((1 - s) / (T - B)) ** 2, (t, 1, T - B)).doit()
    loss = sp.simplify((tr_tt - 2 * s * tr_tw + (s**2 + noise) * tr_ww) / (2 * d))
    # Gram entries: <grad kappa, grad kappa> = g (see the module docstring), <grad w, grad w> = |W*|^2/d^2 = 1/d.
    flow = (sp.factor(-g * sp.diff(loss, kappa)), sp.factor(-sp.diff(loss, w) / d))
    return ReducedModel((kappa, w), (T, d, B, g), loss, flow, s)


#: The Singh et al. three-factor toy: state (x_a, x_b, x_c, r_a, r_b, r_c), parameter (n,).
SINGH: ReducedModel = _derive_singh()
#: The Zucchet et al. single-location regression: state (kappa, w), parameters (T, d, B, g).
ZUCCHET: ReducedModel = _derive_zucchet()
ZUCCHET_KEYS = ("shared", "positional")


def zucchet_key_metric(key: str) -> sp.Expr:
    """The Gram entry g = |grad kappa|^2 of the relevant-token score for ``key`` (a sympy expression in T, B)."""
    T, _, B, _ = ZUCCHET.params
    if check_choice("key", key, ZUCCHET_KEYS) == "shared":
        return sp.Integer(1)
    # kappa = mean logit of the B relevant positions - mean logit of the T - B others.
    i = sp.Symbol("i", integer=True, positive=True)
    return sp.Sum(1 / B**2, (i, 1, B)).doit() + sp.Sum(1 / (T - B) ** 2, (i, 1, T - B)).doit()


# --------------------------------------------------------------------------------------------------------------
# The flows as models of the one integrator (theory.ode): drift, tracked order parameter, nothing probed.
# --------------------------------------------------------------------------------------------------------------
MAX_STEPS = 10_000_000  # attempted steps per cell: far above what any tested cell takes (at most tens of thousands)
#: default error targets. The plateau is interpolated linearly between accepted steps, an error second order in
#: the step: at rtol 1e-9 the clamped toy's exponential approach is located to 7e-7 of the closed form n ln 2, at
#: 1e-11 to 4e-8, and the free toy's plateau to 2e-9 (measured at n 16-256); a cell then takes 3,000-15,000 steps
RTOL, ATOL = 1e-11, 1e-14


class FlowResult(NamedTuple):
    """A grid integration. Shapes: (C,) for C cells, state (C, S).

    ``plateau``: first time the order parameter reached half-way to 1 (NaN if not reached by ``t_max``);
    ``state``/``time``: where the integration stopped (``t_max``, or the first accepted step at or past the
    crossing with ``until_crossing``); ``steps``: attempted steps; ``ok``: False where the step budget ran out or
    the state stopped being finite.
    """

    plateau: np.ndarray
    state: np.ndarray
    time: np.ndarray
    steps: np.ndarray
    ok: np.ndarray


# The flows as generated Numba kernels (theory._codegen): (*flow, order) of each toy at a state, regenerated by
# ``python -m zipfhead.theory.anchors`` and checked against the derivations above by a test.
KERNEL_MODULES = {
    "singh": Path(__file__).with_name("_singh_kernel.py"),
    "zucchet": Path(__file__).with_name("_zucchet_kernel.py"),
}


def kernel_source(model: str) -> str:
    """Source of ``theory/_<model>_kernel.py``: one ``<model>_terms(*state, *params)`` -> (*flow, order)."""
    m = {"singh": SINGH, "zucchet": ZUCCHET}[check_choice("model", model, tuple(KERNEL_MODULES))]
    command = "python -m zipfhead.theory.anchors"
    names = f"{model.upper()}.flow and {model.upper()}.order"
    # no fastmath: Zucchet's flow overflows for large kappa, and the integrator must see the NaN to reject the step
    exprs, args = (*m.flow, m.order), (*m.state, *m.params)
    return kernel_module(command, names, f"{model}_terms", exprs, args, fastmath=False)


def write_kernels() -> None:
    """Regenerate ``theory/_singh_kernel.py`` and ``theory/_zucchet_kernel.py`` (write, then rename)."""
    for model, path in KERNEL_MODULES.items():
        write_module(path, kernel_source(model))


def _plateau(model: str, y0: np.ndarray, params: np.ndarray, t_max: np.ndarray, until, rtol, atol) -> FlowResult:
    """C cells through :func:`theory.ode.integrate_cells`: the plateau is the half-rise transition of the order
    parameter O from O(0) to its known end 1."""
    C = y0.shape[0]
    track = singh_track if model == "singh" else zucchet_track
    order0 = np.array([track(y, np.zeros((1, 1)), p) for y, p in zip(y0, params, strict=True)])
    res = integrate_cells(
        model, y0, np.zeros((C, 1, 1)), params, order0, t_max[:, None], 0,
        final=np.ones(C), min_rise=0.0, stop_at_crossing=bool(until), rtol=rtol, atol=atol, max_steps=MAX_STEPS,
    )  # fmt: skip
    return FlowResult(res.transition, res.state, res.time, res.steps, res.ok)


def _trajectory(model: str, y0: np.ndarray, params: np.ndarray, times: np.ndarray, rtol, atol) -> np.ndarray:
    """The state at ``times`` (non-decreasing, >= 0): (M, S), by the integrator's dense output."""
    unique, where = np.unique(times, return_inverse=True)
    res = integrate_cells(
        model, y0[None], np.zeros((1, 1, 1)), params[None], np.zeros(1), unique[None], 0,
        rtol=rtol, atol=atol, max_steps=MAX_STEPS,
    )  # fmt: skip
    return res.ys[0][where]


# --------------------------------------------------------------------------------------------------------------
# Public face
# --------------------------------------------------------------------------------------------------------------
def _as_grid(name: str, value: object, low: float, high: float, *, integer: bool, low_open: bool = False) -> np.ndarray:
    """``value`` (scalar or array-like) as a float array, every element checked (the error names the first bad)."""
    arr = np.asarray(value)
    if arr.dtype == object or arr.size == 0:
        raise ValueError(f"{name} = {value!r} is not allowed: {name} must be a non-empty array of numbers")
    for v in np.unique(arr.ravel()):
        item = v.item()
        if integer:
            if isinstance(item, float) and item.is_integer():
                item = int(item)
            check_int(name, item, int(low), None if math.isinf(high) else int(high))
        else:
            check_real(name, item, low, high, low_open=low_open)
    return arr.astype(np.float64)


def _kernel_array(a: np.ndarray) -> np.ndarray:
    """A writable C-contiguous float64 copy: one array type per kernel argument, so one compiled signature."""
    return np.array(a, dtype=np.float64, order="C", copy=True)


def _tolerances(rtol: float, atol: float) -> tuple[float, float]:
    return check_real("rtol", rtol, 1e-14, 1e-2), check_real("atol", atol, 1e-300, 1e-2)


def singh_initial_state(n: int, sigma: float, init: str = "aligned", seed: int = 0) -> np.ndarray:
    """Initial (x_a, x_b, x_c, r_a, r_b, r_c), shape (6,), of the three-factor toy at scale ``sigma``.

    ``init="aligned"``: every factor is sigma 1 (x = sigma, r = sigma^2). ``init="random"``: i.i.d.
    N(0, sigma^2) entries drawn from ``numpy.random.default_rng(seed)`` (factors a, b, c in turn).
    """
    n = check_int("n", n, 1, 1 << 24)
    sigma = check_real("sigma", sigma, 0.0, 10.0, low_open=True)
    if check_choice("init", init, ("aligned", "random")) == "aligned":
        return np.array([sigma] * 3 + [sigma**2] * 3)
    f = np.random.default_rng(check_seed(seed)).normal(0.0, sigma, size=(3, n))
    return np.concatenate([f.mean(axis=1), (f**2).mean(axis=1)])


def _singh_grid(state0, n, clamped) -> tuple[np.ndarray, np.ndarray]:
    s0 = np.atleast_2d(np.asarray(state0, dtype=np.float64))
    if s0.shape[-1] != 6 or not np.all(np.isfinite(s0)) or np.any(s0[:, 3:] < 0):
        raise ValueError(
            f"state0 of shape {s0.shape} is not allowed: state0 must be (C, 6) finite (x_a, x_b, x_c, r_a, r_b, r_c)"
            " with r >= 0"
        )
    nn = _as_grid("n", n, 1, math.inf, integer=True)
    free = 1.0 - np.atleast_2d(np.asarray(clamped, dtype=bool)).astype(np.float64)
    if free.shape[-1] != 3:
        raise ValueError(f"clamped = {clamped!r} is not allowed: clamped must be 3 booleans (a, b, c) per cell")
    C = np.broadcast_shapes(s0.shape[:1], nn.reshape(-1).shape, free.shape[:1])[0]
    params = np.empty((C, 4))
    params[:, 0] = np.broadcast_to(nn.reshape(-1), (C,))
    params[:, 1:] = np.broadcast_to(free, (C, 3))
    return _kernel_array(np.broadcast_to(s0, (C, 6))), params


def singh_plateau(
    state0: np.ndarray,
    n: int | np.ndarray,
    t_max: float | np.ndarray,
    *,
    clamped: tuple[bool, bool, bool] | np.ndarray = (False, False, False),
    until_crossing: bool = True,
    rtol: float = RTOL,
    atol: float = ATOL,
) -> FlowResult:
    """Integrate the three-factor toy over a grid of C cells; plateau = time P = x_a x_b x_c is half-way to 1.

    Args:
        state0: (6,) or (C, 6) initial (x_a, x_b, x_c, r_a, r_b, r_c) (see :func:`singh_initial_state`).
        n: factor dimension, scalar or (C,).
        t_max: horizon in gradient-flow time, scalar or (C,).
        clamped: (3,) or (C, 3) booleans; a clamped factor keeps its initial (x, r).
        until_crossing: stop each cell soon after its crossing (the returned state is then not the final one).
    """
    y0, params = _singh_grid(state0, n, clamped)
    C = y0.shape[0]
    tm = np.broadcast_to(_as_grid("t_max", t_max, 0.0, 1e300, integer=False, low_open=True).reshape(-1), (C,))
    rtol, atol = _tolerances(rtol, atol)
    return _plateau("singh", y0, params, _kernel_array(tm), until_crossing, rtol, atol)


def singh_trajectory(
    state0: np.ndarray,
    n: int,
    times: np.ndarray,
    *,
    clamped: tuple[bool, bool, bool] = (False, False, False),
    rtol: float = RTOL,
    atol: float = ATOL,
) -> np.ndarray:
    """The state at ``times`` (non-decreasing, >= 0; shape (M,)): an array of shape (M, 6)."""
    y0, params = _singh_grid(state0, n, clamped)
    times = _check_times(times)
    rtol, atol = _tolerances(rtol, atol)
    return _trajectory("singh", y0[0], params[0], times, rtol, atol)


def _check_times(times) -> np.ndarray:
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    if t.size == 0 or not np.all(np.isfinite(t)) or np.any(t < 0) or np.any(np.diff(t) < 0):
        raise ValueError(f"times = {times!r} is not allowed: times must be a non-empty non-decreasing array >= 0")
    return t


def _zucchet_params(T, d, B, key) -> np.ndarray:
    TT = _as_grid("T", T, 2, math.inf, integer=True)
    dd = _as_grid("d", d, 1, math.inf, integer=True)
    BB = _as_grid("B", B, 1, math.inf, integer=True)
    TT, dd, BB = np.broadcast_arrays(TT.reshape(-1), dd.reshape(-1), BB.reshape(-1))
    bad = BB >= TT
    if np.any(bad):
        i = int(np.argmax(bad))
        raise ValueError(
            f"B = {int(BB[i])} is out of range: B must be an integer in [1, T - 1] = [1, {int(TT[i]) - 1}]"
        )
    g = sp.lambdify(ZUCCHET.params[::2], zucchet_key_metric(key), modules="numpy")(TT, BB)
    return _kernel_array(np.stack([TT, dd, BB, np.broadcast_to(g, TT.shape)], axis=1))


def zucchet_plateau(
    T: int | np.ndarray,
    d: int | np.ndarray,
    B: int | np.ndarray = 1,
    *,
    key: str = "shared",
    kappa0: float = 0.0,
    w0: float = 0.0,
    t_max: float | np.ndarray | None = None,
    until_crossing: bool = True,
    rtol: float = RTOL,
    atol: float = ATOL,
) -> FlowResult:
    """Integrate the single-location regression over a grid (T, d, B broadcast to C cells).

    Plateau = first time the attention mass s on the relevant tokens is half-way from s(0) to 1. Default
    horizon: 20 x the closed-form escape time :func:`zucchet_escape_time` (enough on the whole tested range).
    """
    params = _zucchet_params(T, d, B, key)
    C = params.shape[0]
    kappa0 = check_real("kappa0", kappa0, -50.0, 50.0)
    w0 = check_real("w0", w0, -1e3, 1e3)
    if t_max is None:
        t_max = 20.0 * zucchet_escape_time(params[:, 0], params[:, 1], params[:, 2], key=key)
    tm = np.broadcast_to(_as_grid("t_max", t_max, 0.0, 1e300, integer=False, low_open=True).reshape(-1), (C,))
    rtol, atol = _tolerances(rtol, atol)
    y0 = np.tile([kappa0, w0], (C, 1))
    return _plateau("zucchet", _kernel_array(y0), params, _kernel_array(tm), until_crossing, rtol, atol)


def zucchet_trajectory(
    T: int,
    d: int,
    B: int,
    times: np.ndarray,
    *,
    key: str = "shared",
    kappa0: float = 0.0,
    w0: float = 0.0,
    rtol: float = RTOL,
    atol: float = ATOL,
) -> np.ndarray:
    """(kappa, w) at ``times`` (shape (M,)): an array of shape (M, 2)."""
    params = _zucchet_params(T, d, B, key)
    times = _check_times(times)
    y0 = np.array([check_real("kappa0", kappa0, -50.0, 50.0), check_real("w0", w0, -1e3, 1e3)])
    rtol, atol = _tolerances(rtol, atol)
    return _trajectory("zucchet", y0, params[0], times, rtol, atol)


# --------------------------------------------------------------------------------------------------------------
# Closed forms
# --------------------------------------------------------------------------------------------------------------
@cache
def _singh_time_integral() -> Callable[[float], float]:
    """I(x) with I' = n / (x^2 - x^5) at n = 1: the symmetric flow's time antiderivative (sympy, exact)."""
    x = sp.Symbol("x", positive=True)
    rhs = SINGH.flow[0].subs({s: x for s in SINGH.state[:3]}).subs({r: x**2 for r in SINGH.state[3:]})
    antiderivative = sp.integrate(sp.apart(1 / (rhs * SINGH.params[0]), x), x)
    # sympy writes log(x - 1); on 0 < x < 1 use log(1 - x), which differs by a constant (i pi / 3 in total).
    antiderivative = antiderivative.subs(sp.log(x - 1), sp.log(1 - x))
    return sp.lambdify(x, antiderivative, modules="math")


def singh_escape_time(n: int | np.ndarray, sigma: float | np.ndarray, clamped: bool = False) -> np.ndarray:
    """Closed-form plateau length of the three-factor toy from the aligned init at scale sigma (sigma < 1).

    Unclamped: P = x^3 with dx/dt = (x^2 - x^5)/n, so the plateau is n [I(x_h) - I(sigma)] with
    x_h = ((1 + sigma^3)/2)^(1/3) and I the antiderivative of 1/(x^2 (1 - x^3)) (= n/sigma + O(n) as sigma -> 0).
    Clamped (b = c = 1, their final value): P = x_a, dx_a/dt = (1 - x_a)/n, plateau n ln 2.
    """
    nn = _as_grid("n", n, 1, math.inf, integer=True)
    sg = _as_grid("sigma", sigma, 0.0, 1.0, integer=False, low_open=True)
    if np.any(sg >= 1.0):
        raise ValueError(f"sigma = {sigma!r} is out of range: sigma must be a finite number in (0, 1)")
    if clamped:
        return nn * math.log(2.0) + 0.0 * sg
    anti = np.vectorize(_singh_time_integral())
    x_half = ((1.0 + sg**3) / 2.0) ** (1.0 / 3.0)
    return nn * (anti(x_half) - anti(sg))


def zucchet_escape_time(
    T: int | np.ndarray, d: int | np.ndarray, B: int | np.ndarray = 1, *, key: str = "shared"
) -> np.ndarray:
    """Closed-form plateau length of the single-location regression (gradient-flow time), shape (C,).

    t_h = (T/B) sqrt(pi d / (2 g)) erf(sqrt(kappa_h)), with e^kappa_h = s_h (T - B) / (B (1 - s_h)) the score
    that puts the attention mass half-way, s_h = (1 + B/T)/2, and g the score's metric (1 shared; 1/B + 1/(T - B)
    positional). From the plateau flow to leading order in s and w: z = e^-kappa obeys z z'' = -g B^2 / (d T^2),
    z(0) = 1, z'(0) = 0 (notebook, section 2). Valid for s(0) = B/T << 1 and w at the crossing,
    sqrt(2 kappa_h / (g d)), << 1; the integration agrees within 6% for T/B >= 64, d >= 64 (tests).
    """
    params = _zucchet_params(T, d, B, key)
    TT, dd, BB, g = params.T
    s_h = 0.5 * (1.0 + BB / TT)
    kappa_h = np.log(s_h * (TT - BB) / (BB * (1.0 - s_h)))
    erf = np.vectorize(math.erf)
    return (TT / BB) * np.sqrt(math.pi * dd / (2.0 * g)) * erf(np.sqrt(kappa_h))


def loglog_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of log y against log x (both positive, shape (M,), M >= 2)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.size < 2 or np.any(~(x > 0)) or np.any(~(y > 0)):
        raise ValueError("x, y are not allowed: x and y must be positive arrays of the same shape, at least 2 points")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


if __name__ == "__main__":
    write_kernels()
