"""The attention-only transformer: causality through gradients, attention rows, names and shapes, bad configs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zipfhead.toy_models.model import ModelConfig, forward, init_params
from zipfhead.toy_models.tasks import classification_inputs

configs = st.builds(
    ModelConfig,
    n_ctx=st.integers(2, 12),
    d_vocab=st.integers(2, 9),
    d_vocab_out=st.integers(2, 9),
    n_layers=st.integers(1, 3),
    n_heads=st.integers(1, 3),
    d_model=st.sampled_from([16, 24]),
    layer_norm=st.booleans(),
    positional=st.just("learned"),
)


@settings(max_examples=4)  # each example compiles a new shape (~3 s): four draws of layers, heads, norm, lengths
@given(configs, st.integers(0, 2**31 - 1))
def test_output_at_t_does_not_depend_on_later_inputs(cfg, seed):
    """Causality through gradients (nanodo's test): d logits[t] / d inputs[s] is exactly 0 for every s > t."""
    params = init_params(cfg, jax.random.PRNGKey(seed))
    x = jax.random.normal(jax.random.PRNGKey(seed + 1), (1, cfg.n_ctx, cfg.d_vocab))
    jac = np.asarray(jax.jit(jax.jacrev(lambda x_: forward(params, cfg, x_)[0]))(x))  # (T, V_out, 1, T, d_vocab)
    for t in range(cfg.n_ctx):
        assert np.all(jac[t, :, 0, t + 1 :] == 0.0), t  # exact zero: masked scores get weight exp(-inf) = 0
        assert np.any(jac[t, :, 0, : t + 1] != 0.0)


@settings(max_examples=4)  # as above: one compilation per example
@given(configs, st.integers(0, 2**31 - 1))
def test_attention_rows_are_causal_distributions(cfg, seed):
    """Every attention row sums to 1 (float32: 1e-5) and puts no weight on later positions."""
    params = init_params(cfg, jax.random.PRNGKey(seed))
    tokens = jax.random.randint(jax.random.PRNGKey(seed + 1), (3, cfg.n_ctx), 0, cfg.d_vocab)
    logits, cache = jax.jit(lambda p, x: forward(p, cfg, x, cache=True))(params, tokens)
    pattern = np.asarray(cache["pattern"])
    assert logits.shape == (3, cfg.n_ctx, cfg.d_vocab_out)
    assert pattern.shape == (cfg.n_layers, 3, cfg.n_heads, cfg.n_ctx, cfg.n_ctx)
    np.testing.assert_allclose(pattern.sum(-1), 1.0, atol=1e-5)
    assert np.all(np.triu(pattern, k=1) == 0.0)
    assert cache["resid"].shape == (cfg.n_layers + 1, 3, cfg.n_ctx, cfg.d_model)


def test_parameter_names_and_shapes_are_transformer_lens():
    """The pytree uses TransformerLens's names and shapes, so an export needs no renaming."""
    cfg = ModelConfig(n_ctx=7, d_vocab=11, d_vocab_out=5, n_layers=2, n_heads=3, d_model=12, d_head=4, layer_norm=True)
    p = init_params(cfg, jax.random.PRNGKey(0))
    assert p["embed"]["W_E"].shape == (11, 12)
    assert p["pos_embed"]["W_pos"].shape == (7, 12)
    attn = p["blocks"][1]["attn"]
    assert attn["W_Q"].shape == attn["W_K"].shape == attn["W_V"].shape == (3, 12, 4)
    assert attn["W_O"].shape == (3, 4, 12) and attn["b_Q"].shape == (3, 4) and attn["b_O"].shape == (12,)
    assert p["unembed"]["W_U"].shape == (12, 5) and p["unembed"]["b_U"].shape == (5,)
    assert set(p["blocks"][0]) == {"attn", "ln1"} and set(p["ln_final"]) == {"w", "b"}


def test_onehot_positions_are_fixed_directions():
    """positional='onehot': W_pos is the identity on the last n_ctx residual dimensions and gets no gradient."""
    cfg = ModelConfig(n_ctx=5, d_vocab=4, d_vocab_out=3, d_model=8, positional="onehot")
    p = init_params(cfg, jax.random.PRNGKey(0))
    np.testing.assert_array_equal(p["pos_embed"]["W_pos"][:, 3:], np.eye(5))
    grads = jax.grad(lambda q: forward(q, cfg, jnp.zeros((1, 5, 4))).sum())(p)
    assert np.all(np.asarray(grads["pos_embed"]["W_pos"]) == 0.0)


def test_classification_inputs_interleave_items_and_labels():
    """x_1 l_1 ... x_N l_N x_q: items in the first D dims at even positions, one-hot labels after them."""
    items = np.arange(3 * 2, dtype=np.float32).reshape(1, 3, 2) + 1  # N = 2, D = 2
    labels = np.array([[2, 0, 1]])
    x = np.asarray(classification_inputs(jnp.asarray(items), jnp.asarray(labels), 3))
    assert x.shape == (1, 5, 5)
    np.testing.assert_array_equal(x[0, 0], [1, 2, 0, 0, 0])
    np.testing.assert_array_equal(x[0, 1], [0, 0, 0, 0, 1])  # label 2
    np.testing.assert_array_equal(x[0, 2], [3, 4, 0, 0, 0])
    np.testing.assert_array_equal(x[0, 3], [0, 0, 1, 0, 0])  # label 0
    np.testing.assert_array_equal(x[0, 4], [5, 6, 0, 0, 0])  # the query; its label is not an input


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"n_layers": 0}, "n_layers = 0"),
        ({"n_heads": 0}, "n_heads = 0"),
        ({"d_model": 4, "positional": "onehot"}, "d_model = 4"),
        ({"positional": "rotary"}, "positional = 'rotary'"),
        ({"init_scale": 0.0}, "init_scale = 0.0"),
    ],
)
def test_bad_model_configs(kw, needle):
    """Bad model parameters raise ValueError naming the parameter and value."""
    with pytest.raises(ValueError, match=needle):
        ModelConfig(**{"n_ctx": 5, "d_vocab": 4, "d_vocab_out": 3, **kw})
