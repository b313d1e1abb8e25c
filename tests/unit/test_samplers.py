"""The Numba samplers (theory/samplers.py) and their generator (theory/_rng.py).

What is proved, in order:
* twins: the generator and every kernel equal the plain-Python twins of ``tests/naive.py`` on hypothesis-drawn
  configs, seeds and offsets (ints and flags exactly; float items within rtol = atol = 1e-12, see below);
* reproducibility: a batch is a function of (seed, sequence index) only: same seed, same batch; another seed,
  another batch; ``offset=a, n`` are rows a:a+n of a larger batch; the thread count does not matter;
* laws: chi-square tests of the i.i.d. draws against ``Zipf.probs()`` (and uniform), the bursty/novel fractions,
  the item means and variances;
* structure: the exact invariants of bursty, novel, swap and iwl sequences and of token streams;
* validation: bad arguments raise ValueError naming the parameter and its value.

Tolerances:
* Float items: rtol = atol = 1e-12. Both sides compute in float64 in the same operation order, but the Numba
  kernels' log/cos/sin/sqrt and Python's ``math`` ones may come from different libm builds that can differ in
  the last ulp (~1e-16 relative). The stored items are float32, so such a difference would only show if it
  crossed a float32 rounding boundary (chance ~2^-29 per value); in practice the arrays are identical.
* Statistical tests use fixed seeds, so they are deterministic; each threshold is set so that a correct sampler
  would fail for a random seed with probability below ~1e-6 (chi-square) or ~6e-7 (5 standard errors, two-sided
  normal tail), as stated at each test.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections import Counter

import numba
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from numba import njit, prange

from tests import naive
from zipfhead.theory import _rng
from zipfhead.theory.distributions import ClassificationTask, TokenStreamTask, Zipf
from zipfhead.theory.samplers import (
    EVAL_KINDS,
    class_means,
    sample_classes,
    sample_classification,
    sample_repeated_tokens,
    sample_token_streams,
)

RTOL = ATOL = 1e-12  # float items: last-ulp libm differences only (see the module docstring)
SEEDS = st.integers(0, 2**64 - 1)
OFFSETS = st.one_of(st.integers(0, 1000), st.integers(0, 2**62 - 64))  # up to the wrappers' bound 2^62
TWIN_EXAMPLES = settings(max_examples=150)  # the twins are cheap: more examples than the profile's default
CHI2_P = 1e-6  # the chi-square tests' false-alarm probability for a random seed
N_SE = 5.0  # mean/variance/fraction tests: |error| < 5 standard errors (two-sided normal tail ~ 5.7e-7)


# --------------------------------------------------------------------------------------------------------------
# Strategies and helpers
# --------------------------------------------------------------------------------------------------------------


@st.composite
def classification_tasks(
    draw, max_K: int = 50, N: int | None = None, D: int | None = None, L: int | None = None
) -> ClassificationTask:
    """Small valid tasks: B | N, N/B <= K, L >= N/B (L == N/B is allowed: swap then needs to be skipped). N, D and L
    are drawn unless given (a given L must be at least N)."""
    N = draw(st.sampled_from([1, 2, 3, 4, 6, 8, 12])) if N is None else N
    B = draw(st.sampled_from([b for b in range(1, N + 1) if N % b == 0]))
    m = N // B
    return ClassificationTask(
        K=draw(st.integers(max(2, m), max_K)),
        N=N,
        D=draw(st.integers(1, 7)) if D is None else D,
        L=draw(st.integers(max(2, m), 40)) if L is None else L,
        B=B,
        p_B=draw(st.floats(0.0, 1.0)),
        p_C=draw(st.floats(0.0, 1.0)),
        eps=draw(st.floats(0.0, 2.0)),
        alpha=draw(st.floats(0.0, 3.0)),
        q=draw(st.floats(0.0, 3.0)),
        label_map=draw(st.sampled_from(["fixed", "per_sequence"])),
    )


@st.composite
def token_tasks(draw) -> TokenStreamTask:
    """Small valid token-stream tasks (at most 5 triggers, so the twins' rejection loops stay short)."""
    V = draw(st.integers(2, 40))
    return TokenStreamTask(
        V=V,
        T=draw(st.integers(2, 80)),
        alpha=draw(st.floats(0.0, 3.0)),
        q=draw(st.floats(0.0, 3.0)),
        n_triggers=draw(st.integers(0, min(V - 1, 5))),
        trigger_dist=draw(st.sampled_from(["zipf", "uniform"])),
        output_dist=draw(st.sampled_from(["zipf", "uniform"])),
    )


def assert_batches_equal(got, want) -> None:
    """Same fields; ints and flags exactly equal with the same dtype; float items within RTOL/ATOL."""
    if isinstance(got, np.ndarray):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
        return
    assert type(got)._fields == type(want)._fields
    for name in type(got)._fields:
        g, w = getattr(got, name), getattr(want, name)
        if g is None or w is None:
            assert g is None and w is None, name
            continue
        assert g.dtype == w.dtype and g.shape == w.shape, name
        if g.dtype.kind == "f":
            np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL, err_msg=name)
        else:
            np.testing.assert_array_equal(g, w, err_msg=name)


