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
# # Language-like data: in-context Markov chains and the stage ladder
#
# Edelman et al. (2024) train transformers on sequences that each follow their own Markov chain, the transition
# matrix's rows drawn from a Dirichlet prior. Training passes three stages: predicting uniformly, then by the
# context's unigram counts, then by its bigram counts (the statistical induction head). zipfhead's family
# (`theory.markov`, `MarkovTask`) gives the prior a Zipf(alpha) base measure, so that alpha is the knob of
# non-uniformity (alpha = 0 is Edelman's setting). This notebook asserts the family's exact statistics: the
# Bayes predictor's closed form, the marginal it implies, the predictors' exact expected losses against the
# sampler, and how the Zipf exponent divides the loss between the unigram and the bigram stage.
#
# Status (issue 12): the data family, its sampler with a plain-Python twin and these statistics exist; toys are
# not yet trained on it, and the token-stream model has no v2 yet.

# %%
from __future__ import annotations

import itertools
import math
import time

import numpy as np
import sympy as sp

from theory import MarkovTask, exact_losses, predictor_losses, sample_markov
from theory.markov import polya_log_marginal, row_entropy

START = time.perf_counter()
CHECKS: dict[str, int] = {}


def check(section: str, condition: bool, message: str = "") -> None:
    assert condition, f"{section}: {message}"
    CHECKS[section] = CHECKS.get(section, 0) + 1


# %% [markdown]
# ## 1. The Bayes predictor is the Polya marginal, factor by factor
#
# With rows P_i ~ Dirichlet(beta p) and counts c_ij of the transitions i -> j seen so far, the posterior predictive
# of the next state after state i is (c_ij + beta p_j) / (c_i + beta). Multiplying these over a sequence must
# give the Dirichlet-multinomial (Polya) marginal of its transitions,
# prod_i Gamma(beta) / Gamma(c_i + beta) prod_j Gamma(c_ij + beta p_j) / Gamma(beta p_j).
# Checked symbolically (beta and p free) for every sequence of two states and length 5.

# %%
beta_, p0_ = sp.symbols("beta p0", positive=True)
P2 = (p0_, 1 - p0_)


def predictive_product(seq: tuple[int, ...]) -> sp.Expr:
    c = {}
    out = sp.Integer(1)
    for i, j in itertools.pairwise(seq):
        ci = sum(v for (a, _), v in c.items() if a == i)
        out *= (c.get((i, j), 0) + beta_ * P2[j]) / (ci + beta_)
        c[(i, j)] = c.get((i, j), 0) + 1
    return out


def polya(seq: tuple[int, ...]) -> sp.Expr:
    c = {(i, j): 0 for i in range(2) for j in range(2)}
    for i, j in itertools.pairwise(seq):
        c[(i, j)] += 1
    out = sp.Integer(1)
    for i in range(2):
        ci = c[(i, 0)] + c[(i, 1)]
        out *= sp.gamma(beta_) / sp.gamma(ci + beta_)
        for j in range(2):
            out *= sp.gamma(c[(i, j)] + beta_ * P2[j]) / sp.gamma(beta_ * P2[j])
    return out


for seq in itertools.product(range(2), repeat=5):
    check("polya", sp.simplify(sp.gammasimp(polya(seq) / predictive_product(seq)) - 1) == 0, f"{seq}")
print(f"{CHECKS['polya']} sequences: the predictive product is the Polya marginal")

# %% [markdown]
# ## 2. The marginal is a distribution, and the code's closed form agrees with it
#
# Summed over all sequences (with the first state drawn from p) the marginal is 1, exactly, with rational beta and
# p. `theory.markov.polya_log_marginal` (float, scipy's log-gamma) matches the exact rational value.

# %%
k3, T3 = 3, 4
beta_r = sp.Rational(3, 2)
p_r = [sp.Rational(1, 2), sp.Rational(1, 3), sp.Rational(1, 6)]


def rational_marginal(seq: tuple[int, ...], p: list[sp.Rational]) -> sp.Rational:
    """The Polya marginal of ``seq`` (first state from p) in exact rationals."""
    c = np.zeros((k3, k3), dtype=int)
    for i, j in itertools.pairwise(seq):
        c[i, j] += 1
    out = p[seq[0]]
    for i in range(k3):
        out *= sp.gamma(beta_r) / sp.gamma(int(c[i].sum()) + beta_r)
        for j in range(k3):
            out *= sp.gamma(int(c[i, j]) + beta_r * p[j]) / sp.gamma(beta_r * p[j])
    return sp.nsimplify(sp.gammasimp(out))


