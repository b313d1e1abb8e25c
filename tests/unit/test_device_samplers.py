"""The on-device samplers (toy_models/device_samplers.py): the JAX twins of the Numba samplers.

They draw from the same laws with other random streams, so they are checked by the tests the Numba samplers pass
(``tests/unit/test_samplers.py``, whose checkers are reused here), and against the Numba samplers themselves where a law
has no closed form:
* the alias table implies exactly the distribution it was built from (to float32 rounding);
* structure: every exact invariant of bursty, novel, swap, iwl and per-sequence-label sequences, and of token
  streams (hypothesis-drawn tasks and seeds);
* laws: chi-square goodness of fit of i.i.d. classes, iwl contexts and token backgrounds; the bursty and novel
  fractions; the item noise variance; and two-sample chi-square tests against the Numba samplers for the laws of
  successive sampling (a bursty context's classes, a stream's triggers) and of the induction positions;
* in training: a resumed run with ``sampler="device"`` equals an uninterrupted one, also split over two devices
  (to float tolerance), and the engine's batch of a step is the sampler's draw from that step's key.

Thresholds: statistical tests use fixed keys and seeds, so they are deterministic; each is set so that a correct
sampler would fail for a random key with probability below about 1e-6 (chi-square, as in test_samplers) or 6e-7
(5 standard errors).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats

from tests._devices import run_on_two_host_devices
from tests.unit.test_samplers import CHI2_P, N_SE, assert_chi2_fits, check_sequences, classification_tasks
from zipfhead.theory.distributions import ClassificationTask, TokenStreamTask, Zipf
from zipfhead.theory.samplers import EVAL_KINDS, ClassificationBatch, class_means, sample_classes, sample_token_streams
from zipfhead.toy_models import device_samplers as ds

# Fixed static shapes, so that every test reuses one compilation per kind (each costs seconds): N = 8 context
# pairs, L = 12 labels, D = 3 dimensions, class tables padded to at least K_PAD, batches of BATCH sequences (larger
# samples are several batches), token streams of length T_TOKENS with N_SLOTS trigger slots.
N, L, D, K_PAD, BATCH = 8, 12, 3, 50, 4096
T_TOKENS, N_SLOTS = 64, 3


@functools.cache
def _classification_fn(kind: str):
    return jax.jit(lambda key, prm: ds.sample_classification(key, prm, N=N, L=L, batch=BATCH, kind=kind))


def _batches(fn, prm, n: int, seed: int) -> dict[str, np.ndarray]:
    """``n`` sequences: batches drawn with keys fold_in(PRNGKey(seed), i), concatenated and cut to n."""
    key = jax.random.PRNGKey(seed)
    parts = [jax.device_get(fn(jax.random.fold_in(key, i), prm)) for i in range(-(-n // BATCH))]
    return {k: np.concatenate([p[k] for p in parts])[:n] for k in parts[0]}


def device_batch(task: ClassificationTask, n: int, seed: int, kind: str = "train", means=None) -> ClassificationBatch:
    """``n`` sequences from the device sampler, as a numpy :class:`ClassificationBatch`."""
    means = class_means(task, 1) if means is None else means
    prm = ds.classification_params(task, means, max(task.K, K_PAD))
    out = _batches(_classification_fn(kind), prm, n, seed)
    return ClassificationBatch(out["items"], out["labels"], out["classes"], out["bursty"], out["novel"])


_token_fn = jax.jit(lambda key, prm: ds.sample_token_streams(key, prm, T=T_TOKENS, batch=BATCH))


def device_tokens(task: TokenStreamTask, n: int, seed: int) -> dict[str, np.ndarray]:
    """``n`` streams (task.T must be T_TOKENS), triggers padded to N_SLOTS slots."""
    assert task.T == T_TOKENS
    return _batches(_token_fn, ds.token_params(task, N_SLOTS), n, seed)


def two_sample_chi2_p(a: np.ndarray, b: np.ndarray) -> float:
    """p-value of the chi-square test that two count vectors come from one law (bins pooled in order until each
    expects at least 5 in both rows)."""
    pooled, acc = [], np.zeros(2)
    total = np.array([a.sum(), b.sum()], dtype=np.float64)
    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        acc += (x, y)
        if (acc.sum() * total / total.sum()).min() >= 5:
            pooled.append(acc.copy())
            acc[:] = 0
    if acc.sum():
        pooled[-1] += acc
    return float(stats.chi2_contingency(np.array(pooled).T)[1])


# --------------------------------------------------------------------------------------------------------------
# The alias table
# --------------------------------------------------------------------------------------------------------------


@settings(max_examples=60)
@given(K=st.integers(1, 400), alpha=st.floats(0.0, 3.0), q=st.floats(0.0, 5.0), pad=st.integers(0, 7))
def test_alias_table_implies_its_distribution(K, alpha, q, pad):
    """P(k) = (accept[k] + sum_{alias[j] = k} (1 - accept[j])) / K equals the Zipf probabilities. Tolerance: each
    float32 accept value is rounded by at most 2^-24 (values in [0, 1]), and class k's probability sums 1 + (the
    number of entries aliased to it) of them, each divided by K; 1e-15 covers the float64 construction (K <= 400
    subtractions of values <= K, each rounded by 2^-53 relative)."""
    p = Zipf(K, alpha, q).probs()
    accept, alias = ds.alias_table(p, K + pad)
    a = accept[:K].astype(np.float64)
    implied = (a + np.bincount(alias[:K], weights=1.0 - a, minlength=K + pad)[:K]) / K
    n_aliased = np.bincount(alias[:K], minlength=K + pad)[:K]
    assert np.all(np.abs(implied - p) <= 2.0**-24 * (1 + n_aliased) / K + 1e-15)
    assert np.all(alias[:K] < K)  # a draw below K never lands on padding


def test_alias_table_refuses_bad_input():
    with pytest.raises(ValueError, match="sums to"):
        ds.alias_table(np.array([0.5, 0.6]))
    with pytest.raises(ValueError, match="size = 1"):
        ds.alias_table(np.array([0.5, 0.5]), 1)
    with pytest.raises(ValueError, match="kind = 'foo'"):
        ds.sample_classification(jax.random.PRNGKey(0), {}, N=N, L=L, batch=2, kind="foo")


# --------------------------------------------------------------------------------------------------------------
# Structure (exact invariants, the checker of test_samplers)
# --------------------------------------------------------------------------------------------------------------


#: valid tasks with the module's fixed N, L, D (so one compilation per kind serves every example)
device_tasks = functools.partial(classification_tasks, max_K=K_PAD, N=N, D=D, L=L)


@settings(max_examples=12)  # each example checks 100 sequences of every rule; the compilation per kind dominates
@given(task=device_tasks(), kind=st.sampled_from(EVAL_KINDS), seed=st.integers(0, 2**31 - 1), force=st.booleans())
def test_sequence_structure(task, kind, seed, force):
    """Every device-drawn sequence obeys the burst, label, novelty and iwl rules of the Numba samplers' checker."""
    support = int(np.count_nonzero(task.zipf.probs() > 0))
    assume(task.classes_per_burst <= support)
    if force:
        task = dataclasses.replace(task, p_B=1.0)
    batch = device_batch(task, 100, seed, kind)
    check_sequences(task, batch, kind)
    if force and kind == "train":
        assert batch.bursty.all()


