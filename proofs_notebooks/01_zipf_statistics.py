# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The exact statistics of Zipfian data, checked
#
# This notebook walks through the closed forms behind `theory.symbolic` and `theory.statistics` and
# **asserts** each of them: symbolically with sympy where the identity holds for every parameter value,
# with mpmath at high precision where it is a statement about special functions, against the three
# evaluators of `theory.statistics` (exact Numba sum, asymptotic Hurwitz series, sympy reference), and
# finally against Monte Carlo estimates from the Numba samplers of `theory.samplers`.
#
# Notation follows the glossary of `theory.distributions`: ranks $k = 1, \dots, K$ carry the
# Zipf-Mandelbrot probabilities
# $$p_k = \frac{(k+q)^{-\alpha}}{Z}, \qquad Z = \sum_{k=1}^{K} (k+q)^{-\alpha}.$$
#
# The notebook runs top to bottom as a plain script (`python proofs_notebooks/01_zipf_statistics.py`);
# every check is an `assert`, so a failing identity stops it.

# %%
from __future__ import annotations

import itertools
import math
import time

import mpmath
import numpy as np
import sympy as sp

from zipfhead.theory import symbolic as sym
from zipfhead.theory.distributions import ClassificationTask, TokenStreamTask, Zipf
from zipfhead.theory.samplers import sample_classes, sample_token_streams
from zipfhead.theory.statistics import (
    classification_statistics,
    entropy,
    mean_rank,
    memorisation_statistics,
    normaliser,
    rank_sum,
    rank_sum_with_bound,
    token_statistics,
)

START = time.perf_counter()
CHECKS: dict[str, int] = {}  # section -> number of assertions passed


def passed(section: str, n: int = 1) -> None:
    """Record n passed assertions of a section (for the closing summary)."""
    CHECKS[section] = CHECKS.get(section, 0) + n


# The sympy symbols of theory.symbolic, under short names.
k, K, N, B, T = sym.k, sym.K, sym.N, sym.B, sym.T
t, c, tau, p, Z = sym.t, sym.c, sym.tau, sym.p, sym.Z
alpha, q, p_B, p_C = sym.alpha, sym.q, sym.p_B, sym.p_C
S = sym.STATISTICS


def uniform_limit(expr: sp.Expr) -> sp.Expr:
    """A statistic at alpha = 0: every weight is 1, Z is the sum of K ones; the rank sums are then done."""
    z_uniform = sym.normaliser_sum.subs(alpha, 0).doit()
    return expr.subs(alpha, 0).subs(Z, z_uniform).doit()


def is_zero(expr: sp.Expr) -> bool:
    return sp.simplify(expr) == 0


# %% [markdown]
# ## 1. The Zipf-Mandelbrot normaliser
#
# $Z$ is a shifted generalised harmonic number. Writing the Hurwitz zeta function
# $\zeta(s, a) = \sum_{n \ge 0} (n + a)^{-s}$ (for $s > 1$, and by analytic continuation elsewhere),
# the finite sum is the difference of two of its tails:
# $$Z = \sum_{k=1}^{K} (k+q)^{-\alpha} = \zeta(\alpha, 1+q) - \zeta(\alpha, K+1+q),$$
# which holds for every $\alpha \ne 1$ (the continuation keeps the difference equal to the finite sum). At
# $\alpha = 1$ both sides are replaced by digamma functions: $Z = \psi(K+1+q) - \psi(1+q)$.
#
# **Uniform limit.** At $\alpha = 0$ each weight is 1, so $Z = K$; on the closed form this is
# $\zeta(0, a) = \tfrac12 - a$, whence $(\tfrac12 - 1 - q) - (\tfrac12 - K - 1 - q) = K$.

# %%
Z_closed = sp.zeta(alpha, 1 + q) - sp.zeta(alpha, K + 1 + q)

assert sym.normaliser_sum.subs(alpha, 0).doit() == K
assert sp.limit(Z_closed, alpha, 0) == K
assert is_zero(Z_closed.subs(alpha, 0) - K)
passed("1 normaliser", 3)

# The closed form equals the finite sum (30 significant digits), for a few (alpha, q, K).
closed_cases = [
    (sp.Rational(1, 2), sp.Integer(0), 7),
    (sp.Rational(1, 4), sp.Integer(10), 1000),
    (sp.Rational(3, 2), sp.Rational(3, 10), 40),
    (sp.Integer(2), sp.Rational(5, 2), 100),
    (sp.Rational(37, 10), sp.Integer(0), 13),
]
with mpmath.workdps(40):
    for a_, q_, K_ in closed_cases:
        closed = Z_closed.subs({alpha: a_, q: q_, K: K_}).evalf(35)
        finite = mpmath.fsum((kk + mpmath.mpf(q_)) ** (-mpmath.mpf(a_)) for kk in range(1, K_ + 1))
        rel = abs(mpmath.mpf(closed) - finite) / finite
        print(
            f"alpha={float(a_):<5} q={float(q_):<5} K={K_:<5} Z={mpmath.nstr(finite, 18):<22} rel.diff={float(rel):.1e}"
        )
        assert rel < 1e-30, (a_, q_, K_, rel)
        passed("1 normaliser")
    # alpha = 1: the digamma form.
    for q_, K_ in [(0, 10), (0.75, 333)]:
        finite = mpmath.fsum(1 / (kk + mpmath.mpf(q_)) for kk in range(1, K_ + 1))
        closed = mpmath.digamma(K_ + 1 + q_) - mpmath.digamma(1 + q_)
        assert abs(closed - finite) / finite < 1e-30
        passed("1 normaliser")

