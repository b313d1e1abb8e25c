"""The mechanistic measures: known answers on hand-built patterns, plain-Python twins, a hand-built induction head.

Tolerances: the attention measures run in float32 (JAX's default), so comparisons with float64 twins use an absolute
1e-5 (a sum of at most a few dozen float32 terms of size <= 1, each rounded at ~6e-8 relative). Relabelling tests
compare exactly: the masks are identical, so the float operations are too.
"""

from __future__ import annotations

import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from zipfhead.toy_models.measures import (
    Transition,
    accuracy,
    copying_score,
    cross_entropy,
    icl_score,
    induction_mask,
    item_to_label_previous_score,
    loss_bumps,
    loss_by_position,
    prefix_matching_score,
    previous_token_score,
    query_self_score,
    query_to_matching_label_score,
    transition_step,
)
from zipfhead.toy_models.model import ModelConfig, forward

ATOL32 = 1e-5

# The property tests call jitted measures: one compilation per shape instead of one per operation and shape (eager
# and jitted values agree: test_measures_run_under_jit_and_vmap).
jit_induction_mask = jax.jit(induction_mask)
jit_prefix_matching = jax.jit(prefix_matching_score)
jit_query_to_label = jax.jit(query_to_matching_label_score)
jit_loss_by_position = jax.jit(loss_by_position)
jit_cross_entropy = jax.jit(cross_entropy)
jit_forward = jax.jit(forward, static_argnums=1, static_argnames="cache")


# ----------------------------------------------------------------------------------------------------------------
# builders and plain-Python twins


def uniform_causal(T: int, lead: tuple[int, ...] = ()) -> np.ndarray:
    """pattern[..., t, s] = 1 / (t + 1) for s <= t: every query spreads its attention evenly over the past."""
    p = np.tril(np.ones((T, T))) / np.arange(1, T + 1)[:, None]
    return np.broadcast_to(p, (*lead, T, T)).copy()