def chi2_upper_quantile(df: int, p: float) -> float:
    """The (1 - p) quantile of chi-square(df) by the Wilson-Hilferty approximation (scipy is not available).

    (X / df)^(1/3) is nearly Normal(1 - h, h) with h = 2 / (9 df); for df >= 10 and p >= 1e-6 the quantile is
    within ~1% of the exact one, far less than the margin a real sampling error would exceed it by.
    """
    z = statistics.NormalDist().inv_cdf(1.0 - p)
    h = 2.0 / (9.0 * df)
    return df * (1.0 - h + z * math.sqrt(h)) ** 3


def pooled_chi2(counts: np.ndarray, probs: np.ndarray) -> tuple[float, int]:
    """Pearson's chi-square of ``counts`` against ``probs``, pooling bins so each expects at least 5.

    Consecutive bins (in rank order, so the Zipf tail is pooled) are merged until the pooled expected count
    reaches 5; a short remainder joins the last pooled bin. Returns (statistic, degrees of freedom).
    """
    assert counts.shape == probs.shape
    expected = counts.sum() * probs
    pooled: list[list[float]] = []
    obs = exp = 0.0
    for o, e in zip(counts.tolist(), expected.tolist(), strict=True):
        obs, exp = obs + o, exp + e
        if exp >= 5.0:
            pooled.append([obs, exp])
            obs = exp = 0.0
    if exp > 0.0 or obs > 0.0:
        pooled[-1][0] += obs
        pooled[-1][1] += exp
    stat = sum((o - e) ** 2 / e for o, e in pooled)
    return stat, len(pooled) - 1


def assert_chi2_fits(counts: np.ndarray, probs: np.ndarray) -> None:
    """The pooled chi-square statistic is below its (1 - CHI2_P) quantile (and the approximation is valid)."""
    stat, df = pooled_chi2(counts, probs)
    assert df >= 10, "too few pooled bins for the Wilson-Hilferty quantile"
    limit = chi2_upper_quantile(df, CHI2_P)
    assert stat < limit, f"chi2 = {stat:.1f} with df = {df}: above the p = {CHI2_P} threshold {limit:.1f}"


def test_chi2_quantile_against_known_values():
    """The Wilson-Hilferty quantile is within 1% of tabulated exact chi-square quantiles (df = 10, 100)."""
    assert chi2_upper_quantile(10, 0.001) == pytest.approx(29.588, rel=0.01)
    assert chi2_upper_quantile(100, 0.001) == pytest.approx(149.449, rel=0.01)
    assert chi2_upper_quantile(100, 0.05) == pytest.approx(124.342, rel=0.01)


# --------------------------------------------------------------------------------------------------------------
# The generator
# --------------------------------------------------------------------------------------------------------------


def test_naive_generator_is_splitmix64():
    """The twin reproduces the published SplitMix64 outputs from state 0 (so both twins are anchored to it)."""
    state, outs = 0, []
    for _ in range(3):
        state, z = naive.next_u64(state)
        outs.append(z)
    assert outs == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