# The exact (Numba) normaliser agrees with the closed form at K = 10^6.
for a_, q_ in [(0.5, 0.0), (1.0, 0.0), (1.3, 2.0), (2.5, 0.0)]:
    K_ = 10**6
    with mpmath.workdps(30):
        if a_ == 1.0:
            closed = mpmath.digamma(K_ + 1 + q_) - mpmath.digamma(1 + q_)
        else:
            closed = mpmath.zeta(a_, 1 + q_) - mpmath.zeta(a_, K_ + 1 + q_)
    assert abs(normaliser(Zipf(K_, a_, q_)) / float(closed) - 1) < 1e-12
    passed("1 normaliser")

# %% [markdown]
# **Large-$K$ asymptotics.** The Euler-Maclaurin expansion of the Hurwitz tail,
# $\zeta(\alpha, a) = \frac{a^{1-\alpha}}{\alpha-1} + \frac{a^{-\alpha}}{2} + O(a^{-\alpha-1})$, with
# $a = K + 1 + q$ and $a^{1-\alpha} = K^{1-\alpha} + (1-\alpha)(1+q) K^{-\alpha} + O(K^{-\alpha-1})$, gives
# $$Z = \zeta(\alpha, 1+q) + \frac{K^{1-\alpha}}{1-\alpha} + \left(q + \tfrac12\right) K^{-\alpha}
#     + O(K^{-\alpha-1}).$$
# Read by regime, the leading behaviour is
#
# * $\alpha < 1$: $Z \approx K^{1-\alpha}/(1-\alpha) + \zeta(\alpha, 1+q)$ (the power grows; the constant
#   $\zeta(\alpha, 1+q)$ is negative in the cases below, so the power alone over-estimates $Z$);
# * $\alpha = 1$, $q = 0$: $Z = H_K \approx \ln K + \gamma$ (the $\alpha \to 1$ limit of the two pole terms);
# * $\alpha > 1$: $Z \approx \zeta(\alpha, 1+q) - K^{1-\alpha}/(\alpha-1)$, a convergent series minus its tail.
#
# In every case the error of the leading form is $e(K) \approx (q + \tfrac12) K^{-\alpha}$, so the ratio
# $e(K) / e(10K)$ tends to $10^{\alpha}$, with a relative correction of order $1/K$. We check both facts with
# the (already verified) closed form at 40 digits.

# %%
with mpmath.workdps(40):
    mp = mpmath.mpf

    def z_exact(a_: float, q_: float, K_: int) -> mpmath.mpf:
        if a_ == 1:
            return mpmath.digamma(K_ + 1 + q_) - mpmath.digamma(1 + q_)
        return mpmath.zeta(mp(a_), 1 + mp(q_)) - mpmath.zeta(mp(a_), K_ + 1 + mp(q_))

    def z_leading(a_: float, q_: float, K_: int) -> mpmath.mpf:
        if a_ == 1:
            assert q_ == 0
            return mpmath.log(K_) + mpmath.euler
        return mp(K_) ** (1 - mp(a_)) / (1 - mp(a_)) + mpmath.zeta(mp(a_), 1 + mp(q_))

    print(f"{'alpha':>5} {'q':>4} {'K':>8} {'Z':>14} {'e(K)':>11} {'e K^a/(q+1/2)':>14} {'e(K)/e(10K)':>12} 10^alpha")
    for a_, q_ in [(0.5, 0.0), (0.5, 2.0), (1.0, 0.0), (1.5, 0.0), (2.5, 1.0)]:
        Ks = [10**3, 10**4, 10**5, 10**6]
        errs = [z_exact(a_, q_, K_) - z_leading(a_, q_, K_) for K_ in Ks]
        if a_ < 1:
            assert mpmath.zeta(mp(a_), 1 + mp(q_)) < 0
            assert all(z_exact(a_, q_, K_) < mp(K_) ** (1 - mp(a_)) / (1 - mp(a_)) for K_ in Ks)
            passed("1 normaliser", 2)
        for i, K_ in enumerate(Ks):
            scaled = errs[i] * mp(K_) ** a_ / (mp(q_) + mp(1) / 2)
            ratio = errs[i] / errs[i + 1] if i + 1 < len(Ks) else None
            print(
                f"{a_:>5} {q_:>4} {K_:>8} {float(z_exact(a_, q_, K_)):>14.8f} {float(errs[i]):>11.3e} "
                f"{float(scaled):>14.8f} {'' if ratio is None else f'{float(ratio):12.6f}':>12} {10**a_:.6f}"
            )
            # the error is the predicted next-order term, up to a relative O(1/K)
            assert abs(scaled - 1) < 10 * (1 + q_) ** 2 / K_, (a_, q_, K_, scaled)
            if ratio is not None:
                assert abs(ratio / 10**a_ - 1) < 10 * (1 + q_) ** 2 / K_, (a_, q_, K_, ratio)
                assert abs(errs[i + 1]) < abs(errs[i])
                passed("1 normaliser", 2)
            passed("1 normaliser")