def random_causal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Random row-stochastic lower-triangular patterns of shape (..., T, T), float64."""
    T = shape[-1]
    w = rng.exponential(size=shape) * np.tril(np.ones((T, T)))
    return w / w.sum(-1, keepdims=True)


def naive_induction_mask(tokens: list[list[int]]) -> list[list[list[bool]]]:
    """The TransformerLens convention spelled out: key s follows an earlier copy (at s - 1 < t) of token t."""
    out = []
    for seq in tokens:
        T = len(seq)
        out.append([[1 <= s <= t and s - 1 < t and seq[s - 1] == seq[t] for s in range(T)] for t in range(T)])
    return out


def naive_prefix_matching(pattern: np.ndarray, tokens: list[list[int]]) -> list[float]:
    """Per head: mean over (b, t) rows with a match of (mass on matching keys) / (row mass); 0 with no such row."""
    B, H, T, _ = pattern.shape
    mask = naive_induction_mask(tokens)
    scores = []
    for h in range(H):
        total, rows = 0.0, 0
        for b in range(B):
            for t in range(T):
                keys = [s for s in range(T) if mask[b][t][s]]
                if keys:
                    total += sum(pattern[b, h, t, s] for s in keys) / sum(pattern[b, h, t, :])
                    rows += 1
        scores.append(total / rows if rows else 0.0)
    return scores


# Shapes come from a few sizes (edge cases included): every new shape costs JAX a compilation per operation.
token_arrays = st.tuples(st.sampled_from([1, 3]), st.sampled_from([1, 2, 7, 12]), st.integers(1, 5)).flatmap(
    lambda BTV: hnp.arrays(np.int32, BTV[:2], elements=st.integers(0, BTV[2] - 1))
)


# ----------------------------------------------------------------------------------------------------------------
# previous-token score


def test_previous_token_score_is_one_on_an_exact_previous_token_pattern():
    """A pattern with all of row t on key t - 1 (row 0 on itself) scores exactly 1 on every head, with batch dims."""
    T, H = 9, 3
    p = np.zeros((2, 4, H, T, T))
    p[..., 0, 0] = 1.0
    p[..., np.arange(1, T), np.arange(T - 1)] = 1.0
    np.testing.assert_array_equal(np.asarray(previous_token_score(p)), np.ones(H))


def test_previous_token_score_of_the_uniform_causal_pattern():
    """Uniform causal attention: row t gives 1 / (t + 1) to t - 1, so the score is mean_{t=1..T-1} 1/(t+1); with a
    query mask on odd positions only, the mean runs over odd t. Exact fractions computed here; float32: 1e-6."""
    T = 11
    p = uniform_causal(T, (3, 2))
    want = float(sum(Fraction(1, t + 1) for t in range(1, T)) / (T - 1))
    np.testing.assert_allclose(np.asarray(previous_token_score(p)), [want, want], atol=1e-6)
    odd = np.arange(T) % 2 == 1
    want_odd = float(sum(Fraction(1, t + 1) for t in range(1, T, 2)) / len(range(1, T, 2)))
    mask = np.broadcast_to(odd, (3, T))
    np.testing.assert_allclose(np.asarray(previous_token_score(p, mask)), [want_odd] * 2, atol=1e-6)
    # a mask selecting no position t >= 1 gives 0, not NaN
    only0 = np.zeros((3, T), dtype=bool)
    only0[:, 0] = True
    np.testing.assert_array_equal(np.asarray(previous_token_score(p, only0)), [0.0, 0.0])


# ----------------------------------------------------------------------------------------------------------------
# induction mask and prefix matching


@given(token_arrays)
def test_induction_mask_matches_the_loop_twin(tokens):
    """induction_mask equals the plain-Python loop on small-vocabulary token arrays (many repeats)."""
    got = np.asarray(jit_induction_mask(jnp.asarray(tokens)))
    np.testing.assert_array_equal(got, np.array(naive_induction_mask(tokens.tolist()), dtype=bool).reshape(got.shape))


@given(token_arrays, st.sampled_from([1, 3]), st.integers(0, 2**32 - 1))
def test_prefix_matching_score_matches_the_loop_twin(tokens, H, seed):
    """prefix_matching_score equals the loop twin on random row-stochastic causal patterns (float32 vs float64)."""
    B, T = tokens.shape
    p = random_causal(np.random.default_rng(seed), (B, H, T, T))
    got = np.asarray(jit_prefix_matching(jnp.asarray(p, jnp.float32), jnp.asarray(tokens)))
    np.testing.assert_allclose(got, naive_prefix_matching(p, tokens.tolist()), atol=ATOL32)


def test_prefix_matching_on_repeated_random_tokens_is_attention_to_t_minus_R_plus_1():
    """Olsson's repeated random tokens with distinct tokens per half: the only matches are (t, t - R + 1), t >= R;
    a head that puts all of each second-half row there scores 1, a previous-token head scores 0."""
    rng = np.random.default_rng(0)
    R, B = 6, 3
    first = np.stack([rng.permutation(10)[:R] for _ in range(B)])
    tokens = np.concatenate([first, first], axis=1)
    T = 2 * R
    mask = np.asarray(induction_mask(tokens))
    expected = np.zeros((T, T), dtype=bool)
    expected[np.arange(R, T), np.arange(R, T) - R + 1] = True
    np.testing.assert_array_equal(mask, np.broadcast_to(expected, (B, T, T)))
    induction = uniform_causal(T, (B, 1))
    induction[..., R:, :] = expected[R:].astype(float)
    prev = np.zeros((B, 1, T, T))
    prev[..., 0, 0] = 1.0
    prev[..., np.arange(1, T), np.arange(T - 1)] = 1.0
    np.testing.assert_array_equal(np.asarray(prefix_matching_score(induction, tokens)), [1.0])
    np.testing.assert_array_equal(np.asarray(prefix_matching_score(prev, tokens)), [0.0])
    # distinct tokens throughout: no row matches, the score is 0 rather than NaN
    distinct = np.arange(T)[None]
    np.testing.assert_array_equal(np.asarray(prefix_matching_score(uniform_causal(T, (1, 2)), distinct)), [0, 0])


@given(token_arrays, st.integers(0, 2**32 - 1))
def test_prefix_matching_is_invariant_under_relabelling_tokens(tokens, seed):
    """Permuting token ids consistently changes no equality between tokens, so the score is exactly unchanged."""
    rng = np.random.default_rng(seed)
    B, T = tokens.shape
    p = jnp.asarray(random_causal(rng, (B, 2, T, T)), jnp.float32)
    perm = rng.permutation(5)
    a = np.asarray(jit_prefix_matching(p, tokens))
    b = np.asarray(jit_prefix_matching(p, perm[tokens]))
    np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------------------------------------------
# copying score


def test_copying_score_known_circuits():
    """OV circuit +I copies (score 1), -I anti-copies (-1), a 90-degree rotation (eigenvalues +-i) scores 0, and a
    circuit that writes nowhere W_U reads scores 0 by convention. Float64 eigvals: 1e-12."""
    V = 4
    eye = np.eye(V)
    rot = np.array([[0.0, -1.0], [1.0, 0.0]])
    W_O = np.stack([eye, -eye, np.kron(np.eye(2), rot), np.zeros((V, V))])
    W_V = np.stack([eye] * 4)
    got = copying_score(eye, W_V, W_O, 3.0 * eye)
    np.testing.assert_allclose(got, [1.0, -1.0, 0.0, 0.0], atol=1e-12)


@given(st.integers(0, 2**32 - 1), st.integers(1, 3), st.integers(1, 6))
def test_copying_score_small_matrix_equals_the_full_V_by_V_eigenvalues(seed, H, d_head):
    """The score from the (d_head, d_head) matrix B @ A equals sum(lambda)/sum(|lambda|) of the full (V, V) OV
    circuit (its extra eigenvalues are zero). Float64; the full matrix's zero eigenvalues come out at ~1e-15: 1e-9."""
    rng = np.random.default_rng(seed)
    V, M = 9, 7
    W_E, W_U = rng.normal(size=(V, M)), rng.normal(size=(M, V))
    W_V, W_O = rng.normal(size=(H, M, d_head)), rng.normal(size=(H, d_head, M))
    want = []
    for h in range(H):
        lam = np.linalg.eigvals(W_E @ W_V[h] @ W_O[h] @ W_U)
        want.append(lam.sum().real / np.abs(lam).sum())
    np.testing.assert_allclose(copying_score(W_E, W_V, W_O, W_U), want, atol=1e-9)