@settings(max_examples=25)
@given(
    alpha=st.floats(0.0, 3.0),
    n=st.integers(0, 3),
    dists=st.tuples(st.sampled_from(["zipf", "uniform"]), st.sampled_from(["zipf", "uniform"])),
    seed=st.integers(0, 2**31 - 1),
)
def test_token_stream_structure(alpha, n, dists, seed):
    """Triggers distinct, outputs never triggers, every trigger occurrence followed by its output, and the
    induction mask recomputed from the tokens (the Numba samplers' rules); triggers padded to 3 slots with -1."""
    V = 16
    task = TokenStreamTask(V=V, T=T_TOKENS, alpha=alpha, n_triggers=n, trigger_dist=dists[0], output_dist=dists[1])
    assume(n <= int(np.count_nonzero(task.zipf.probs() > 0)) - 1)
    out = device_tokens(task, 40, seed)
    assert out["tokens"].min() >= 0 and out["tokens"].max() < V
    rows = (out[k].tolist() for k in ("tokens", "triggers", "outputs", "induction"))
    for tokens, triggers, outputs, induction in zip(*rows, strict=True):
        assert triggers[n:] == outputs[n:] == [-1] * (N_SLOTS - n)
        triggers, outputs = triggers[:n], outputs[:n]
        assert len(set(triggers)) == n and not set(outputs) & set(triggers)
        output_of = dict(zip(triggers, outputs, strict=True))
        for t in range(task.T - 1):
            if tokens[t] in output_of:
                assert tokens[t + 1] == output_of[tokens[t]]
        expected = [t >= 1 and tokens[t - 1] in output_of and tokens[t - 1] in tokens[: t - 1] for t in range(task.T)]
        assert induction == expected


