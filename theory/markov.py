"""In-context Markov chains (Edelman et al. 2024): the sampler, the three reference predictors and their exact losses.

Each sequence draws its own transition matrix P (k x k): every row independently from Dirichlet(beta p), where
p = Zipf(k, alpha, q) is the base measure (alpha = 0: uniform, Edelman's setting). The first state is drawn from
p, independently of P; then x_(t+1) ~ P[x_t]. A model sees one sequence and predicts each next state.

Three predictors of x_(t+1) from x_1..x_t mark the stages a trained toy passes through (the *stage ladder*):

* ``uniform``: 1 / k;
* ``unigram``: (n_j + beta p_j) / (t + beta), n_j the count of state j among x_1..x_t (in-context unigram
  statistics, smoothed by the prior);
* ``bigram``: (c_ij + beta p_j) / (c_i + beta) at x_t = i, c_ij the count of transitions i -> j among x_1..x_t
  and c_i = sum_j c_ij. This is the Bayes posterior predictive of the model above: the best any predictor can do.

Exact statistics (``proofs_notebooks/05_language_like.py`` asserts each in sympy):

* the bigram predictor's probabilities multiply to the Polya (Dirichlet-multinomial) marginal of the sequence,
  p(x_1) prod_i Gamma(beta) / Gamma(c_i + beta) prod_j Gamma(c_ij + beta p_j) / Gamma(beta p_j);
* :func:`exact_losses` enumerates every sequence of a small chain with that marginal and gives the three
  predictors' expected losses per position exactly (the sampler and :func:`predictor_losses` are tested against
  it);
* :func:`row_entropy` is the expected entropy of a Dirichlet(beta p) row, psi(beta + 1) - sum_j p_j psi(beta p_j
  + 1): the loss of an oracle that knows P, at a step whose state is independent of P (the first).
"""

from __future__ import annotations

import itertools
import math

import numba as nb
import numpy as np
from scipy import special

from zipfhead.theory._rng import categorical, gamma_log, inverse_cdf_table, stream, uniform
from zipfhead.theory._validate import check_int
from zipfhead.theory.distributions import MarkovTask

__all__ = ["PREDICTORS", "exact_losses", "predictor_losses", "row_entropy", "sample_markov"]

#: the reference predictors, in the order of :func:`predictor_losses`'s first axis
PREDICTORS = ("uniform", "unigram", "bigram")
#: the largest number of sequences :func:`exact_losses` enumerates (k^T)
MAX_ENUMERATED = 2_000_000


@nb.njit(cache=True)
def _row_cdf(state, a, out):
    """One Dirichlet(a) row as a CDF into ``out``, its Gamma draws kept in logs (a row of tiny weights then still
    normalises)."""
    k = a.shape[0]
    mx = -np.inf
    for j in range(k):
        state, g = gamma_log(state, a[j])
        out[j] = g
        mx = max(mx, g)
    total = 0.0
    for j in range(k):
        out[j] = math.exp(out[j] - mx)
        total += out[j]
    acc = 0.0
    for j in range(k):
        acc += out[j] / total
        out[j] = acc
    out[k - 1] = 1.0
    return state


@nb.njit(cache=True, parallel=True)
def _markov_kernel(seed, offset, a, base_cdf, base_guide, T, tokens):
    S = tokens.shape[0]
    k = a.shape[0]
    for i in nb.prange(S):
        state = stream(np.uint64(seed), np.uint64(offset + i))
        rows = np.empty((k, k))
        for r in range(k):
            state = _row_cdf(state, a, rows[r])
        state, x = categorical(state, (base_cdf, base_guide))
        tokens[i, 0] = x
        for t in range(1, T):
            state, u = uniform(state)
            row = rows[x]
            j = 0
            while j < k - 1 and u >= row[j]:
                j += 1
            x = j
            tokens[i, t] = x


def sample_markov(task: MarkovTask, n_seqs: int, seed: int, offset: int = 0) -> np.ndarray:
    """``n_seqs`` sequences of ``task``: (n_seqs, T) int32 states in [0, k). Sequence i is stream ``offset + i``
    of ``seed``: any slice of a batch is drawn alike, whatever the thread count."""
    check_int("n_seqs", n_seqs, 0, 1 << 26)
    check_int("seed", seed, 0, 2**63 - 1)
    check_int("offset", offset, 0, 2**62)
    p = task.base.probs()
    cdf, guide = inverse_cdf_table(task.base.cdf())
    tokens = np.empty((n_seqs, task.T), dtype=np.int32)
    if n_seqs:
        _markov_kernel(seed, offset, task.beta * p, cdf, guide, task.T, tokens)
    return tokens