# %% [markdown]
# ## 2. Entropy and mean rank
#
# Since $\ln p_k = -\alpha \ln(k+q) - \ln Z$ and $\sum_k p_k = 1$,
# $$H = -\sum_k p_k \ln p_k = \ln Z + \alpha \sum_k p_k \ln(k+q) = \ln Z + \alpha \langle \ln(k+q) \rangle,$$
# and the mean rank is $\langle k \rangle = \sum_k k\, p_k$. At $\alpha = 0$ the distribution is uniform:
# $H = \ln K$ and $\langle k \rangle = (K+1)/2$.

# %%
# The per-rank identity -p ln p = p (ln Z + alpha ln(k+q)), with p = (k+q)^-alpha / Z.
per_rank = -sym.p_k * sp.log(sym.p_k) - sym.p_k * (sp.log(Z) + alpha * sp.log(k + q))
assert is_zero(sp.expand_log(per_rank, force=True))
# ... summed: sum_k p_k = 1 turns sum_k p_k ln Z into ln Z, which is the form STATISTICS uses.
entropy_from_def = sp.log(Z) * sym.normaliser_sum / Z + alpha * sp.Sum(sym.rank_weight * sp.log(k + q), (k, 1, K)) / Z
assert is_zero(entropy_from_def.subs(Z, sym.normaliser_sum) - S["entropy_nats"].subs(Z, sym.normaliser_sum))

# alpha = 0: ln K and (K + 1) / 2.
assert is_zero(uniform_limit(S["entropy_nats"]) - sp.log(K))
assert is_zero(uniform_limit(S["mean_rank"]) - (K + 1) / 2)
passed("2 entropy, mean rank", 4)

# The evaluators against the definition, from the probability vector.
for zipf in [Zipf(1000, 1.0), Zipf(777, 0.6, 3.0), Zipf(50, 2.2, 0.5), Zipf(64, 0.0)]:
    probs = zipf.probs()
    h_def = -math.fsum((probs * np.log(probs)).tolist())
    m_def = math.fsum((np.arange(1, zipf.K + 1) * probs).tolist())
    assert abs(entropy(zipf) - h_def) < 1e-12 * h_def
    assert abs(mean_rank(zipf) - m_def) < 1e-12 * m_def
    passed("2 entropy, mean rank", 2)
assert abs(entropy(Zipf(64, 0.0)) - math.log(64)) < 1e-14
assert abs(mean_rank(Zipf(64, 0.0)) - 32.5) < 1e-12
passed("2 entropy, mean rank", 2)
print("H(Zipf(K=1000, alpha=1)) =", entropy(Zipf(1000, 1.0)), "nats; <k> =", mean_rank(Zipf(1000, 1.0)))

# %% [markdown]
# ## 3. P(query's class in context)
#
# In an i.i.d. context the query's class and the $N$ context classes are independent draws. Conditioning on the
# query's class $k$ (probability $p_k$), the context misses it with probability $(1 - p_k)^N$, so
# $$P_{\rm in} = \sum_k p_k \left[1 - (1 - p_k)^N\right].$$
# At $\alpha = 0$: $K \cdot \frac1K [1 - (1 - \frac1K)^N] = 1 - (1 - \frac1K)^N$.
#
# The training mixture holds a novel context with probability $p_C$ and, otherwise, a bursty one with probability
# $p_B$; both always contain the query's class. By total probability
# $P = p_C + (1-p_C)[p_B + (1-p_B) P_{\rm in}]$: linear in $p_B$, equal to 1 at $p_B = 1$. And it grows with $N$,
# since every factor $(1-p_k)^N$ shrinks.
#
# Expanding $(1-p_k)^N$ binomially turns the miss probability into power sums (the form the asymptotic evaluator
# uses): $\sum_k p_k (1-p_k)^N = \sum_{j=0}^{N} \binom{N}{j} (-1)^j \sum_k p_k^{j+1}$.