# --------------------------------------------------------------------------------------------------------------
# Laws: goodness of fit (the Numba samplers' tests) and two-sample tests against the Numba samplers
# --------------------------------------------------------------------------------------------------------------


def test_iid_classes_follow_zipf():
    """p_B = p_C = 0: all N+1 classes of a sequence i.i.d. Zipf (K = 300 padded to 400): chi-square, 4.5 * 10^5
    draws."""
    task = ClassificationTask(K=300, N=N, D=D, L=L, B=2, p_B=0.0, p_C=0.0, alpha=1.1, q=2.0)
    prm = ds.classification_params(task, class_means(task, 1), 400)
    out = _batches(_classification_fn("train"), prm, 50_000, 2024)
    assert not out["bursty"].any() and not out["novel"].any()
    assert_chi2_fits(np.bincount(out["classes"].ravel(), minlength=task.K), task.zipf.probs())


def test_iwl_contexts_follow_zipf_without_the_query_class():
    """iwl: the query is Zipf; a context class is Zipf conditioned on differing from the query, whose marginal is
    p_c (S - p_c / (1 - p_c)) with S = sum_k p_k / (1 - p_k) (as for the Numba sampler)."""
    task = ClassificationTask(K=40, N=N, D=D, L=L, B=2, alpha=1.5)
    batch = device_batch(task, 60_000, 77, "iwl")
    p = task.zipf.probs()
    assert_chi2_fits(np.bincount(batch.classes[:, -1], minlength=task.K), p)
    w = p / (1.0 - p)
    assert_chi2_fits(np.bincount(batch.classes[:, :-1].ravel(), minlength=task.K), p * (w.sum() - w))


def test_bursty_and_novel_fractions_match_p_B_and_p_C():
    """P(novel) = p_C, P(bursty) = p_C + (1 - p_C) p_B: each within 5 binomial standard errors of 10^5 sequences."""
    p_B, p_C, S = 0.3, 0.2, 100_000
    task = ClassificationTask(K=50, N=N, D=D, L=L, B=2, p_B=p_B, p_C=p_C)
    batch = device_batch(task, S, 11)
    for observed, p in ((batch.novel.mean(), p_C), (batch.bursty.mean(), p_C + (1 - p_C) * p_B)):
        assert abs(observed - p) < N_SE * math.sqrt(p * (1 - p) / S), (observed, p)