@TWIN_EXAMPLES
@given(state=SEEDS, index=SEEDS, n=st.integers(1, 2**31 - 1), K=st.integers(1, 60), alpha=st.floats(0, 3))
def test_generator_matches_naive_twin(state, index, n, K, alpha):
    """Each Numba primitive of theory/_rng.py gives the twin's new state and value (floats bit for bit)."""
    s = np.uint64(state)
    assert int(_rng.mix64(s)) == naive.mix64(state)
    assert int(_rng.stream(s, np.uint64(index))) == naive.stream(state, index)
    assert tuple(map(int, _rng.next_u64(s))) == naive.next_u64(state)
    got_state, u = _rng.uniform(s)
    assert (int(got_state), u) == naive.uniform(state)
    got_state, r = _rng.randint(s, n)
    assert (int(got_state), r) == naive.randint(state, n)
    got_state, z = _rng.normal(s)
    want_state, w = naive.normal(state)
    assert int(got_state) == want_state
    np.testing.assert_allclose(z, w, rtol=RTOL, atol=ATOL)
    cdf = Zipf(K, alpha).cdf()
    got_state, k = _rng.categorical(s, _rng.inverse_cdf_table(cdf))
    assert (int(got_state), k) == naive.categorical(state, cdf.tolist())


# --------------------------------------------------------------------------------------------------------------
# Twin equality of the kernels
# --------------------------------------------------------------------------------------------------------------


@TWIN_EXAMPLES
@given(
    task=classification_tasks(),
    kind=st.sampled_from(EVAL_KINDS),
    seed=SEEDS,
    means_seed=SEEDS,
    offset=OFFSETS,
    n_seqs=st.integers(1, 12),
    with_items=st.booleans(),
)
def test_classification_matches_naive_twin(task, kind, seed, means_seed, offset, n_seqs, with_items):
    """class_means and sample_classification (every kind, with and without items) equal their twins.

    This covers the bursty expansion in place, the Fisher-Yates shuffle, the label rules, the iwl rejection, and
    the novel means drawn from stream(seed ^ salt, index * m + j) (offsets near 2^62 make index * m wrap).
    """
    assume(not (kind == "swap" and task.L == task.classes_per_burst))  # swap needs L > N/B
    means = class_means(task, means_seed)
    np.testing.assert_allclose(means, naive.naive_class_means(task, means_seed), rtol=RTOL, atol=ATOL)
    got = sample_classification(task, means, n_seqs, seed, kind, offset=offset, with_items=with_items)
    want = naive.naive_sample_classification(task, means, n_seqs, seed, kind, offset=offset, with_items=with_items)
    assert_batches_equal(got, want)
    assert_batches_equal(
        sample_classes(task, n_seqs, seed, kind, offset=offset),
        naive.naive_sample_classes(task, n_seqs, seed, kind, offset=offset),
    )


@TWIN_EXAMPLES
@given(task=token_tasks(), seed=SEEDS, offset=OFFSETS, n_seqs=st.integers(1, 8))
def test_token_streams_match_naive_twin(task, seed, offset, n_seqs):
    """sample_token_streams (both trigger/output laws, 0..5 triggers) equals its twin exactly."""
    got = sample_token_streams(task, n_seqs, seed, offset=offset)
    assert_batches_equal(got, naive.naive_sample_token_streams(task, n_seqs, seed, offset=offset))


@TWIN_EXAMPLES
@given(
    V=st.one_of(st.integers(2, 50), st.integers(2, 2**31 - 1)),
    R=st.integers(1, 40),
    seed=SEEDS,
    offset=OFFSETS,
    n_seqs=st.integers(1, 8),
)
def test_repeated_tokens_match_naive_twin(V, R, seed, offset, n_seqs):
    """sample_repeated_tokens equals its twin exactly (int32, shape (S, 2R)), also for V near 2^31."""
    got = sample_repeated_tokens(V, R, n_seqs, seed, offset=offset)
    want = naive.naive_sample_repeated_tokens(V, R, n_seqs, seed, offset=offset)
    assert got.dtype == want.dtype == np.int32
    np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------------------------------------------
# Reproducibility
# --------------------------------------------------------------------------------------------------------------

TASK = ClassificationTask(K=40, N=8, D=5, L=12, B=2, p_B=0.5, p_C=0.25, eps=0.3, alpha=1.0, q=0.5)
TOKENS = TokenStreamTask(V=30, T=64, alpha=1.0, n_triggers=3)