# %%
assert is_zero(uniform_limit(S["p_query_in_context_iid"]) - (1 - (1 - 1 / K) ** N))
mix = S["p_query_in_context"]
assert sp.diff(mix, p_B, 2) == 0
assert is_zero(mix.subs(p_B, 1) - 1)
assert is_zero(mix.subs(p_C, 1) - 1)
passed("3 P(in context)", 4)

# Increasing in N: i.i.d. (every N up to 64) and the task table's mixture (B = 1 divides every N).
zipf = Zipf(512, 1.0)
iid_curve = np.array([rank_sum("in_context", zipf, N=n) for n in range(1, 65)])
N_MIX = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
mix_curve = np.array(
    [
        classification_statistics(ClassificationTask(K=512, N=n, B=1, L=128, p_B=0.5, p_C=0.2))["p_query_in_context"]
        for n in N_MIX
    ]
)
# ... and the table's mixture is the law of total probability applied to the i.i.d. curve
bursty = 0.2 + 0.8 * 0.5
assert np.allclose(mix_curve, bursty + (1 - bursty) * iid_curve[np.array(N_MIX) - 1], rtol=0, atol=1e-15)
assert np.all(np.diff(iid_curve) > 0) and np.all(np.diff(mix_curve) > 0)
assert np.all((iid_curve > 0) & (iid_curve < 1)) and np.all(mix_curve < 1)
assert abs(iid_curve[0] - rank_sum("collision", zipf)) < 1e-14  # N = 1: the collision probability
passed("3 P(in context)", 4)
print("i.i.d. P(in context), K=512, alpha=1, N = 1, 8, 64:", iid_curve[[0, 7, 63]])

# The binomial expansion, numerically (small N: the alternating sum stays well conditioned).
for zipf in [Zipf(40, 1.2, 0.5), Zipf(300, 0.8)]:
    probs = zipf.probs()
    for n in range(0, 7):
        lhs = math.fsum((probs * (1 - probs) ** n).tolist())
        rhs = math.fsum(math.comb(n, j) * (-1) ** j * math.fsum((probs ** (j + 1)).tolist()) for j in range(n + 1))
        assert abs(lhs - rhs) < 1e-13, (zipf, n, lhs, rhs)
        if n > 0:
            assert abs((1 - rank_sum("in_context", zipf, N=n)) - lhs) < 1e-13
        passed("3 P(in context)")

# %% [markdown]
# ## 4. Distinct classes, and earlier items of the query's class
#
# By linearity over the indicators "class $k$ appears among the $N$ i.i.d. items",
# $$E[\#\text{distinct}] = \sum_k \left[1 - (1-p_k)^N\right]
#     \xrightarrow{\alpha = 0} K\left[1 - (1 - \tfrac1K)^N\right].$$
# Each of the $N$ context items shares the query's class with probability $\sum_k p_k^2$ (two independent
# draws collide), so
# $$E[\#\text{items of the query's class}] = N \sum_k p_k^2 \xrightarrow{\alpha = 0} N/K.$$
# A bursty (or novel) context has $N/B$ distinct classes with $B$ copies each, one of them the query's, so the
# training mixtures become $N/B$ and $B$ at $p_B = 1$.

# %%
assert is_zero(uniform_limit(S["expected_distinct_iid"]) - K * (1 - (1 - 1 / K) ** N))
assert is_zero(uniform_limit(S["expected_query_occurrences_iid"]) - N / K)
assert is_zero(S["expected_distinct"].subs(p_B, 1) - N / B)
assert is_zero(S["expected_query_occurrences"].subs(p_B, 1) - B)
assert sp.diff(S["expected_distinct"], p_B, 2) == 0 and sp.diff(S["expected_query_occurrences"], p_B, 2) == 0
passed("4 distinct, occurrences", 5)

# The task table obeys the same limits (p_B = 1, and the uniform distribution).
tab = classification_statistics(ClassificationTask(K=512, N=8, B=2, p_B=1.0, p_C=0.3))
assert tab["expected_distinct"] == 4 and tab["expected_query_occurrences"] == 2 and tab["p_query_in_context"] == 1
tab = classification_statistics(ClassificationTask(K=100, N=8, B=2, p_B=0.0, alpha=0.0))
assert abs(tab["expected_distinct"] - 100 * (1 - 0.99**8)) < 1e-12
assert abs(tab["expected_query_occurrences"] - 8 / 100) < 1e-15
assert abs(tab["p_query_in_context"] - (1 - 0.99**8)) < 1e-14
passed("4 distinct, occurrences", 4)

# %% [markdown]
# ## 5. Token streams: the trigger renewal formula
#
# With one trigger of per-position probability $p$, the $M = T-1$ positions $1..M$ (whose successor lies inside
# the sequence) are either *fresh* (the trigger with probability $p$) or *forced*: the position right after an
# occurrence holds the trigger's output, never the trigger. The induction signal needs two occurrences among
# them. No occurrence has probability $(1-p)^M$; a single one at $s < M$ has probability $p (1-p)^{M-2}$ (the
# $s-1$ fresh positions before and the $M-s-1$ after the forced $s+1$ all miss) and at $s = M$,
# $p(1-p)^{M-1}$. So
# $$g(p) = 1 - (1-p)^M - (M-1)\,p\,(1-p)^{M-2} - p(1-p)^{M-1}.$$
# We compare it with a brute-force sum over all $2^M$ occurrence patterns (a pattern with two adjacent
# occurrences has probability 0), and with a dynamic programme over positions for longer sequences.