@nb.njit(cache=True, parallel=True)
def _loss_kernel(tokens, k, beta, p, out):
    S, T = tokens.shape
    for s in nb.prange(S):
        n = np.zeros(k)
        c = np.zeros((k, k))
        ci = np.zeros(k)
        n[tokens[s, 0]] += 1.0
        for t in range(T - 1):
            i, j = tokens[s, t], tokens[s, t + 1]
            out[s, 0, t] = math.log(k)
            out[s, 1, t] = -math.log((n[j] + beta * p[j]) / (t + 1 + beta))
            out[s, 2, t] = -math.log((c[i, j] + beta * p[j]) / (ci[i] + beta))
            n[j] += 1.0
            c[i, j] += 1.0
            ci[i] += 1.0


def predictor_losses(tokens: np.ndarray, task: MarkovTask) -> np.ndarray:
    """The reference predictors' log-losses (nats) on ``tokens`` (S, T): (S, 3, T - 1), axis 1 in
    :data:`PREDICTORS` order; entry [s, m, t] is predictor m's loss on x_(t+2) after x_1..x_(t+1)."""
    tokens = np.ascontiguousarray(tokens, dtype=np.int32)
    if tokens.ndim != 2 or tokens.shape[1] < 2:
        raise ValueError(f"tokens has shape {tokens.shape}: give (sequences, T) with T >= 2")
    if tokens.size and (tokens.min() < 0 or tokens.max() >= task.k):
        raise ValueError(f"tokens must lie in [0, k) = [0, {task.k})")
    out = np.empty((tokens.shape[0], len(PREDICTORS), tokens.shape[1] - 1))
    if tokens.shape[0]:
        _loss_kernel(tokens, task.k, task.beta, task.base.probs(), out)
    return out


def polya_log_marginal(seq: np.ndarray, task: MarkovTask) -> float:
    """log P(x_1..x_T) under the prior, in closed form: log p(x_1) + sum_i [lgamma(beta) - lgamma(c_i + beta) +
    sum_j (lgamma(c_ij + beta p_j) - lgamma(beta p_j))], c the transition counts of the sequence."""
    p = task.base.probs()
    k, beta = task.k, task.beta
    c = np.zeros((k, k))
    np.add.at(c, (seq[:-1], seq[1:]), 1.0)
    a = beta * p
    rows = special.gammaln(beta) - special.gammaln(c.sum(axis=1) + beta)
    cells = (special.gammaln(c + a[None, :]) - special.gammaln(a)[None, :]).sum(axis=1)
    return float(math.log(p[seq[0]]) + rows.sum() + cells.sum())


def exact_losses(task: MarkovTask) -> np.ndarray:
    """The three predictors' expected log-losses per position, exactly: (3, T - 1), by enumerating all k^T
    sequences with their Polya marginal probabilities (k^T at most :data:`MAX_ENUMERATED`)."""
    k, T = task.k, task.T
    if k**T > MAX_ENUMERATED:
        raise ValueError(f"k^T = {k}^{T} = {k**T} sequences is more than {MAX_ENUMERATED} to enumerate")
    seqs = np.array(list(itertools.product(range(k), repeat=T)), dtype=np.int32)
    prob = np.exp([polya_log_marginal(s, task) for s in seqs])
    if abs(prob.sum() - 1.0) > 1e-9:  # the marginal is a distribution: a check of the closed form itself
        raise AssertionError(f"the Polya marginal sums to {prob.sum()!r}, not 1")
    losses = predictor_losses(seqs, task)  # (n, 3, T - 1)
    return np.einsum("n,nmt->mt", prob, losses)


def row_entropy(task: MarkovTask) -> float:
    """E[H(P_i)] for a Dirichlet(beta p) row: psi(beta + 1) - sum_j p_j psi(beta p_j + 1) (nats)."""
    p = task.base.probs()
    return float(special.digamma(task.beta + 1.0) - np.sum(p * special.digamma(task.beta * p + 1.0)))