# ----------------------------------------------------------------------------------------------------------------
# losses


@given(st.integers(0, 2**32 - 1), st.sampled_from([1, 4]), st.sampled_from([1, 8]), st.sampled_from([2, 7]))
def test_loss_by_position_matches_a_numpy_twin(seed, B, T, V):
    """Per-position cross-entropy equals a float64 log-sum-exp twin (float32 logits of size ~3: 1e-5 relative)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=(B, T, V)).astype(np.float32)
    targets = rng.integers(0, V, size=(B, T))
    x = logits.astype(np.float64)
    lse = np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1)) + x.max(-1)
    want = (lse - np.take_along_axis(x, targets[..., None], -1)[..., 0]).mean(0)
    np.testing.assert_allclose(np.asarray(jit_loss_by_position(logits, targets)), want, rtol=1e-5, atol=1e-6)
    assert math.isclose(float(jit_cross_entropy(logits[:, 0], targets[:, 0])), want[0], rel_tol=1e-5, abs_tol=1e-6)


def test_loss_accuracy_and_icl_score_known_values():
    """Uniform logits cost log V nats everywhere; accuracy counts argmax hits; the ICL score is late minus early."""
    V = 5
    np.testing.assert_allclose(np.asarray(loss_by_position(np.zeros((2, 3, V)), np.zeros((2, 3), int))), np.log(V))
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert float(accuracy(logits, np.array([0, 2]))) == 0.5
    want = (-math.log(math.exp(2) / (math.exp(2) + 2)) - math.log(1 / (math.e + 2))) / 2
    assert math.isclose(float(cross_entropy(logits, np.array([0, 2]))), want, rel_tol=1e-6)
    assert float(icl_score(jnp.array([3.0, 2.5, 1.0]), early=0, late=2)) == -2.0


# ----------------------------------------------------------------------------------------------------------------
# in-context classification (Reddy 2024)


def test_item_to_label_previous_score_known_answers():
    """Labels attending fully to their item score 1; uniform causal attention gives mean_i 1/(2i + 2) (exact
    fractions here, float32: 1e-6)."""
    N, B, H = 5, 2, 3
    T = 2 * N + 1
    p = uniform_causal(T, (B, H))
    want = float(sum(Fraction(1, 2 * i + 2) for i in range(N)) / N)
    np.testing.assert_allclose(np.asarray(item_to_label_previous_score(p)), [want] * H, atol=1e-6)
    p[..., np.arange(1, T, 2), :] = 0.0
    p[..., np.arange(1, T, 2), np.arange(0, T - 1, 2)] = 1.0
    np.testing.assert_array_equal(np.asarray(item_to_label_previous_score(p)), np.ones(H))


def test_query_to_matching_label_score_known_answers():
    """A query row all on one matching label scores 1; all on that label's item scores 0; uniform causal rows score
    (#matches)/(2N + 1) averaged over the sequences with a match; sequences without one are left out."""
    N = 4
    T = 2 * N + 1
    classes = np.array([[3, 1, 3, 2, 3], [0, 1, 2, 0, 5], [7, 7, 1, 7, 7]])  # matches: 2, none, 3
    on_label = np.zeros((3, 1, T, T))
    on_label[0, 0, 2 * N, 2 * 0 + 1] = 1.0
    on_label[1, 0, 2 * N, 1] = 1.0  # no match in this sequence: must not count
    on_label[2, 0, 2 * N, 2 * 3 + 1] = 1.0
    on_item = np.zeros((3, 1, T, T))
    on_item[:, 0, 2 * N, 0] = 1.0
    p = np.concatenate([on_label, on_item], axis=1)
    np.testing.assert_array_equal(np.asarray(query_to_matching_label_score(p, classes)), [1.0, 0.0])
    want = (2 / T + 3 / T) / 2
    got = np.asarray(query_to_matching_label_score(uniform_causal(T, (3, 1)), classes))
    np.testing.assert_allclose(got, [want], atol=1e-6)
    np.testing.assert_array_equal(np.asarray(query_to_matching_label_score(p[1:2], classes[1:2])), [0.0, 0.0])


@given(st.integers(1, 4), st.integers(1, 3), st.integers(1, 9), st.integers(0, 2**32 - 1))
def test_query_self_score_matches_a_loop_twin(B, H, T, seed):
    """The mean of each head's last diagonal entry, against a plain loop over sequences (1e-6: float32 sums)."""
    p = random_causal(np.random.default_rng(seed), (B, H, T, T))
    twin = [sum(float(p[b, h, T - 1, T - 1]) for b in range(B)) / B for h in range(H)]
    np.testing.assert_allclose(np.asarray(query_self_score(jnp.asarray(p, jnp.float32))), twin, atol=1e-6)


def test_query_self_score_known_answers():
    """1 on a query row all on itself, 0 all on a label, 1 / T on the uniform causal row."""
    T = 9
    on_self = np.zeros((2, 1, T, T))
    on_self[:, 0, -1, -1] = 1.0
    on_label = np.zeros((2, 1, T, T))
    on_label[:, 0, -1, 1] = 1.0
    np.testing.assert_array_equal(np.asarray(query_self_score(np.concatenate([on_self, on_label], 1))), [1.0, 0.0])
    np.testing.assert_allclose(np.asarray(query_self_score(uniform_causal(T, (3, 1)))), [1 / T], atol=1e-7)


@given(st.sampled_from([1, 4]), st.sampled_from([1, 6]), st.integers(2, 6), st.integers(0, 2**32 - 1))
def test_query_to_matching_label_score_is_invariant_under_relabelling_classes(B, N, K, seed):
    """Permuting class ids consistently keeps every equality between classes, so the score is exactly unchanged."""
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, K, size=(B, N + 1))
    p = jnp.asarray(random_causal(rng, (B, 2, 2 * N + 1, 2 * N + 1)), jnp.float32)
    perm = rng.permutation(K)
    a = np.asarray(jit_query_to_label(p, classes))
    b = np.asarray(jit_query_to_label(p, perm[classes]))
    np.testing.assert_array_equal(a, b)


