"""The exact statistics: properties, closed forms computed independently, and the three evaluators compared.

Tolerances:
* REL_SUM = 1e-10: exact (Numba, parallel reduction) vs reference (sympy, sequential) sums of <= 10^3 float64
  terms; rounding is ~1e-16 per term, so 1e-10 leaves six orders of margin for the summation order.
* cancellation(...): summands such as 1 - (1-p)^N lose absolute precision ~ eps * (sum of |term|) per rank;
  the allowance is 64 eps times that sum, an upper bound for the rounding of a few float64 operations.
* The asymptotic form carries its own truncation bound (returned by ``rank_sum_with_bound``).
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import mpmath
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from zipfhead.theory import statistics as S
from zipfhead.theory import symbolic as sym
from zipfhead.theory.distributions import ClassificationTask, TokenStreamTask, Zipf
from zipfhead.theory.hurwitz import tail_log_power_sum, tail_power_sum

REL_SUM = 1e-10
EPS = np.finfo(np.float64).eps

alphas = st.floats(0.0, 4.0, allow_nan=False)
shifts = st.floats(0.0, 5.0, allow_nan=False)
small_K = st.integers(1, 200)

# name -> strategy of its parameters
PARAMS = {
    "in_context": st.fixed_dictionaries({"N": st.integers(1, 64)}),
    "distinct": st.fixed_dictionaries({"N": st.integers(1, 64)}),
    "collision": st.just({}),
    "unmemorised": st.fixed_dictionaries({"c": st.floats(1e-3, 10.0), "t": st.floats(0.0, 1e5)}),
    "unmemorised_integral": st.fixed_dictionaries({"c": st.floats(1e-3, 10.0), "tau": st.floats(1e-3, 1e5)}),
    "trigger_repeat_zipf": st.fixed_dictionaries({"T": st.integers(2, 512)}),
    "trigger_repeat_uniform": st.fixed_dictionaries({"T": st.integers(2, 512), "V": st.integers(2, 10**6)}),
}


def cancellation(name: str, zipf: Zipf, params: dict) -> float:
    """Rounding allowance of a rank sum: 64 eps * sum over ranks and terms of |coef| p^j."""
    coef, j, _, _ = S._terms(name, params)
    mass = sum(abs(cf) * (zipf.K if jj == 0 else 1.0) for cf, jj in zip(coef, j, strict=True))
    return 64 * EPS * mass


@st.composite
def summand_cases(draw, K=small_K):
    name = draw(st.sampled_from(sorted(PARAMS)))
    n_ranks = draw(K)
    if name.startswith("trigger"):
        n_ranks = max(n_ranks, 2)  # a token vocabulary has V >= 2, so p < 1 and (1 - p)^(T-3) is finite
    return name, Zipf(n_ranks, draw(alphas), draw(shifts)), draw(PARAMS[name])


# --- the distribution ----------------------------------------------------------------------------------------
@given(small_K, alphas, shifts)
def test_probabilities_sum_to_one_and_do_not_increase(K, alpha, q):
    """p_k is a distribution, non-increasing in k for alpha >= 0; the CDF ends at exactly 1."""
    p = Zipf(K, alpha, q).probs()
    assert p.shape == (K,)
    assert abs(p.sum() - 1.0) < 1e-12  # K <= 200 terms of rounding ~1e-16 each
    assert np.all(np.diff(p) <= 1e-15 * p[0])  # equal up to rounding when alpha = 0
    assert Zipf(K, alpha, q).cdf()[-1] == 1.0


# --- exact (Numba) vs reference (sympy) ----------------------------------------------------------------------
@given(summand_cases())
def test_exact_kernel_matches_sympy_reference(case):
    """The Numba kernel (naive twin: the lambdified sympy Sum) on hypothesis-drawn inputs."""
    name, zipf, params = case
    exact = S.rank_sum(name, zipf, "exact", **params)
    ref = S.rank_sum(name, zipf, "reference", **params)
    assert abs(exact - ref) <= REL_SUM * abs(ref) + cancellation(name, zipf, params)


@given(small_K, alphas, shifts)
def test_power_sum_statistics_match_reference(K, alpha, q):
    """Normaliser, entropy and mean rank: Numba and asymptotic forms against the sympy Sum."""
    zipf = Zipf(K, alpha, q)
    for fn in (S.normaliser, S.entropy, S.mean_rank):
        ref = fn(zipf, "reference")
        for method in ("exact", "asymptotic"):
            # entropy near 0 (alpha large): absolute 1e-12 covers ln Z - alpha <ln r> cancellation
            assert fn(zipf, method) == pytest.approx(ref, rel=REL_SUM, abs=1e-12), (fn.__name__, method)


def test_sympy_reference_is_the_statistics_table():
    """The sympy STATISTICS expressions (mixtures included) agree with the table, for a mixed task."""
    task = ClassificationTask(K=60, N=8, B=4, p_B=0.3, p_C=0.2, alpha=1.2, q=0.5)
    table = S.classification_statistics(task)
    kw = {
        "K": task.K,
        "alpha": task.alpha,
        "q": task.q,
        "N": task.N,
        "B": task.B,
        "p_B": task.p_B,
        "p_C": task.p_C,
    }
    for key in ("p_query_in_context", "expected_distinct", "expected_query_occurrences", "entropy_nats"):
        ref = sym.reference(key)
        assert table[key] == pytest.approx(ref(**kw), rel=REL_SUM), key


# --- asymptotic (Hurwitz) vs exact ---------------------------------------------------------------------------
@given(summand_cases(K=st.integers(1, 10**6)))
def test_asymptotic_form_within_its_bound(case):
    """Head + Hurwitz-zeta series agrees with the exact sum within its own bound plus rounding (K <= 10^6)."""
    name, zipf, params = case
    exact = S.rank_sum(name, zipf, "exact", **params)
    value, bound = S.rank_sum_with_bound(name, zipf, **params)
    # rounding of the exact O(K) reduction: ~ sqrt(K) eps relative; 1e-11 covers K <= 10^7 with margin
    assert abs(value - exact) <= bound + 1e-11 * abs(exact) + cancellation(name, zipf, params)


@pytest.mark.slow
@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0, 2.5, 4.0])
def test_asymptotic_form_at_ten_million_ranks(alpha):
    """K = 10^7, the documented upper end: every statistic, exact vs asymptotic."""
    zipf = Zipf(10**7, alpha, 0.5)
    for name, params in [
        ("in_context", {"N": 8}),
        ("distinct", {"N": 256}),
        ("unmemorised", {"c": 1.0, "t": 1e6}),
    ]:
        exact = S.rank_sum(name, zipf, "exact", **params)
        value, bound = S.rank_sum_with_bound(name, zipf, **params)
        assert abs(value - exact) <= bound + 1e-11 * abs(exact) + cancellation(name, zipf, params), name
    for fn in (S.normaliser, S.entropy, S.mean_rank):
        assert fn(zipf, "asymptotic") == pytest.approx(fn(zipf, "exact"), rel=1e-11)


# mpmath's zeta derivative divides by zero for |s| ~ 1e-190, so tiny non-zero s are left out of the twin.
exponents = st.one_of(
    st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.0]), st.floats(-1.0, 16.0).filter(lambda x: abs(x) > 1e-9)
)


@given(exponents, st.integers(65, 10**4), st.integers(1, 10**7))
def test_hurwitz_tail_against_mpmath(s, a_lo, n):
    """Euler-Maclaurin tail sums (naive twin: mpmath's Hurwitz zeta) within bound + rounding.

    mpmath runs at 60 digits: at 40 its zeta(16, 240) is off by 1e-12 relative (checked against a direct sum).
    At a negative non-integer s its Hurwitz zeta costs time linear in a (measured: 2 s at a = 1e5, 20 s at 1e6,
    200 s at 1e7, one random example took 248 s of a make test), so there the range is capped at 5000 terms.
    """
    if s < 0 and s != int(s):
        n = min(n, 5000)
    a_hi = a_lo + n
    value, bound = tail_power_sum(s, float(a_lo), float(a_hi))
    lvalue, lbound = tail_log_power_sum(s, float(a_lo), float(a_hi))
    with mpmath.workdps(60):
        if abs(s - 1.0) < 1e-12:
            exact = mpmath.digamma(a_hi) - mpmath.digamma(a_lo)
            lexact = mpmath.stieltjes(1, a_lo) - mpmath.stieltjes(1, a_hi)
        else:
            exact = mpmath.zeta(s, a_lo) - mpmath.zeta(s, a_hi)
            lexact = -(mpmath.zeta(s, a_lo, 1) - mpmath.zeta(s, a_hi, 1))
    # Rounding: r^-s = exp(-s ln r) turns the ulp of ln r into |s| ln r ulps of the result, so a handful of
    # such terms is good to 64 eps (1 + |s| ln a_hi) relative.
    rel = 64 * EPS * (1.0 + abs(s) * math.log(a_hi))
    assert abs(value - float(exact)) <= float(bound) + rel * abs(float(exact))
    assert abs(lvalue - float(lexact)) <= float(lbound) + rel * abs(float(lexact))


# --- independent closed forms --------------------------------------------------------------------------------
@given(st.integers(1, 10**6), st.integers(1, 64))
def test_uniform_closed_forms(K, N):
    """alpha = 0: Z = K, H = ln K, E[k] = (K+1)/2, P(in context) = 1-(1-1/K)^N, E[distinct] = K(1-(1-1/K)^N)."""
    zipf = Zipf(K, 0.0)
    miss = math.exp(N * math.log1p(-1.0 / K)) if K > 1 else 0.0
    for method in ("exact", "asymptotic"):
        assert S.normaliser(zipf, method) == pytest.approx(K, rel=1e-12)
        assert S.entropy(zipf, method) == pytest.approx(math.log(K), rel=1e-12, abs=1e-12)
        assert S.mean_rank(zipf, method) == pytest.approx((K + 1) / 2, rel=1e-12)
        # 1e-9: sums of up to 10^6 identical terms whose per-term cancellation 1-(1-1/K)^N costs ~ eps K / N
        assert S.rank_sum("in_context", zipf, method, N=N) == pytest.approx(1 - miss, rel=1e-9, abs=1e-12)
        assert S.rank_sum("distinct", zipf, method, N=N) == pytest.approx(K * (1 - miss), rel=1e-9)
        assert S.rank_sum("collision", zipf, method) == pytest.approx(1 / K, rel=1e-9)


def test_zipf_one_normaliser_is_the_harmonic_number():
    """alpha = 1, q = 0: Z = H_K (mpmath's harmonic number, an independent evaluation)."""
    for K in (1, 10, 1000, 10**6):
        for method in ("exact", "asymptotic"):
            assert S.normaliser(Zipf(K, 1.0), method) == pytest.approx(float(mpmath.harmonic(K)), rel=1e-12)


@given(st.integers(1, 5000), st.floats(0.0, 3.0), st.floats(0.0, 20.0), st.integers(1, 30))
def test_zipf_rank_bins_against_a_rank_by_rank_sum(K, alpha, q, max_bins):
    """Zipf.rank_bins against a plain loop over ranks with math.fsum: contiguous bins covering 1..K (one rank each
    when K <= max_bins, at most max_bins otherwise, sizes growing with rank), each bin's mass the fsum of
    (k + q)^-alpha over its ranks over the fsum over all ranks, to 1e-12 relative or 1e-12 absolute: a bin's mass is a
    difference of two float64 cumulative sums of <= 5000 probabilities totalling 1, each off by at most 5000 x 2^-53
    ~ 5.6e-13 (the worst case of recursive summation)."""
    sizes, masses = Zipf(K, alpha, q).rank_bins(max_bins)
    assert sizes.sum() == K and np.all(sizes >= 1)
    assert sizes.size == K if K <= max_bins else sizes.size <= max_bins
    assert np.all(np.diff(sizes) >= -1)  # geometric edges, rounded: non-decreasing up to rounding
    weights = [(k + q) ** -alpha for k in range(1, K + 1)]
    total = math.fsum(weights)
    start = 0
    for size, mass in zip(sizes.astype(int), masses, strict=True):
        want = math.fsum(weights[start : start + size]) / total
        assert mass == pytest.approx(want, rel=1e-12, abs=1e-12)
        start += size


def _trigger_repeat_dp(p: float, T: int) -> float:
    """P(>= 2 occurrences among positions 1..T-1) by dynamic programming over (count, forced) states."""
    # state: probability of (count in {0,1,2+}, next position forced)
    prob = {(0, False): 1.0}
    for _ in range(T - 1):
        new: dict[tuple[int, bool], float] = {}
        for (cnt, forced), w in prob.items():
            if forced:  # the trigger's output: a non-trigger
                new[(cnt, False)] = new.get((cnt, False), 0.0) + w
            else:
                hit = (min(cnt + 1, 2), True)
                new[hit] = new.get(hit, 0.0) + w * p
                new[(cnt, False)] = new.get((cnt, False), 0.0) + w * (1 - p)
        prob = new
    return sum(w for (cnt, _), w in prob.items() if cnt == 2)


@given(st.floats(0.0, 1.0), st.integers(2, 60))
def test_trigger_renewal_formula_matches_dynamic_programme(p, T):
    """The sympy-derived renewal formula equals an independent dynamic programme over positions."""
    g = float(sym.trigger_repeat_probability().subs({sym.p: p, sym.T: T}))
    assert g == pytest.approx(_trigger_repeat_dp(p, T), abs=1e-12)  # O(T) float64 operations


# --- monotonicity and ranges ---------------------------------------------------------------------------------
@given(st.integers(2, 3000), alphas, shifts, st.integers(1, 63), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_p_query_in_context_is_a_probability_growing_with_N_and_p_B(K, alpha, q, N, p_B, p_C):
    """P(query in context) in [0, 1], non-decreasing in N (at fixed B = 1) and in p_B."""
    base = ClassificationTask(K=max(K, N + 1), N=N, B=1, L=64, p_B=p_B, p_C=p_C, alpha=alpha, q=q)
    more_n = ClassificationTask(K=max(K, N + 2), N=N + 1, B=1, L=64, p_B=p_B, p_C=p_C, alpha=alpha, q=q)
    if more_n.K != base.K:
        return
    v = S.classification_statistics(base)["p_query_in_context"]
    assert 0.0 <= v <= 1.0 + 1e-12
    assert S.classification_statistics(more_n)["p_query_in_context"] >= v - 1e-12
    more_b = dataclasses.replace(base, p_B=min(1.0, p_B + 0.1))
    assert S.classification_statistics(more_b)["p_query_in_context"] >= v - 1e-12


def test_unmemorised_mass_limits():
    """U(0; c) = 1, U decreases in t, and int_0^tau U -> K / c as tau grows (all classes memorised)."""
    zipf = Zipf(300, 1.2)
    assert S.rank_sum("unmemorised", zipf, c=2.0, t=0.0) == pytest.approx(1.0, rel=1e-13)
    values = [S.rank_sum("unmemorised", zipf, c=2.0, t=t) for t in (0.0, 10.0, 100.0, 1e3)]
    assert all(a > b for a, b in itertools.pairwise(values))
    # at tau = 1e7 the rarest class has c p tau ~ 1e4: exp(-1e4) = 0, so the integral is K / c to rounding
    limit = S.memorisation_statistics(zipf, c=2.0, t=1e7)
    assert limit["unmemorised_integral"] == pytest.approx(300 / 2.0, rel=1e-12)


def test_token_statistics_ranges():
    """p_seen_before grows with t; the induction signal is a probability, 0 at T = 2."""
    task = TokenStreamTask(V=100, T=64)
    seen = [S.token_statistics(task, t=t)["p_seen_before"] for t in (1, 2, 8, 64)]
    assert seen[0] == 0.0 and all(a < b for a, b in itertools.pairwise(seen))
    assert 0 < S.token_statistics(task)["p_trigger_repeat"] < 1
    assert S.token_statistics(TokenStreamTask(V=100, T=2))["p_trigger_repeat"] == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(ValueError, match="t = 65"):
        S.token_statistics(task, t=65)


# --- bad input -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "param", "value"),
    [
        (lambda: Zipf(0), "K", "0"),
        (lambda: Zipf(10, -0.5), "alpha", "-0.5"),
        (lambda: Zipf(10, float("nan")), "alpha", "nan"),
        (lambda: Zipf(10, 1.0, -1.0), "q", "-1.0"),
        (lambda: ClassificationTask(K=1), "K", "1"),
        (lambda: ClassificationTask(B=16), "B", "16"),
        (lambda: ClassificationTask(B=3), "B", "3"),
        (lambda: ClassificationTask(p_B=1.5), "p_B", "1.5"),
        (lambda: ClassificationTask(p_C=-0.1), "p_C", "-0.1"),
        (lambda: ClassificationTask(L=1), "L", "1"),
        (lambda: ClassificationTask(eps=float("inf")), "eps", "inf"),
        (lambda: ClassificationTask(N=8, B=1, L=4), "L", "4"),
        (lambda: ClassificationTask(K=4, N=8, B=1), "K", "4"),
        (lambda: ClassificationTask(D=2.5), "D", "2.5"),
        (lambda: TokenStreamTask(T=1), "T", "1"),
        (lambda: TokenStreamTask(V=1), "V", "1"),
        (lambda: TokenStreamTask(trigger_dist="bigram"), "trigger_dist", "bigram"),
        (lambda: TokenStreamTask(V=4, n_triggers=4), "n_triggers", "4"),
        (lambda: S.normaliser(Zipf(10), "fast"), "method", "fast"),
        (lambda: S.memorisation_statistics(Zipf(10), c=0.0, t=1.0), "c", "0.0"),
    ],
)
def test_bad_parameters_name_parameter_and_value(make, param, value):
    """Each bad parameter raises ValueError naming the parameter and its value."""
    with pytest.raises(ValueError) as err:
        make()
    msg = str(err.value)
    assert param in msg and value in msg, msg


def test_configs_round_trip_through_json():
    """to_dict / from_dict are inverse, and unknown keys are refused with their names."""
    from zipfhead.theory.distributions import config_from_dict

    for cfg in (
        Zipf(10, 1.5, 2.0),
        ClassificationTask(K=99, B=4),
        TokenStreamTask(V=7, trigger_dist="uniform"),
    ):
        assert config_from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="bogus"):
        ClassificationTask.from_dict({"bogus": 1})