# %%
g = sym.trigger_repeat_probability()
print("g(p) =", g)


def brute_force_repeat(M: int) -> sp.Expr:
    """P(>= 2 occurrences among M positions), summed over all 2^M occurrence patterns."""
    total = sp.Integer(0)
    norm = sp.Integer(0)
    for pattern in itertools.product((0, 1), repeat=M):
        prob = sp.Integer(1)
        forced = False
        for hit in pattern:
            if forced:
                prob = prob if not hit else sp.Integer(0)  # the output follows the trigger
            else:
                prob *= p if hit else 1 - p
            forced = bool(hit)
        norm += prob
        if sum(pattern) >= 2:
            total += prob
    assert sp.expand(norm - 1) == 0  # the patterns' probabilities sum to 1
    return total


def dp_repeat(M: int, p_val: sp.Rational) -> sp.Rational:
    """Same probability by a forward pass: state (occurrences so far capped at 2, next position forced)."""
    state = {(0, False): sp.Integer(1)}
    for _ in range(M):
        nxt: dict[tuple[int, bool], sp.Rational] = {}
        for (count, forced), w in state.items():
            if forced:
                moves = [((count, False), w)]
            else:
                moves = [((min(count + 1, 2), True), w * p_val), ((count, False), w * (1 - p_val))]
            for key, val in moves:
                nxt[key] = nxt.get(key, 0) + val
        state = nxt
    return sum(w for (count, _), w in state.items() if count == 2)


assert is_zero(g.subs(T, 2))  # M = 1: a single position cannot hold two occurrences
for M in range(2, 9):
    assert sp.expand(g.subs(T, M + 1) - brute_force_repeat(M)) == 0, M
    passed("5 trigger renewal")
for M in [2, 5, 16, 40, 100]:
    for p_val in [sp.Rational(1, 7), sp.Rational(2, 5), sp.Rational(1, 1000)]:
        assert g.subs({T: M + 1, p: p_val}) == dp_repeat(M, p_val), (M, p_val)
        passed("5 trigger renewal")
passed("5 trigger renewal")
print("g at T = 2, 3, 4:", [sp.factor(g.subs(T, tt)) for tt in (2, 3, 4)])

# %% [markdown]
# ## 6. Unmemorised mass
#
# If class $k$ is absorbed into the weights at rate $c\,p_k$, it is still unmemorised at time $t$ with
# probability $e^{-c p_k t}$; the mass of a fresh draw that is not yet memorised is
# $U(t; c) = \sum_k p_k e^{-c p_k t}$, with $U(0; c) = \sum_k p_k = 1$. Integrating term by term,
# $$\int_0^\tau U(t; c)\,dt = \sum_k \frac{1 - e^{-c p_k \tau}}{c} \xrightarrow{\tau \to \infty} \frac{K}{c},$$
# whose $\tau$-derivative is $U(\tau; c)$. We check these on a generic three-rank distribution
# ($p_1, p_2, p_3 > 0$, summing to one) built from the project's summands, on the `Sum` expressions, and
# numerically with a large $\tau$.

# %%
w_U = sym.SUMMANDS["unmemorised"][0]
w_I = sym.SUMMANDS["unmemorised_integral"][0]
ps = sp.symbols("p1:4", positive=True)
U3 = sum(w_U.subs(p, pi) for pi in ps)
I3 = sum(w_I.subs(p, pi) for pi in ps)
assert is_zero(U3.subs(t, 0) - sum(ps))  # = 1 on the simplex
assert is_zero(sp.diff(I3, tau) - U3.subs(t, tau))
assert is_zero(sp.integrate(U3, (t, 0, tau)) - I3)
assert sp.limit(I3, tau, sp.oo) == 3 / c
# The full Sum expressions: U(0) = 1, and the derivative of the integral is U, term by term.
assert sp.simplify(S["unmemorised_mass"].subs(t, 0).subs(Z, sym.normaliser_sum)) == 1
d_int = sp.diff(S["unmemorised_integral"], tau)
U_tau = S["unmemorised_mass"].subs(t, tau)
assert d_int.limits == U_tau.limits and is_zero(d_int.function - U_tau.function)
passed("6 unmemorised", 6)