@pytest.mark.parametrize("B", [1, 2, 4])
def test_bursty_classes_match_the_numba_sampler(B):
    """A bursty context's N/B classes are successive draws without replacement: a law with no simple closed form,
    so the device sampler's class counts (context and query) are compared with the Numba sampler's by a two-sample
    chi-square test (p > CHI2_P), at alpha 1 where repeats are often rejected."""
    task = ClassificationTask(K=30, N=N, D=D, L=L, B=B, p_B=1.0, p_C=0.0, alpha=1.0)
    dev = device_batch(task, 40_000, 5)
    host = sample_classes(task, 40_000, 6)
    for cols, copies in ((slice(0, N), B), (slice(N, N + 1), 1)):  # a context class fills B slots: count it once
        a = np.bincount(dev.classes[:, cols].ravel(), minlength=task.K) // copies
        b = np.bincount(host.classes[:, cols].ravel(), minlength=task.K) // copies
        assert two_sample_chi2_p(a, b) > CHI2_P


def test_item_noise_variance():
    """item - mean x scale = eps eta scale: its mean square within 5 SE of eps^2 / (D (1 + eps^2)); an icl item
    (fresh mean) has coordinates of variance 1 / D, also within 5 SE."""
    eps = 0.7
    task = ClassificationTask(K=300, N=N, D=D, L=L, B=2, p_B=0.0, eps=eps)
    means = class_means(task, 17)
    batch = device_batch(task, 20_000, 18, means=means)
    scale = 1.0 / math.sqrt(1.0 + eps * eps)
    noise = batch.items.astype(np.float64) - means[batch.classes].astype(np.float64) * scale
    var = eps * eps * scale * scale / D
    assert abs(np.mean(noise**2) - var) < N_SE * var * math.sqrt(2.0 / noise.size)
    x = device_batch(task, 20_000, 19, "icl").items[:, -1].astype(np.float64).ravel()
    assert abs(np.mean(x**2) - 1.0 / D) < N_SE * (1.0 / D) * math.sqrt(2.0 / x.size)


def test_token_background_follows_zipf():
    """No triggers: every token i.i.d. Zipf(V, alpha, q): chi-square over 2.5 * 10^5 tokens."""
    task = TokenStreamTask(V=200, T=T_TOKENS, alpha=1.3, q=0.5, n_triggers=0)
    out = device_tokens(task, 4000, 31337)
    assert not out["induction"].any()
    assert_chi2_fits(np.bincount(out["tokens"].ravel(), minlength=task.V), task.zipf.probs())


def test_token_triggers_outputs_and_induction_match_the_numba_sampler():
    """Two triggers (successive Zipf draws) and their outputs (uniform over the non-triggers): their counts, and the
    number of induction positions per stream, match the Numba sampler's by two-sample chi-square (p > CHI2_P)."""
    task = TokenStreamTask(V=16, T=T_TOKENS, alpha=1.25, n_triggers=2)
    dev = device_tokens(task, 20_000, 3)
    host = sample_token_streams(task, 20_000, 4)
    for name, d, h in (
        ("triggers", dev["triggers"][:, :2], host.triggers),  # the device rows carry a third, empty slot (-1)
        ("outputs", dev["outputs"][:, :2], host.outputs),
        ("induction", dev["induction"].sum(1), host.induction.sum(1)),
    ):
        size = task.T if name == "induction" else task.V
        p = two_sample_chi2_p(np.bincount(d.ravel(), minlength=size), np.bincount(h.ravel(), minlength=size))
        assert p > CHI2_P, name


# --------------------------------------------------------------------------------------------------------------
# In training
# --------------------------------------------------------------------------------------------------------------


def device_run():
    """Two cells that differ in K and B (one compiled chunk, class tables padded to the larger K) x 2 seeds, 16
    steps, batches drawn on the device."""
    from zipfhead.toy_models.model import ModelConfig
    from zipfhead.toy_models.train import RunConfig, TrainConfig, data_stream

    task = ClassificationTask(K=64, N=N, D=D, L=L, B=2, p_B=0.8, p_C=0.1, eps=0.1, alpha=0.5)
    s = data_stream(task, 0)
    model = ModelConfig(n_ctx=s.n_ctx, d_vocab=s.d_vocab, d_vocab_out=s.d_vocab_out, d_model=32)
    tcfg = TrainConfig(steps=16, eval_every=4, dense_factor=2, eval_size=16, batch_size=8, sampler="device")
    return RunConfig(
        task=task, model=model, train=tcfg, seeds=(0, 1), tasks=(task, dataclasses.replace(task, K=32, B=4))
    )


