"""In-context Markov chains (issue 12, item 2): the sampler and the predictors against their plain-Python twins,
and the exact statistics against Monte Carlo from the sampler."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from tests import naive
from zipfhead.theory.distributions import MarkovTask
from zipfhead.theory.markov import exact_losses, polya_log_marginal, predictor_losses, row_entropy, sample_markov

SEEDS = st.integers(0, 2**63 - 1)


@st.composite
def markov_tasks(draw) -> MarkovTask:
    return MarkovTask(
        k=draw(st.integers(2, 6)),
        T=draw(st.integers(2, 12)),
        beta=draw(st.floats(0.02, 30.0)),
        alpha=draw(st.floats(0.0, 2.5)),
    )


@settings(max_examples=30, deadline=None)
@given(task=markov_tasks(), seed=SEEDS, offset=st.integers(0, 2**40), n_seqs=st.integers(1, 4))
def test_sampler_matches_its_twin(task, seed, offset, n_seqs) -> None:
    np.testing.assert_array_equal(
        sample_markov(task, n_seqs, seed, offset), naive.naive_sample_markov(task, n_seqs, seed, offset)
    )


@settings(max_examples=30, deadline=None)
@given(task=markov_tasks(), seed=SEEDS)
def test_predictor_losses_match_their_twin(task, seed) -> None:
    tokens = sample_markov(task, 3, seed)
    # the same arithmetic in another order (counts in arrays against lists): float64 rounding only
    np.testing.assert_allclose(predictor_losses(tokens, task), naive.naive_predictor_losses(tokens, task), rtol=1e-12)


def test_a_batch_is_the_same_sliced_or_whole() -> None:
    task = MarkovTask(k=5, T=20, beta=2.0, alpha=1.0)
    whole = sample_markov(task, 10, seed=7)
    np.testing.assert_array_equal(whole[4:], sample_markov(task, 6, seed=7, offset=4))


@pytest.mark.parametrize("a", [0.03, 0.7, 3.0])
def test_gamma_draws_follow_the_gamma_law(a) -> None:
    """The Dirichlet rows are normalised Gamma(beta p_j) draws; the twin (identical to the kernel, above) gives
    2000 of them for a KS test at a fixed seed (deterministic: p above 0.001 or the law is wrong)."""
    state, draws = naive.stream(11, 0), []
    for _ in range(2000):
        state, g = naive.gamma_log(state, a)
        draws.append(math.exp(g))
    assert stats.kstest(draws, stats.gamma(a).cdf).pvalue > 1e-3


@pytest.mark.parametrize(("alpha", "beta"), [(0.0, 0.5), (0.0, 4.0), (1.5, 0.5), (1.5, 4.0)])
def test_exact_losses_match_the_sampler(alpha, beta) -> None:
    """The enumeration over all 3^6 sequences against 40000 sampled ones: every predictor at every position
    within 5 standard errors of the sample mean (one of 15 comparisons beyond 5 SE by chance: p < 1e-5)."""
    task = MarkovTask(k=3, T=6, beta=beta, alpha=alpha)
    exact = exact_losses(task)
    losses = predictor_losses(sample_markov(task, 40_000, seed=3), task)
    mean, se = losses.mean(axis=0), losses.std(axis=0) / math.sqrt(losses.shape[0])
    np.testing.assert_array_less(np.abs(mean - exact), 5 * se + 1e-12)


def test_the_first_bigram_loss_is_the_base_entropy() -> None:
    """With no transition seen, the Bayes predictor predicts p, and x_2's law averaged over P is p: its first
    loss is H(p)."""
    task = MarkovTask(k=4, T=3, beta=1.5, alpha=1.0)
    p = task.base.probs()
    assert exact_losses(task)[2, 0] == pytest.approx(-np.sum(p * np.log(p)), rel=1e-12)


def test_the_polya_marginal_is_the_product_of_the_predictions() -> None:
    """The chain rule: log P(x) = log p(x_1) - sum_t bigram loss_t, for sampled sequences (float64 rounding)."""
    task = MarkovTask(k=5, T=30, beta=0.7, alpha=0.8)
    tokens = sample_markov(task, 20, seed=5)
    losses = predictor_losses(tokens, task)[:, 2]
    p = task.base.probs()
    for seq, loss in zip(tokens, losses, strict=True):
        assert polya_log_marginal(seq, task) == pytest.approx(math.log(p[seq[0]]) - loss.sum(), rel=1e-10)


def test_row_entropy_matches_monte_carlo() -> None:
    """psi(beta + 1) - sum_j p_j psi(beta p_j + 1) against 200000 numpy Dirichlet rows (an independent sampler),
    within 5 standard errors."""
    task = MarkovTask(k=6, T=2, beta=3.0, alpha=1.2)
    rows = np.random.default_rng(0).dirichlet(task.beta * task.base.probs(), size=200_000)
    h = -np.sum(np.where(rows > 0, rows * np.log(np.where(rows > 0, rows, 1.0)), 0.0), axis=1)
    assert abs(h.mean() - row_entropy(task)) < 5 * h.std() / math.sqrt(h.size)


def test_the_ladder_orders_the_predictors_late_in_a_sequence() -> None:
    """Past a few steps the in-context bigram beats the unigram, which beats uniform (Edelman's stage ladder),
    at a small concentration (sharp rows)."""
    task = MarkovTask(k=3, T=9, beta=0.5, alpha=0.0)
    exact = exact_losses(task)
    assert exact[2, -1] < exact[1, -1] < exact[0, -1]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [({"k": 1}, "k = 1"), ({"beta": 0.0}, "beta = 0.0"), ({"T": 1}, "T = 1"), ({"alpha": -1.0}, "alpha = -1.0")],
)
def test_bad_parameters_are_named(kwargs, needle) -> None:
    with pytest.raises(ValueError, match=needle.replace(".", r"\.")):
        MarkovTask(**kwargs)


def test_out_of_range_tokens_are_refused() -> None:
    task = MarkovTask(k=3, T=4)
    with pytest.raises(ValueError, match=r"\[0, k\)"):
        predictor_losses(np.array([[0, 1, 3, 0]]), task)