def _draw_all(seed: int, n: int, offset: int = 0, kind: str = "train") -> dict[str, object]:
    """One batch of every sampler (class means from a fixed seed) under ``seed``."""
    means = class_means(TASK, 99)
    return {
        "classification": sample_classification(TASK, means, n, seed, kind, offset=offset),
        "tokens": sample_token_streams(TOKENS, n, seed, offset=offset),
        "repeated": sample_repeated_tokens(30, 16, n, seed, offset=offset),
    }


def _rows(batch, a: int, b: int):
    """Rows a:b of every array of a batch."""
    if isinstance(batch, np.ndarray):
        return batch[a:b]
    return type(batch)(*(None if x is None else x[a:b] for x in batch))


@pytest.mark.parametrize("kind", EVAL_KINDS)
def test_same_seed_same_batch_other_seed_other_batch(kind):
    """Same seed -> identical arrays; another seed (even seed + 1) -> different arrays, for every sampler."""
    first, again, other = _draw_all(7, 64, kind=kind), _draw_all(7, 64, kind=kind), _draw_all(8, 64, kind=kind)
    for name in first:
        assert_batches_equal(_rows(first[name], 0, 64), _rows(again[name], 0, 64))
    assert not np.array_equal(first["classification"].items, other["classification"].items)
    assert not np.array_equal(first["tokens"].tokens, other["tokens"].tokens)
    assert not np.array_equal(first["repeated"], other["repeated"])


@given(a=st.integers(0, 40), n=st.integers(1, 24), seed=SEEDS)
def test_offset_chunk_equals_rows_of_larger_batch(a, n, seed):
    """``offset=a, n_seqs=n`` equals rows a:a+n of a batch of a+n+3 sequences (all samplers, all kinds)."""
    for kind in EVAL_KINDS:
        big = _draw_all(seed, a + n + 3, kind=kind)
        chunk = _draw_all(seed, n, offset=a, kind=kind)
        for name in big:
            assert_batches_equal(chunk[name], _rows(big[name], a, a + n))


def test_batch_does_not_depend_on_thread_count():
    """One thread and all threads give the same batch: each sequence has its own counter-based stream."""
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        single = _draw_all(123, 257)
    finally:
        numba.set_num_threads(before)
    parallel = _draw_all(123, 257)
    for name in single:
        assert_batches_equal(single[name], parallel[name])


def test_classes_do_not_depend_on_items():
    """Items are drawn after the classes, so sample_classes gives the classes and labels of the full sampler."""
    full = sample_classification(TASK, class_means(TASK, 1), 100, 5, "train")
    ids = sample_classes(TASK, 100, 5, "train")
    assert ids.items is None
    for name in ("labels", "classes", "bursty", "novel"):
        np.testing.assert_array_equal(getattr(full, name), getattr(ids, name))


# --------------------------------------------------------------------------------------------------------------
# Laws: chi-square goodness of fit (threshold: p = CHI2_P = 1e-6, Wilson-Hilferty quantile)
# --------------------------------------------------------------------------------------------------------------


def test_iid_context_classes_follow_zipf():
    """With p_B = p_C = 0 all N+1 classes of a sequence are i.i.d. Zipf: chi-square over 9 * 10^5 draws."""
    task = ClassificationTask(K=300, N=8, D=1, L=32, B=2, p_B=0.0, p_C=0.0, alpha=1.1, q=2.0)
    batch = sample_classes(task, 100_000, 2024)
    assert not batch.bursty.any() and not batch.novel.any()
    assert_chi2_fits(np.bincount(batch.classes.ravel(), minlength=task.K), task.zipf.probs())


def test_iwl_context_classes_follow_zipf_without_the_query_class():
    """iwl: the query is Zipf, and a context class is Zipf conditioned on differing from the query.

    So the context marginal is P(c) = sum_{k != c} p_k p_c / (1 - p_k) = p_c (S - p_c / (1 - p_c)) with
    S = sum_k p_k / (1 - p_k); both marginals are checked by chi-square (p = 1e-6).
    """
    task = ClassificationTask(K=60, N=4, D=1, L=16, B=1, alpha=1.5, q=0.0)
    batch = sample_classes(task, 100_000, 77, "iwl")
    p = task.zipf.probs()
    assert_chi2_fits(np.bincount(batch.classes[:, -1], minlength=task.K), p)
    w = p / (1.0 - p)
    context_law = p * (w.sum() - w)
    np.testing.assert_allclose(context_law.sum(), 1.0, rtol=1e-12)
    assert_chi2_fits(np.bincount(batch.classes[:, :-1].ravel(), minlength=task.K), context_law)