TWO_DEVICE_SCRIPT = """
import json
from tests.unit.test_device_samplers import device_run
from zipfhead.toy_models.train import train
res = train(device_run(), progress=False)
n_shards = len(res.state["params"]["embed"]["W_E"].sharding.device_set)
print(json.dumps({"train_loss": res.train_loss.tolist(), "n_shards": n_shards}))
"""


def test_device_sampled_training_resumes_exactly_and_shards(tmp_path):
    """sampler = "device": a run stopped after 8 of 16 steps and resumed gives exactly the uninterrupted run's losses
    and curves (each step's batch is a function of (seed, step)). Split over two host devices (shard_map, as
    ``zipfhead`` runs on a 2-core CPU or several GPUs) it gives the same losses to float tolerance: 1e-4, as for
    the engine's other executions (tests/unit/test_train.py: different batched kernels, grown over the Adam steps)."""
    from zipfhead.toy_models.train import train

    run = device_run()
    whole = train(run, progress=False)
    assert np.all(np.isfinite(whole.train_loss)) and not whole.diverged.any()
    train(run, tmp_path, progress=False, stop_after=8)
    resumed = train(run, tmp_path, progress=False)  # a new process would rebuild the same keys from the seeds
    np.testing.assert_array_equal(resumed.train_loss, whole.train_loss)
    for k, v in whole.curves.items():
        np.testing.assert_array_equal(resumed.curves[k], v, err_msg=k)
    sharded = run_on_two_host_devices(TWO_DEVICE_SCRIPT)
    assert sharded["n_shards"] == 2
    np.testing.assert_allclose(sharded["train_loss"], whole.train_loss, atol=1e-4)


def test_a_token_run_draws_each_step_from_its_seed_and_step():
    """The engine's token batch of step s for a model is the device sampler's draw from fold_in(PRNGKey(
    derive_seed(seed, "train")), s) with that model's task, triggers padded to the run's largest count."""
    from zipfhead.toy_models.model import ModelConfig
    from zipfhead.toy_models.tasks import derive_seed
    from zipfhead.toy_models.train import RunConfig, TrainConfig, _device_batch_fn, device_sampler_consts

    task = TokenStreamTask(V=16, T=T_TOKENS, alpha=1.5, n_triggers=1)
    tasks = (task, dataclasses.replace(task, n_triggers=N_SLOTS))
    model = ModelConfig(n_ctx=T_TOKENS - 1, d_vocab=16, d_vocab_out=16, d_model=16)
    run = RunConfig(
        task=task, model=model, train=TrainConfig(batch_size=BATCH, sampler="device"), seeds=(7,), tasks=tasks
    )
    consts = device_sampler_consts(run, [None, None])
    sample = jax.jit(_device_batch_fn(run))
    for m, t in enumerate(tasks):
        got = sample(5, jax.tree_util.tree_map(lambda x, m=m: x[m], consts))
        key = jax.random.fold_in(jax.random.PRNGKey(derive_seed(7, "train")), 5)
        want = _token_fn(key, ds.token_params(t, N_SLOTS))["tokens"]
        np.testing.assert_array_equal(got["tokens"], want)


def test_device_sampler_refused_for_markov():
    from zipfhead.theory.distributions import MarkovTask
    from zipfhead.toy_models.model import ModelConfig
    from zipfhead.toy_models.train import RunConfig, TrainConfig

    with pytest.raises(ValueError, match="sampler = 'device'"):
        RunConfig(
            task=MarkovTask(k=4, T=16),
            model=ModelConfig(n_ctx=15, d_vocab=4, d_vocab_out=4, d_model=16),
            train=TrainConfig(sampler="device"),
        )
    with pytest.raises(ValueError, match="sampler = 'gpu'"):
        TrainConfig(sampler="gpu")