# Numerically: the integral's limit K / c, its derivative (central difference), U(0) = 1.
zipf = Zipf(100, 1.0)
c_val = 2.0
big = memorisation_statistics(zipf, c_val, 1e5)
assert abs(big["unmemorised_integral"] / big["unmemorised_integral_limit"] - 1) < 1e-12
assert abs(memorisation_statistics(zipf, c_val, 0.0)["unmemorised_mass"] - 1) < 1e-14
for t_val in [1.0, 30.0, 400.0]:
    h = 1e-3 * t_val
    up = memorisation_statistics(zipf, c_val, t_val + h)["unmemorised_integral"]
    down = memorisation_statistics(zipf, c_val, t_val - h)["unmemorised_integral"]
    U_val = memorisation_statistics(zipf, c_val, t_val)["unmemorised_mass"]
    assert abs((up - down) / (2 * h) / U_val - 1) < 1e-6, t_val
passed("6 unmemorised", 5)

# %% [markdown]
# ## 7. The three evaluators agree
#
# `theory.statistics` evaluates every statistic three ways: the exact sum (Numba), the asymptotic form (head
# summed exactly, tail as a power series whose coefficients are Hurwitz-zeta power sums, with an error bound)
# and the sympy reference (lambdified `Sum`, plain Python). On a grid of $(\alpha, q)$ we require
#
# * reference vs exact within $10^{-10}$ relative for $K \le 300$;
# * asymptotic vs exact within the returned bound $+ 10^{-11}$ relative for $K$ up to $10^6$ (normaliser,
#   entropy and mean rank have no public bound: $10^{-11}$ relative alone).
#
# The exact kernel sums each summand's power series in $p$ for the ranks with $x\,p_k \le 1/2$ ($x$ the
# summand's largest rate): there the terms of $w$ cancel (for the trigger summand
# $g(p) \approx \binom{M-1}{2} p^2$ is a difference of terms of order one). An independent high-precision value
# checks that this keeps full relative precision where cancellation is worst (flat distributions, large
# $K$): the summand's Taylor polynomial with exact rational coefficients from sympy where $x\,p_k < 0.02$, and
# mpmath at 40 digits elsewhere.

# %%
RANK_SUMS = {
    "in_context": {"N": 8},
    "p_seen_before(t=256)": {"N": 255},
    "distinct": {"N": 8},
    "collision": {},
    "unmemorised": {"c": 200.0, "t": 0.5},
    "unmemorised_integral": {"c": 200.0, "tau": 0.5},
    "trigger_repeat_zipf": {"T": 64},
    "trigger_repeat_uniform": {"T": 64, "V": 64},
}
ZIPF_STATS = {"normaliser": normaliser, "entropy_nats": entropy, "mean_rank": mean_rank}
GRID = [(a_, q_) for a_ in (0.0, 0.5, 1.0, 1.6, 2.5) for q_ in (0.0, 1.5)]
K_REFERENCE = (300,)  # the plain-Python reference is slow: small K only
K_ASYMPTOTIC = (300, 10**6)  # a short tail beyond the 64-rank head, and a long one


def summand_name(label: str) -> str:
    return "in_context" if label.startswith("p_seen_before") else label


def bound_summand(name: str, params: dict[str, float]) -> tuple[sp.Expr, tuple[sym.Term, ...]]:
    """The summand w(p) with its parameters substituted (as exact rationals), and its term structure."""
    expr, syms = sym.SUMMANDS[name]
    values = {x: sp.nsimplify(params[x.name]) for x in syms}
    terms = tuple(sym.Term(tm.coef.subs(values), tm.j, tm.kind, tm.y.subs(values)) for tm in sym.summand_terms(name))
    return expr.subs(values), terms


def high_precision_sum(name: str, zipf: Zipf, params: dict[str, float]) -> float:
    """sum_k w(p_k) without float cancellation: Taylor polynomial where x p_k < 0.02, mpmath elsewhere."""
    w, terms = bound_summand(name, params)
    rate = max([1.0] + [abs(float(tm.y)) for tm in terms])
    coeffs = [float(cf) for cf in sp.Poly(sp.series(w, p, 0, 30).removeO(), p).all_coeffs()]
    probs = zipf.probs()
    small = probs * rate < 0.02  # the omitted Taylor terms are of order (x p)^30 / 30! < 1e-80
    w_mp = sp.lambdify(p, w, "mpmath")
    with mpmath.workdps(40):
        large = mpmath.fsum(w_mp(mpmath.mpf(float(x))) for x in probs[~small])
    return math.fsum([*np.polyval(coeffs, probs[small]).tolist(), float(large)])


_exact_cache: dict[tuple[str, Zipf], float] = {}


def exact_value(label: str, zipf: Zipf) -> float:
    """The exact (Numba) evaluator, memoised: K = 300 serves both comparisons."""
    key = (label, zipf)
    if key not in _exact_cache:
        if label in ZIPF_STATS:
            _exact_cache[key] = ZIPF_STATS[label](zipf, "exact")
        else:
            _exact_cache[key] = rank_sum(summand_name(label), zipf, "exact", **RANK_SUMS[label])
    return _exact_cache[key]