def test_measures_run_under_jit_and_vmap():
    """The jax.numpy measures trace: jit gives the eager values (1e-6), vmap over layers gives one row per layer."""
    rng = np.random.default_rng(1)
    N, B = 3, 4
    T = 2 * N + 1
    pattern = jnp.asarray(random_causal(rng, (2, B, 2, T, T)), jnp.float32)  # (L, B, H, T, T)
    tokens = jnp.asarray(rng.integers(0, 3, size=(B, T)))
    classes = jnp.asarray(rng.integers(0, 3, size=(B, N + 1)))
    for f, args in [
        (previous_token_score, (pattern,)),
        (prefix_matching_score, (pattern[0], tokens)),
        (item_to_label_previous_score, (pattern[1],)),
        (query_to_matching_label_score, (pattern[1], classes)),
        (query_self_score, (pattern[1],)),
    ]:
        np.testing.assert_allclose(np.asarray(jax.jit(f)(*args)), np.asarray(f(*args)), atol=1e-6)
    per_layer = jax.vmap(prefix_matching_score, in_axes=(0, None))(pattern, tokens)
    np.testing.assert_allclose(np.asarray(per_layer[1]), np.asarray(prefix_matching_score(pattern[1], tokens)), 1e-6)


# ----------------------------------------------------------------------------------------------------------------
# a hand-built two-layer induction head