def test_token_background_follows_zipf():
    """With no triggers every token is i.i.d. Zipf(V, alpha, q): chi-square over 10^6 tokens."""
    task = TokenStreamTask(V=500, T=250, alpha=1.3, q=0.5, n_triggers=0)
    batch = sample_token_streams(task, 4000, 31337)
    assert batch.triggers.shape == (4000, 0) and not batch.induction.any()
    assert_chi2_fits(np.bincount(batch.tokens.ravel(), minlength=task.V), task.zipf.probs())


def test_repeated_tokens_are_uniform():
    """The first half of each repeated-token sequence is i.i.d. uniform on V: chi-square over 6.4 * 10^5."""
    V, R = 97, 64
    out = sample_repeated_tokens(V, R, 10_000, 4242)
    np.testing.assert_array_equal(out[:, :R], out[:, R:])
    assert_chi2_fits(np.bincount(out[:, :R].ravel(), minlength=V), np.full(V, 1.0 / V))


# --------------------------------------------------------------------------------------------------------------
# Structure of classification sequences (exact invariants)
# --------------------------------------------------------------------------------------------------------------


def check_sequences(task: ClassificationTask, batch, kind: str) -> None:
    """Assert every structural rule of every sequence of ``batch`` (drawn with ``kind``)."""
    N, B, L, K = task.N, task.B, task.L, task.K
    m = task.classes_per_burst
    for cls_row, lab_row, is_bursty, is_novel in zip(
        batch.classes.tolist(), batch.labels.tolist(), batch.bursty, batch.novel, strict=True
    ):
        context, query = cls_row[:N], cls_row[N]
        # Flags follow the kind: icl = novel and bursty, swap = bursty, iwl = neither, novel implies bursty.
        assert is_novel == (kind == "icl") or kind == "train"
        assert is_bursty == (kind != "iwl") or kind == "train"
        assert is_bursty or not is_novel
        assert all(0 <= lab < L for lab in lab_row)
        # Labels are consistent: the same class carries the same label everywhere in the sequence.
        label_of: dict[int, int] = {}
        for c, lab in zip(cls_row, lab_row, strict=True):
            assert label_of.setdefault(c, lab) == lab
        if is_bursty:
            # Exactly N/B distinct classes, each exactly B times, and the query's class among them.
            counts = Counter(context)
            assert len(counts) == m and set(counts.values()) == {B}
            assert query in counts
        if is_novel:
            # Novel classes are -1..-(N/B), with distinct labels.
            assert set(cls_row) == set(range(-m, 0))
            assert len(set(label_of.values())) == m
        else:
            assert all(0 <= c < K for c in cls_row)
        if kind == "swap":
            # Distinct labels, none equal to the class's own label c mod L.
            assert len(set(label_of.values())) == m
            assert all(lab != c % L for c, lab in label_of.items())
        elif is_bursty and task.label_map == "per_sequence" and kind == "train":
            assert len(set(label_of.values())) == m  # redrawn like a novel context's: distinct labels
        elif not is_novel and not (task.label_map == "per_sequence" and kind == "train"):
            assert all(lab == c % L for c, lab in label_of.items())
        if kind == "iwl":
            assert query not in context


@TWIN_EXAMPLES
@given(
    task=classification_tasks(),
    kind=st.sampled_from(EVAL_KINDS),
    seed=SEEDS,
    force_bursty=st.booleans(),
)
def test_sequence_structure(task, kind, seed, force_bursty):
    """Every sequence of every kind obeys the burst, label, novelty and iwl rules of ``check_sequences``.

    With force_bursty the task has p_B = 1, so every train sequence must be bursty.
    """
    assume(not (kind == "swap" and task.L == task.classes_per_burst))
    if force_bursty:
        task = dataclasses.replace(task, p_B=1.0)
    batch = sample_classes(task, 200, seed, kind)
    check_sequences(task, batch, kind)
    if force_bursty and kind == "train":
        assert batch.bursty.all()


