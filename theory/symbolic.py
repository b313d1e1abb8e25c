"""The exact statistics of Zipfian data, derived once in sympy.

Every statistic of :mod:`theory.statistics` is a rank sum  sum_{k=1}^{K} w(p_k)  over the Zipf probabilities
p_k = (k + q)^(-alpha) / Z, or a law-of-total-probability mixture of such sums. This module holds

* the per-rank *summands* w(p) as sympy expressions (``SUMMANDS``), each written as a sum of terms
  coef * p^j * (1 - p)^y  or  coef * p^j * exp(-y p); :func:`summand_terms` reads that term structure off the
  expression, and the fast Numba kernel and the Hurwitz-zeta series form both evaluate it, so no formula is
  typed twice;
* the full statistics as sympy ``Sum`` expressions (``STATISTICS``), lambdified as the slow reference;
* the derivations (trigger renewal argument, mixtures) and the Euler-Maclaurin correction of the Hurwitz
  zeta function, whose s-derivative sympy takes for the entropy.

Symbols follow the glossary of :mod:`theory.distributions`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import sympy as sp

__all__ = [
    "EXP",
    "POW",
    "STATISTICS",
    "SUMMANDS",
    "Term",
    "em_correction",
    "em_correction_ds",
    "mixture_distinct",
    "mixture_in_context",
    "mixture_query_occurrences",
    "reference",
    "summand_terms",
    "trigger_repeat_probability",
]

# --- symbols -------------------------------------------------------------------------------------------
k = sp.Symbol("k", integer=True, positive=True)
K = sp.Symbol("K", integer=True, positive=True)
V = sp.Symbol("V", integer=True, positive=True)
N = sp.Symbol("N", integer=True, positive=True)
B = sp.Symbol("B", integer=True, positive=True)
T = sp.Symbol("T", integer=True, positive=True)
t = sp.Symbol("t", positive=True)  # training time (memorisation) or a token position, as documented
alpha = sp.Symbol("alpha", nonnegative=True)
q = sp.Symbol("q", nonnegative=True)
c = sp.Symbol("c", positive=True)
tau = sp.Symbol("tau", positive=True)
p_B = sp.Symbol("p_B", nonnegative=True)
p_C = sp.Symbol("p_C", nonnegative=True)
p = sp.Symbol("p", positive=True)  # the probability of one rank: the summand's variable
Z = sp.Symbol("Z", positive=True)  # the normaliser, kept as a symbol inside summands
s = sp.Symbol("s", real=True)  # a Hurwitz zeta exponent
a = sp.Symbol("a", positive=True)  # a Hurwitz zeta argument

rank_weight = (k + q) ** (-alpha)
normaliser_sum = sp.Sum(rank_weight, (k, 1, K))
p_k = rank_weight / Z


# --- derivations -----------------------------------------------------------------------------------------
def trigger_repeat_probability() -> sp.Expr:
    """P(a trigger of per-position probability p occurs at least twice among positions 1..T-1).

    Renewal argument for one trigger (``n_triggers = 1``): a fresh position holds the trigger with probability
    p; the position after an occurrence is forced to the trigger's output (a non-trigger). So with
    M = T - 1 positions: P(0) = (1-p)^M, and an occurrence at s <= M-1 alone needs the s-1 positions before
    and the M-s-1 fresh positions after s+1 to miss: p (1-p)^(M-2) each, plus p (1-p)^(M-1) for s = M.
    An occurrence at position T gives no output inside the sequence, so it does not count.
    """
    M = T - 1
    j = sp.Symbol("j", integer=True, positive=True)
    one = sp.Sum(sp.powsimp(p * (1 - p) ** (j - 1) * (1 - p) ** (M - j - 1)), (j, 1, M - 1)).doit()
    one = one + p * (1 - p) ** (M - 1)
    return 1 - (1 - p) ** M - one


def mixture_in_context(iid: sp.Expr) -> sp.Expr:
    """P(query's class in context) for the training mixture: novel and bursty contexts always contain it."""
    return p_C + (1 - p_C) * (p_B + (1 - p_B) * iid)


def mixture_distinct(iid: sp.Expr) -> sp.Expr:
    """E[distinct classes in context]: N/B for novel and bursty contexts, ``iid`` otherwise."""
    bursty = p_C + (1 - p_C) * p_B
    return bursty * N / B + (1 - bursty) * iid


def mixture_query_occurrences(iid: sp.Expr) -> sp.Expr:
    """E[context items of the query's class]: B for novel and bursty contexts, ``iid`` otherwise."""
    bursty = p_C + (1 - p_C) * p_B
    return bursty * B + (1 - bursty) * iid


# --- summands --------------------------------------------------------------------------------------------
_trigger = trigger_repeat_probability()

#: name -> (summand w(p), its parameters other than p). A statistic is sum_k w(p_k).
SUMMANDS: dict[str, tuple[sp.Expr, tuple[sp.Symbol, ...]]] = {
    # P(query's class among N i.i.d. context items): the query and the context are independent draws.
    "in_context": (p - p * (1 - p) ** N, (N,)),
    # E[number of distinct classes among N i.i.d. items]: class k appears with probability 1 - (1-p_k)^N.
    "distinct": (1 - (1 - p) ** N, (N,)),
    # E[context items sharing the query's class] / N: sum_k p_k^2 (collision probability).
    "collision": (p**2, ()),
    # U(t; c): probability mass not yet memorised at time t when class k is absorbed at rate c p_k.
    "unmemorised": (p * sp.exp(-c * t * p), (c, t)),
    # integral_0^tau U(t; c) dt = sum_k (1 - exp(-c p_k tau)) / c, which tends to K / c.
    "unmemorised_integral": (1 / c - sp.exp(-c * tau * p) / c, (c, tau)),
    # P(a trigger drawn from the marginal repeats inside T): sum_k p_k g(p_k), g from the renewal argument.
    "trigger_repeat_zipf": (p * _trigger, (T,)),
    # ... and for a trigger drawn uniformly from the V tokens: sum_k g(p_k) / V.
    "trigger_repeat_uniform": (_trigger / V, (T, V)),
}

POW, EXP = 0, 1


@dataclass(frozen=True)
class Term:
    """One term coef * p^j * (1 - p)^y  (``kind == POW``)  or  coef * p^j * exp(-y p)  (``kind == EXP``)."""

    coef: sp.Expr
    j: int
    kind: int
    y: sp.Expr

    def expr(self) -> sp.Expr:
        """The term as a sympy expression in p."""
        factor = (1 - p) ** self.y if self.kind == POW else sp.exp(-self.y * p)
        return self.coef * p**self.j * factor


@cache
def summand_terms(name: str) -> tuple[Term, ...]:
    """The term structure of ``SUMMANDS[name]`` (read off the expanded expression, checked by :func:`Term.expr`)."""
    expr, _ = SUMMANDS[name]
    expanded = sp.expand(expr, power_exp=False, power_base=False, multinomial=False, log=False)
    terms = []
    for term in sp.Add.make_args(expanded):
        coef, j, kind, y = sp.Integer(1), 0, POW, sp.Integer(0)
        for factor in sp.Mul.make_args(term):
            base, exponent = factor.as_base_exp()
            if not factor.has(p):
                coef *= factor
            elif base == p and exponent.is_Integer and exponent >= 0:
                j += int(exponent)
            elif base == 1 - p and not exponent.has(p):
                kind, y = POW, y + exponent
            elif (
                isinstance(factor, sp.exp) and (factor.args[0] / p).is_polynomial(p) and not (factor.args[0] / p).has(p)
            ):
                kind, y = EXP, -factor.args[0] / p
            else:
                raise ValueError(f"summand {name!r}: factor {factor} is not of the form p^j, (1-p)^y or exp(-y p)")
        terms.append(Term(coef, j, kind, y))
    return tuple(terms)


# --- the statistics as exact sums ------------------------------------------------------------------------
def _sum(name: str) -> sp.Expr:
    return sp.Sum(SUMMANDS[name][0].subs(p, p_k), (k, 1, K))


#: name -> sympy expression of the statistic in K, alpha, q, Z and its parameters (Z = normaliser_sum).
STATISTICS: dict[str, sp.Expr] = {
    "normaliser": normaliser_sum,
    "entropy_nats": sp.log(Z) + alpha * sp.Sum(rank_weight * sp.log(k + q), (k, 1, K)) / Z,
    "mean_rank": sp.Sum(k * rank_weight, (k, 1, K)) / Z,
    "p_query_in_context_iid": _sum("in_context"),
    "p_query_in_context": mixture_in_context(_sum("in_context")),
    "expected_distinct_iid": _sum("distinct"),
    "expected_distinct": mixture_distinct(_sum("distinct")),
    "expected_query_occurrences_iid": N * _sum("collision"),
    "expected_query_occurrences": mixture_query_occurrences(N * _sum("collision")),
    # The token at position t of an i.i.d. background stream repeats one of the t-1 before it.
    "p_seen_before": _sum("in_context").subs(N, t - 1),
    "p_trigger_repeat_zipf": _sum("trigger_repeat_zipf"),
    "p_trigger_repeat_uniform": _sum("trigger_repeat_uniform"),
    "unmemorised_mass": _sum("unmemorised"),
    "unmemorised_integral": _sum("unmemorised_integral"),
}


@cache
def reference(name: str) -> Callable[..., float]:
    """The statistic ``name`` lambdified from its sympy ``Sum`` (plain Python loops: the slow reference).

    The returned function takes keyword arguments named as the symbols (K, alpha, q, N, B, p_B, p_C, c, t, tau,
    T, V; whichever the statistic uses) and computes Z itself.
    """
    expr = STATISTICS[name]
    zfun = sp.lambdify((K, alpha, q), normaliser_sum, modules="math")
    free = sorted((expr.free_symbols - {Z, k}) | {K, alpha, q}, key=lambda x: x.name)
    fun = sp.lambdify((*free, Z), expr, modules="math")

    def evaluate(**kw: float) -> float:
        args = [kw[x.name] for x in free]
        return float(fun(*args, zfun(kw["K"], kw["alpha"], kw["q"])))

    return evaluate


# --- Euler-Maclaurin for the Hurwitz zeta tail -----------------------------------------------------------
# zeta(s, a) ~ a^(1-s)/(s-1) + a^(-s)/2 + sum_j B_2j/(2j)! (s)_(2j-1) a^(-s-2j+1)  (large a). The leading
# integral term is handled in closed form by theory.hurwitz; here is the rest, to three Bernoulli terms.
_EM_ORDER = 3
_em = a ** (-s) / 2 + sum(
    sp.bernoulli(2 * j) / sp.factorial(2 * j) * sp.rf(s, 2 * j - 1) * a ** (-s - 2 * j + 1)
    for j in range(1, _EM_ORDER + 1)
)
#: the first omitted Euler-Maclaurin term: its magnitude bounds the truncation error.
em_next_term = sp.bernoulli(2 * _EM_ORDER + 2) / sp.factorial(2 * _EM_ORDER + 2) * sp.rf(s, 2 * _EM_ORDER + 1)
em_next_term = em_next_term * a ** (-s - 2 * _EM_ORDER - 1)


def em_correction() -> sp.Expr:
    """zeta(s, a) - a^(1-s)/(s-1), to three Bernoulli terms: a^-s/2 + s a^(-s-1)/12 - ... (expanded rf)."""
    return sp.expand_func(_em)


def em_correction_ds() -> sp.Expr:
    """d/ds of :func:`em_correction` (for sums of r^-s ln r, the entropy's tail)."""
    return sp.diff(sp.expand_func(_em), s)