worst_ref: dict[str, float] = {}
worst_asym: dict[str, float] = {}  # max over the grid of (|asym - exact| - bound) / |exact|
rows = []
for a_, q_ in GRID:
    for K_ in K_REFERENCE:
        zipf = Zipf(K_, a_, q_)
        for label, fun in ZIPF_STATS.items():
            ex, ref = exact_value(label, zipf), fun(zipf, "reference")
            rel = abs(ref - ex) / abs(ex)
            worst_ref[label] = max(worst_ref.get(label, 0.0), rel)
            assert rel < 1e-10, (label, zipf, ex, ref)
        for label, params in RANK_SUMS.items():
            ex = exact_value(label, zipf)
            ref = rank_sum(summand_name(label), zipf, "reference", **params)
            rel = abs(ref - ex) / abs(ex)
            worst_ref[label] = max(worst_ref.get(label, 0.0), rel)
            assert rel < 1e-10, (label, zipf, ex, ref)
        passed("7 evaluators", len(ZIPF_STATS) + len(RANK_SUMS))
    for K_ in K_ASYMPTOTIC:
        zipf = Zipf(K_, a_, q_)
        for label, fun in ZIPF_STATS.items():
            ex, asym = exact_value(label, zipf), fun(zipf, "asymptotic")
            excess = abs(asym - ex) / abs(ex)
            worst_asym[label] = max(worst_asym.get(label, -1.0), excess)
            assert excess < 1e-11, (label, zipf, ex, asym)
        for label, params in RANK_SUMS.items():
            name = summand_name(label)
            ex = exact_value(label, zipf)
            asym, bound = rank_sum_with_bound(name, zipf, **params)
            excess = (abs(asym - ex) - bound) / abs(ex)
            worst_asym[label] = max(worst_asym.get(label, -1.0), excess)
            if K_ == 10**6 and q_ == 0.0 and a_ in (0.5, 1.0):
                rows.append((label, a_, ex, asym, bound))
            assert abs(asym - ex) <= bound + 1e-11 * abs(ex), (label, zipf, ex, asym, bound)
            passed("7 evaluators")
        passed("7 evaluators", len(ZIPF_STATS))

print(f"{'statistic':<24} {'max |ref-exact|/exact':>22} {'max (|asym-exact|-bound)/exact':>31}")
for label in [*ZIPF_STATS, *RANK_SUMS]:
    print(f"{label:<24} {worst_ref[label]:>22.2e} {worst_asym[label]:>31.2e}")
print()
print(f"K = 10^6, q = 0:\n{'statistic':<24} {'alpha':>5} {'exact':>22} {'asymptotic':>22} {'bound':>9}")
for label, a_, ex, asym, bound in rows:
    print(f"{label:<24} {a_:>5} {ex:>22.15e} {asym:>22.15e} {bound:>9.1e}")
print()

# Where cancellation is worst: the exact kernel against the independent high-precision sum.
print(f"{'statistic':<24} {'alpha':>5} {'high precision':>22} {'exact rel. err':>15}")
for name, params in [("trigger_repeat_zipf", {"T": 64}), ("trigger_repeat_uniform", {"T": 64, "V": 64})]:
    for a_ in (0.0, 0.5):
        zipf = Zipf(10**6, a_, 0.0)
        hp = high_precision_sum(name, zipf, params)
        err = (rank_sum(name, zipf, "exact", **params) - hp) / hp
        print(f"{name:<24} {a_:>5} {hp:>22.15e} {err:>15.1e}")
        assert abs(err) < 1e-12, (name, a_, err)  # blocked float64 sums of 10^6 terms: ~1e-13 at worst
        passed("7 high precision")

# %% [markdown]
# ## 8. Monte Carlo against the samplers
#
# Each statistic with a sampler counterpart is estimated from a batch drawn with a fixed seed (the samplers are
# counter-based, so the batch, and hence the estimate, is reproducible) and must agree with the exact value
# within 5 standard errors. For a mean of $n$ draws the standard error is $\hat\sigma / \sqrt{n}$; for an
# indicator it is $\sqrt{\hat P (1 - \hat P)/n}$.
#
# * classification: $P_{\rm in}$ is the frequency of `classes[:, N]` $\in$ `classes[:, :N]`; the distinct count and
#   the number of context items equal to the query's class are read off the same rows;
# * token streams: with no trigger, `tokens[:, t-1]` $\in$ `tokens[:, :t-1]` estimates
#   $\sum_k p_k[1 - (1-p_k)^{t-1}]$; with one trigger, the trigger occurring at least twice among indices
#   $0..T-2$ estimates `p_trigger_repeat`;
# * memorisation: draw a class $k \sim$ Zipf and a memorisation time $E \sim \mathrm{Exp}(c\,p_k)$; then
#   $U(t; c) = P(E > t)$ and $\int_0^\tau U\,dt = E[\min(E, \tau)]$.