def test_bursty_and_novel_fractions_match_p_B_and_p_C():
    """Train: P(novel) = p_C and P(bursty) = p_C + (1 - p_C) p_B, each within 5 binomial standard errors.

    SE = sqrt(p (1 - p) / S) with S = 2 * 10^5 sequences.
    """
    p_B, p_C, S = 0.3, 0.2, 200_000
    task = ClassificationTask(K=50, N=8, D=1, L=32, B=2, p_B=p_B, p_C=p_C)
    batch = sample_classes(task, S, 11)
    for observed, p in ((batch.novel.mean(), p_C), (batch.bursty.mean(), p_C + (1 - p_C) * p_B)):
        se = math.sqrt(p * (1 - p) / S)
        assert abs(observed - p) < N_SE * se, (observed, p, se)
    check_sequences(task, _rows(batch, 0, 2000), "train")


# --------------------------------------------------------------------------------------------------------------
# Item vectors
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["train", "swap", "iwl"])
def test_items_without_noise_equal_their_class_means(kind):
    """eps = 0: every item of a known class is exactly its mean (the scale 1/sqrt(1 + eps^2) is 1)."""
    task = ClassificationTask(K=30, N=6, D=7, L=10, B=3, p_B=0.5, p_C=0.0, eps=0.0)
    means = class_means(task, 3)
    batch = sample_classification(task, means, 300, 4, kind)
    np.testing.assert_array_equal(batch.items, means[batch.classes])


def test_novel_means_shared_by_the_copies_of_a_class():
    """eps = 0, icl: the B copies (and the query) of a novel class are bit-identical; different classes differ."""
    task = ClassificationTask(K=30, N=8, D=5, L=10, B=2, eps=0.0)
    batch = sample_classification(task, class_means(task, 3), 200, 5, "icl")
    for items, classes in zip(batch.items, batch.classes, strict=True):
        vectors: dict[int, np.ndarray] = {}
        for x, c in zip(items, classes.tolist(), strict=True):
            np.testing.assert_array_equal(vectors.setdefault(c, x), x)
        distinct = np.array(list(vectors.values()))
        assert len({row.tobytes() for row in distinct}) == len(distinct)


@pytest.mark.parametrize("eps", [0.0, 0.5, 2.0])
def test_novel_item_coordinates_have_variance_one_over_D(eps):
    """An icl query item is (mu + eps eta) / sqrt(1 + eps^2) with fresh mu, eta ~ N(0, I/D): each coordinate is
    N(0, 1/D), independent across coordinates and sequences.

    Over n = S * D values: the mean is within 5 SE = 5 sqrt(1/(D n)) of 0, and the mean square within
    5 SE = 5 (1/D) sqrt(2/n) of 1/D (Var(x^2) = 2 sigma^4 for a centred normal).
    """
    D, S = 5, 20_000
    task = ClassificationTask(K=30, N=8, D=D, L=10, B=2, eps=eps)
    x = sample_classification(task, class_means(task, 3), S, 6, "icl").items[:, -1, :].astype(np.float64).ravel()
    n, var = x.size, 1.0 / D
    assert abs(x.mean()) < N_SE * math.sqrt(var / n)
    assert abs(np.mean(x * x) - var) < N_SE * var * math.sqrt(2.0 / n)


def test_class_means_and_noise_variances():
    """class_means: coordinates N(0, 1/D). Noise: item - mean * scale = eps eta scale, variance eps^2 / (D (1 + eps^2)).

    Both mean squares are within 5 SE = 5 sigma^2 sqrt(2/n) of sigma^2 (n values, centred normal).
    """
    D, eps = 7, 0.7
    task = ClassificationTask(K=3000, N=8, D=D, L=32, B=2, p_B=0.0, eps=eps)
    means = class_means(task, 17)
    n, var = means.size, 1.0 / D
    assert abs(np.mean(means.astype(np.float64) ** 2) - var) < N_SE * var * math.sqrt(2.0 / n)
    batch = sample_classification(task, means, 20_000, 18, "train")
    scale = 1.0 / math.sqrt(1.0 + eps * eps)
    noise = batch.items.astype(np.float64) - means[batch.classes].astype(np.float64) * scale
    n, var = noise.size, eps * eps * scale * scale / D
    assert abs(np.mean(noise * noise) - var) < N_SE * var * math.sqrt(2.0 / n)