seqs = list(itertools.product(range(k3), repeat=T3))
check("marginal", sp.nsimplify(sum(rational_marginal(s, p_r) for s in seqs)) == 1, "the marginal sums to 1")
task_r = MarkovTask(k=3, T=T3, beta=1.5, alpha=0.0)  # its base is uniform: p_j = 1/3
exact_u = [rational_marginal(s, [sp.Rational(1, 3)] * 3) for s in seqs]
worst = max(
    abs(math.exp(polya_log_marginal(np.array(s), task_r)) - float(e)) for s, e in zip(seqs, exact_u, strict=True)
)
print(f"largest |float - exact| over {len(seqs)} sequences: {worst:.2e}")
check("marginal", worst < 1e-13, "float64 log-gamma against exact rationals (values below 1: 1e-13 is ~500 ulp)")

# %% [markdown]
# ## 3. The three predictors' exact losses against the sampler
#
# `exact_losses` enumerates every sequence of a small chain with its marginal probability. Sampled sequences
# (`sample_markov`, whose Numba kernel is checked draw for draw against a plain-Python twin in
# `tests/test_markov.py`) must give the same mean losses, within their standard errors. Two further identities:
# the first bigram loss is H(p) (no transition seen: the prediction is p, and x_2 averaged over P is p), and the
# expected entropy of one Dirichlet(beta p) row is psi(beta + 1) - sum_j p_j psi(beta p_j + 1) (the loss of an
# oracle that knows P, at the first step, whose state is independent of P).

# %%
task = MarkovTask(k=3, T=7, beta=2.0, alpha=1.0)
ex = exact_losses(task)
mc = predictor_losses(sample_markov(task, 30_000, seed=1), task)
mean, se = mc.mean(axis=0), mc.std(axis=0) / math.sqrt(mc.shape[0])
z = np.abs(mean - ex)[1:] / se[1:]  # the uniform predictor's loss is the constant log k: no spread to scale by
print("largest |Monte Carlo - exact| in standard errors:", round(float(z.max()), 2))
check("exact", float(z.max()) < 5.0, "5 standard errors over 12 comparisons: a false alarm has p < 1e-5")
# its expectation sums the marginal's probabilities, which make 1 up to float64 rounding
check("exact", np.allclose(ex[0], math.log(task.k), rtol=1e-12, atol=0), "the uniform predictor's loss is log k")
p = task.base.probs()
check("exact", abs(ex[2, 0] + np.sum(p * np.log(p))) < 1e-12, "first bigram loss = H(p)")
rows = np.random.default_rng(2).dirichlet(task.beta * p, size=100_000)
h = -np.sum(rows * np.log(np.clip(rows, 1e-300, None)), axis=1)
check("exact", abs(h.mean() - row_entropy(task)) < 5 * h.std() / math.sqrt(h.size), "expected row entropy")

# %% [markdown]
# ## 4. How the Zipf exponent divides the loss between the stages
#
# At the end of a 9-step chain over 3 states, the loss the unigram stage removes (uniform minus unigram) grows
# with alpha, and the loss left for the bigram stage (unigram minus bigram) shrinks. A skewed base measure
# rewards the in-context unigram sooner and leaves the induction (bigram) head less to gain: the quantity a
# reduced model of the stage durations must carry. Whether the toys' bigram stage is then later (the unigram
# stage's plateau is longer, Edelman et al.'s mechanism) or sooner is the experiment this notebook does not yet
# contain.

# %%
gains = {}
for alpha in (0.0, 0.5, 1.0, 1.5, 2.0):
    e = exact_losses(MarkovTask(k=3, T=9, beta=1.0, alpha=alpha))[:, -1]
    gains[alpha] = (float(e[0] - e[1]), float(e[1] - e[2]))
print({a: (round(u, 3), round(b, 3)) for a, (u, b) in gains.items()})
alphas = sorted(gains)
check("zipf", all(gains[a][0] < gains[b][0] for a, b in itertools.pairwise(alphas)), "unigram gain grows")
check("zipf", all(gains[a][1] > gains[b][1] for a, b in itertools.pairwise(alphas)), "bigram gain shrinks")
check("zipf", all(u > 0 and b > 0 for u, b in gains.values()), "each stage removes loss: the ladder")

# %% [markdown]
# ## Summary

# %%
print(CHECKS, f"{sum(CHECKS.values())} checks in {time.perf_counter() - START:.1f} s")