# %%
N_SEQ = 200_000
mc_rows = []


def compare(label: str, samples: np.ndarray, exact: float) -> None:
    """Assert that the sample mean is within 5 standard errors of the exact value, and record the row."""
    samples = np.asarray(samples, dtype=np.float64)
    mean = float(samples.mean())
    se = float(samples.std(ddof=1) / math.sqrt(samples.size))
    z = (mean - exact) / se
    mc_rows.append((label, exact, mean, se, z))
    assert abs(z) < 5, (label, exact, mean, se)
    passed("8 Monte Carlo")


def context_statistics(classes: np.ndarray, n_ctx: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per sequence: query's class in context, number of distinct context classes, context copies of the query."""
    ctx, query = classes[:, :n_ctx], classes[:, n_ctx : n_ctx + 1]
    same = ctx == query
    srt = np.sort(ctx, axis=1)
    distinct = 1 + np.count_nonzero(np.diff(srt, axis=1), axis=1)
    return same.any(axis=1), distinct, same.sum(axis=1)


# The headline check: K = 512, alpha = 1, N = 8, i.i.d. contexts.
cases = [
    ("iid K=512 a=1 N=8", ClassificationTask(K=512, alpha=1.0, N=8, p_B=0.0, p_C=0.0), 11),
    ("iid K=64 a=0.5 q=2 N=16", ClassificationTask(K=64, alpha=0.5, q=2.0, N=16, B=4, p_B=0.0, p_C=0.0), 12),
    ("mix K=512 a=1 N=8 B=2 pB=.5 pC=.2", ClassificationTask(K=512, alpha=1.0, N=8, B=2, p_B=0.5, p_C=0.2), 13),
]
for label, task, seed in cases:
    batch = sample_classes(task, N_SEQ, seed)
    in_ctx, distinct, occ = context_statistics(batch.classes, task.N)
    exact = classification_statistics(task)
    compare(f"P(in context) {label}", in_ctx, exact["p_query_in_context"])
    compare(f"E[distinct] {label}", distinct, exact["expected_distinct"])
    compare(f"E[query copies] {label}", occ, exact["expected_query_occurrences"])
    if exact["p_bursty"] > 0:  # the bursty flag against its probability p_C + (1 - p_C) p_B
        compare(f"P(bursty) {label}", batch.bursty, exact["p_bursty"])

# Token streams without triggers: has the token at position t been seen before?
tok_task = TokenStreamTask(V=64, T=32, alpha=1.0, n_triggers=0)
tokens = sample_token_streams(tok_task, N_SEQ, seed=21).tokens
for t_pos in (2, 8, 32):
    seen = (tokens[:, : t_pos - 1] == tokens[:, t_pos - 1 : t_pos]).any(axis=1)
    compare(f"P(seen before) V=64 a=1 t={t_pos}", seen, token_statistics(tok_task, t=t_pos)["p_seen_before"])

# One trigger: does it occur at least twice among positions 1..T-1 (indices 0..T-2)?
for trigger_dist, seed in (("zipf", 31), ("uniform", 32)):
    for V_, T_, a_ in ((64, 24, 1.0), (256, 64, 1.3)):
        task = TokenStreamTask(V=V_, T=T_, alpha=a_, n_triggers=1, trigger_dist=trigger_dist)
        batch = sample_token_streams(task, N_SEQ, seed=seed)
        hits = (batch.tokens[:, : T_ - 1] == batch.triggers[:, :1]).sum(axis=1)
        label = f"P(trigger repeat) {trigger_dist} V={V_} T={T_}"
        compare(label, hits >= 2, token_statistics(task)["p_trigger_repeat"])

# Memorisation: a fresh draw's class and its exponential memorisation time.
rng = np.random.default_rng(41)
zipf = Zipf(200, 1.0)
c_val = 100.0
ranks = np.searchsorted(zipf.cdf(), rng.random(N_SEQ), side="right")
times = rng.exponential(1.0 / (c_val * zipf.probs()[ranks]))
for t_val in (0.5, 5.0, 50.0):
    mem = memorisation_statistics(zipf, c_val, t_val)
    compare(f"U(t={t_val}; c=100) K=200", times > t_val, mem["unmemorised_mass"])
    compare(f"int_0^{t_val} U dt, K=200", np.minimum(times, t_val), mem["unmemorised_integral"])

print(f"{'Monte Carlo check':<50} {'exact':>10} {'estimate':>10} {'s.e.':>9} {'z':>6}")
for label, exact, mean, se, z in mc_rows:
    print(f"{label:<50} {exact:>10.6f} {mean:>10.6f} {se:>9.2e} {z:>6.2f}")

# %% [markdown]
# ## Summary

# %%
elapsed = time.perf_counter() - START
for section, n in CHECKS.items():
    print(f"{section:<26} {n:>4} assertions passed")
print(f"total {sum(CHECKS.values())} assertions in {elapsed:.1f} s")