# --------------------------------------------------------------------------------------------------------------
# Token streams (exact invariants)
# --------------------------------------------------------------------------------------------------------------


@TWIN_EXAMPLES
@given(task=token_tasks(), seed=SEEDS)
def test_token_stream_structure(task, seed):
    """Triggers are distinct, outputs are never triggers, every trigger occurrence (but at the last position) is
    followed by its output, and ``induction[t]`` holds exactly when tokens[t-1] is a trigger that also occurs
    somewhere in tokens[:t-1] (recomputed directly from the tokens)."""
    batch = sample_token_streams(task, 50, seed)
    assert batch.tokens.min() >= 0 and batch.tokens.max() < task.V
    for tokens, triggers, outputs, induction in zip(
        batch.tokens.tolist(), batch.triggers.tolist(), batch.outputs.tolist(), batch.induction.tolist(), strict=True
    ):
        assert len(set(triggers)) == len(triggers) == task.n_triggers
        assert not set(outputs) & set(triggers)
        output_of = dict(zip(triggers, outputs, strict=True))
        for t in range(task.T - 1):
            if tokens[t] in output_of:
                assert tokens[t + 1] == output_of[tokens[t]]
        expected = [t >= 1 and tokens[t - 1] in output_of and tokens[t - 1] in tokens[: t - 1] for t in range(task.T)]
        assert induction == expected


# --------------------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------------------

BAD_TASK = ClassificationTask(K=20, N=8, D=3, L=4, B=2)  # N/B = 4 = L: too few labels for swap
BAD_MEANS = np.zeros((20, 3), dtype=np.float32)