def hand_built_induction_model(V: int, T: int, scale: float = 30.0, gain: float = 10.0):
    """Residual = [token one-hot (V) | position one-hot (T) | previous-token copy (V)].

    Layer 0: previous-token head. Query reads position t into head dim t, key reads position s into head dim s + 1,
    so only s = t - 1 scores ``scale`` (after the 1/sqrt(d_head)); OV writes the attended token into the
    previous-token subspace. Layer 1: induction head. Query reads the current token, key reads the previous-token
    subspace, so keys whose previous token equals the current token score ``scale``; a constant query component
    (b_Q) against a key read of position 0 removes key 0, whose "previous token" is its own token (layer 0's row 0
    can only attend to itself). OV copies the attended token into the token subspace with ``gain``, and W_U reads
    the token subspace, so the copied token beats the current one (logit 1).
    """
    TOK, POS, PREV = 0, V, V + T
    M, E = 2 * V + T, max(T, V + 1)
    cfg = ModelConfig(n_ctx=T, d_vocab=V, d_vocab_out=V, n_layers=2, n_heads=1, d_model=M, d_head=E, layer_norm=False)
    c = scale * math.sqrt(E)
    z = np.zeros
    v, t = np.arange(V), np.arange(T)
    W_E = z((V, M))
    W_E[v, TOK + v] = 1.0
    W_pos = z((T, M))
    W_pos[t, POS + t] = 1.0
    blocks = []
    Q0, K0, V0, O0 = z((1, M, E)), z((1, M, E)), z((1, M, E)), z((1, E, M))
    Q0[0, POS + t, t] = c
    K0[0, POS + t[:-1], t[:-1] + 1] = 1.0
    V0[0, TOK + v, v] = 1.0
    O0[0, v, PREV + v] = 1.0
    Q1, K1, V1, O1, bQ1 = z((1, M, E)), z((1, M, E)), z((1, M, E)), z((1, E, M)), z((1, E))
    Q1[0, TOK + v, v] = c
    K1[0, PREV + v, v] = 1.0
    bQ1[0, V] = 1.0
    K1[0, POS + 0, V] = -2.0 * c
    V1[0, TOK + v, v] = 1.0
    O1[0, v, TOK + v] = gain
    for Q, K, Vv, O, bQ in [(Q0, K0, V0, O0, z((1, E))), (Q1, K1, V1, O1, bQ1)]:
        attn = {"W_Q": Q, "W_K": K, "W_V": Vv, "W_O": O, "b_Q": bQ, "b_K": z((1, E)), "b_V": z((1, E)), "b_O": z(M)}
        blocks.append({"attn": {k: jnp.asarray(a, jnp.float32) for k, a in attn.items()}})
    W_U = z((M, V))
    W_U[TOK + v, v] = 1.0
    params = {
        "embed": {"W_E": jnp.asarray(W_E, jnp.float32)},
        "pos_embed": {"W_pos": jnp.asarray(W_pos, jnp.float32)},
        "blocks": blocks,
        "unembed": {"W_U": jnp.asarray(W_U, jnp.float32), "b_U": jnp.zeros(V)},
    }
    return cfg, params


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hand_built_induction_head_is_detected_and_copies(seed):
    """On repeated random tokens (R = 16 distinct tokens out of V = 20, then the same 16) the hand-built circuit is
    found by every measure: layer 0 previous-token score >= 0.95, layer 1 prefix-matching score >= 0.95, next-token
    accuracy on the second half >= 0.95 (the copy task), layer 1 copying score > 0.9. The layer-0 head neither
    prefix-matches nor copies (its OV writes where W_U does not read). Thresholds are the brief's; with logit gaps of
    30 the true values are within ~1e-11 of 1."""
    V, R, B = 20, 16, 8
    T = 2 * R
    cfg, params = hand_built_induction_model(V, T)
    rng = np.random.default_rng(seed)
    first = np.stack([rng.permutation(V)[:R] for _ in range(B)])
    tokens = jnp.asarray(np.concatenate([first, first], axis=1))
    logits, cache = jit_forward(params, cfg, tokens, cache=True)
    pattern = cache["pattern"]  # (2, B, 1, T, T)
    assert float(previous_token_score(pattern[0])[0]) >= 0.95
    assert float(prefix_matching_score(pattern[1], tokens)[0]) >= 0.95
    assert float(prefix_matching_score(pattern[0], tokens)[0]) < 0.05
    pred = np.asarray(jnp.argmax(logits[:, R : T - 1], -1))
    assert np.mean(pred == np.asarray(tokens[:, R + 1 :])) >= 0.95
    blocks = params["blocks"]
    W_E, W_U = params["embed"]["W_E"], params["unembed"]["W_U"]
    assert copying_score(W_E, blocks[1]["attn"]["W_V"], blocks[1]["attn"]["W_O"], W_U)[0] > 0.9
    assert copying_score(W_E, blocks[0]["attn"]["W_V"], blocks[0]["attn"]["W_O"], W_U)[0] == 0.0
    # the first half has no earlier copy to use: the ICL score (late minus early loss) is strongly negative
    losses = loss_by_position(logits[:, :-1], tokens[:, 1:])
    assert float(icl_score(losses, early=R // 2, late=T - 2)) < -1.0


# ----------------------------------------------------------------------------------------------------------------
# training curves


@given(
    st.floats(2000.0, 6000.0),
    st.floats(50.0, 300.0),
    st.floats(0.0, 0.5),
    st.floats(0.3, 0.5),
    st.sampled_from([1, 3, 5]),
)
def test_transition_step_finds_the_midpoint_of_a_logistic(mid, width, chance, rise, smooth):
    """A noise-free logistic rise from ``chance`` to ``chance + rise`` centred on ``mid``, evaluated every 250 steps
    up to 10^4: the estimated step is within one evaluation spacing of ``mid``, and the uncertainty is half the
    spacing. (By the logistic's point symmetry a centred odd-width average crosses half-rise at ``mid`` itself; the
    final value falls short of the plateau by < 1e-4 of the rise, which moves the crossing by far less than a step.)"""
    steps = np.arange(0.0, 10_000.0, 250.0)
    values = chance + rise / (1.0 + np.exp(-(steps - mid) / width))
    got = transition_step(steps, values, chance, smooth=smooth)
    assert got.step is not None
    assert abs(got.step - mid) <= 250.0
    assert got.uncertainty == 125.0


def test_transition_step_flat_or_small_rise_gives_none():
    """A flat noisy curve (noise 0.02, far below min_rise = 0.2) and a rise of 0.15 < min_rise give
    Transition(None, None); a curve already above half-rise at its first evaluation gives steps[0] with infinite
    uncertainty (the crossing is not bracketed)."""
    rng = np.random.default_rng(0)
    steps = np.arange(50) * 100.0
    assert transition_step(steps, 0.25 + 0.02 * rng.normal(size=50), 0.25) == Transition(None, None)
    assert transition_step(steps, np.linspace(0.25, 0.4, 50), 0.25) == (None, None)
    early = transition_step(steps, np.full(50, 0.9), 0.25)
    assert early.step == 0.0 and early.uncertainty == math.inf


def test_transition_step_uses_uneven_spacing():
    """Step estimate is the midpoint of the bracketing evaluations, with half their gap as uncertainty."""
    steps = np.array([0.0, 10.0, 30.0, 70.0, 150.0, 310.0])
    values = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    assert transition_step(steps, values, 0.0, smooth=1) == Transition(50.0, 20.0)


def test_loss_bumps_finds_a_synthetic_bump():
    """An exponential decay with a Gaussian bump of height 0.3 at step 8000: exactly one bump, starting before it,
    peaking within 3 evaluations (300 steps; smoothing and the decaying baseline shift it by ~10 steps), with the
    height within 0.05 of the bump's height above the best loss so far."""
    steps = np.arange(0.0, 20_000.0, 100.0)
    base = 1.0 + 2.0 * np.exp(-steps / 3000.0)
    loss = base + 0.3 * np.exp(-(((steps - 8000.0) / 400.0) ** 2))
    bumps = loss_bumps(steps, loss)
    assert len(bumps) == 1
    start, peak, height = bumps[0]
    assert 6500.0 <= start < 8000.0
    assert abs(peak - 8000.0) <= 300.0
    assert 0.2 <= height <= 0.3


@given(
    hnp.arrays(np.float64, st.integers(1, 60), elements=st.floats(0.0, 0.1)),
    st.sampled_from([1, 3, 5, 7]),
)
def test_loss_bumps_none_in_a_monotone_curve(decrements, smooth):
    """A non-increasing loss (plateaus allowed) stays within rounding of its running minimum after smoothing (a
    centred average of a monotone sequence is monotone), far below the 2% tolerance: no bump."""
    loss = 10.0 - np.cumsum(decrements)
    assert loss_bumps(np.arange(loss.size) * 10.0, loss, smooth=smooth) == []


@pytest.mark.parametrize(
    "call",
    [
        lambda: previous_token_score(np.zeros((4, 4))),
        lambda: induction_mask(np.zeros(4, int)),
        lambda: prefix_matching_score(np.zeros((1, 1, 4, 4)), np.zeros((1, 5), int)),
        lambda: item_to_label_previous_score(np.zeros((1, 1, 4, 4))),
        lambda: query_to_matching_label_score(np.zeros((1, 1, 5, 5)), np.zeros((1, 4), int)),
        lambda: copying_score(np.zeros((3, 2)), np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), np.zeros((2, 4))),
        lambda: transition_step([0, 0, 1], [0, 1, 1], 0.0),
        lambda: transition_step([0, 1, 2], [0, 1, 1], 0.0, smooth=2),
        lambda: loss_bumps([0, 1], [1.0, np.nan]),
    ],
)
def test_bad_inputs_are_refused(call):
    """Shape mismatches, non-increasing steps, even smoothing widths and NaNs raise ValueError."""
    with pytest.raises(ValueError):
        call()