BAD_CALLS = {
    "n_seqs=0 classification": (lambda: sample_classification(BAD_TASK, BAD_MEANS, 0, 1), "n_seqs", "0"),
    "n_seqs=0 classes": (lambda: sample_classes(BAD_TASK, 0, 1), "n_seqs", "0"),
    "n_seqs=0 tokens": (lambda: sample_token_streams(TOKENS, 0, 1), "n_seqs", "0"),
    "n_seqs=0 repeated": (lambda: sample_repeated_tokens(10, 4, 0, 1), "n_seqs", "0"),
    "seed<0 classification": (lambda: sample_classification(BAD_TASK, BAD_MEANS, 2, -1), "seed", "-1"),
    "seed<0 means": (lambda: class_means(BAD_TASK, -1), "seed", "-1"),
    "seed<0 tokens": (lambda: sample_token_streams(TOKENS, 2, -1), "seed", "-1"),
    "seed<0 repeated": (lambda: sample_repeated_tokens(10, 4, 2, -1), "seed", "-1"),
    "seed=2^64 classes": (lambda: sample_classes(BAD_TASK, 2, 2**64), "seed", str(2**64)),
    "seed=2^64 means": (lambda: class_means(BAD_TASK, 2**64), "seed", str(2**64)),
    "seed=2^64 tokens": (lambda: sample_token_streams(TOKENS, 2, 2**64), "seed", str(2**64)),
    "seed=2^64 repeated": (lambda: sample_repeated_tokens(10, 4, 2, 2**64), "seed", str(2**64)),
    "kind=foo": (lambda: sample_classification(BAD_TASK, BAD_MEANS, 2, 1, "foo"), "kind", "foo"),
    "kind=foo classes": (lambda: sample_classes(BAD_TASK, 2, 1, "foo"), "kind", "foo"),
    "swap with L = N/B": (lambda: sample_classes(BAD_TASK, 2, 1, "swap"), "L", "4"),
    "means (K, D+1)": (lambda: sample_classification(BAD_TASK, np.zeros((20, 4)), 2, 1), "means", "(20, 4)"),
    "means (K-1, D)": (lambda: sample_classification(BAD_TASK, np.zeros((19, 3)), 2, 1), "means", "(19, 3)"),
    "means 1-d": (lambda: sample_classification(BAD_TASK, np.zeros(60), 2, 1), "means", "(60,)"),
    "offset<0": (lambda: sample_classes(BAD_TASK, 2, 1, offset=-1), "offset", "-1"),
    "V=1 repeated": (lambda: sample_repeated_tokens(1, 4, 2, 1), "V", "1"),
    "R=0 repeated": (lambda: sample_repeated_tokens(10, 0, 2, 1), "R", "0"),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_input_raises_naming_parameter_and_value(case):
    """Each bad argument raises ValueError whose message names the parameter and the offending value."""
    call, name, value = BAD_CALLS[case]
    with pytest.raises(ValueError) as excinfo:
        call()
    message = str(excinfo.value)
    assert name in message and value in message, message


# --- fixes found by review: unreachable ranks, novel-mean streams, the ziggurat's law --------------------------------
@pytest.mark.parametrize(
    ("call", "needle"),
    [
        # Zipf(100, 16): only ranks 1..10 have a probability above float64 resolution, so 16 distinct classes
        # (or 20 distinct triggers) cannot be drawn: rejection sampling would loop for ever.
        (lambda: sample_classes(ClassificationTask(K=100, N=16, B=1, L=32, alpha=16, p_B=1.0), 1, 0), "N/B = 16"),
        (lambda: sample_token_streams(TokenStreamTask(V=100, T=10, alpha=16, n_triggers=20), 1, 0), "n_triggers = 20"),
    ],
)
def test_unreachable_ranks_are_refused_not_looped_on(call, needle):
    """Configs whose rejection loops could never finish raise ValueError naming the parameter."""
    with pytest.raises(ValueError, match=needle):
        call()


def test_novel_means_differ_across_far_apart_sequences():
    """Novel class means are keyed by (sequence, class) through nested streams: no wrap-around at 2^61."""
    task = ClassificationTask(K=64, N=8, B=1, L=32, D=5, eps=0.0)
    means = class_means(task, 0)
    a = sample_classification(task, means, 1, 3, "icl", offset=0).items
    b = sample_classification(task, means, 1, 3, "icl", offset=2**61).items
    assert not np.array_equal(a, b)


@njit(parallel=True)
def _normals(n, seed):
    out = np.empty(n)
    for b in prange(n // 1000):
        st = _rng.stream(np.uint64(seed), np.uint64(b))
        for i in range(1000):
            st, out[b * 1000 + i] = _rng.normal(st)
    return out


def test_ziggurat_normal_law():
    """10^6 ziggurat normals: the empirical CDF at 13 points, the mean and the variance, each within 5 SE.

    SE of a CDF value F is sqrt(F (1-F) / n); of the mean 1/sqrt(n); of the variance sqrt(2/n). Points include
    the base layer's edge R = 3.4426 and the tail beyond it, which takes the exponential-rejection branch.
    """
    n = 10**6
    x = _normals(n, 7)
    for z in (-4.5, -3.5, -3.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0, 3.4426, 4.0):
        F = 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))
        assert abs(np.mean(x < z) - F) < 5 * math.sqrt(F * (1 - F) / n) + 1 / n, z
    assert abs(x.mean()) < 5 / math.sqrt(n)
    assert abs(x.var() - 1.0) < 5 * math.sqrt(2 / n)


def test_per_sequence_labels_carry_nothing_between_sequences():
    """label_map = per_sequence: a known class's training label is uniform over the L labels across sequences
    (chi-square over 8000 sequences' query labels of the most frequent class, p > 1e-4), while under the fixed map
    it is always k mod L; evaluation sets keep the fixed map (the swap set still avoids the class's own label)."""
    from scipy import stats

    base = ClassificationTask(K=20, N=8, D=2, L=8, B=2, p_B=0.5, p_C=0.0, alpha=1.0)
    redrawn = dataclasses.replace(base, label_map="per_sequence")
    batch = sample_classes(redrawn, 8000, 11)
    top = batch.classes[:, -1] == 0
    counts = np.bincount(batch.labels[top, -1], minlength=base.L)
    assert stats.chisquare(counts).pvalue > 1e-4, counts
    fixed = sample_classes(base, 2000, 11)
    assert np.all(fixed.labels == fixed.classes % base.L)
    iwl = sample_classes(redrawn, 500, 12, "iwl")
    assert np.all(iwl.labels == iwl.classes % base.L)
    with pytest.raises(ValueError, match="label_map = 'sometimes'"):
        dataclasses.replace(base, label_map="sometimes")
