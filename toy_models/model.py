"""Attention-only transformers in JAX, with TransformerLens's parameter names and shapes.

Parameters are a plain pytree (nested dicts and a list of blocks)::

    embed:     W_E   (d_vocab, d_model)         token ids index rows; input vectors multiply it
    pos_embed: W_pos (n_ctx, d_model)           learned, or fixed one-hot directions ("onehot", Reddy 2024)
    blocks[l]: attn: W_Q, W_K, W_V (n_heads, d_model, d_head); b_Q, b_K, b_V (n_heads, d_head)
                     W_O (n_heads, d_head, d_model); b_O (d_model)
               ln1:  w, b (d_model)              only with layer_norm
    ln_final:  w, b (d_model)                    only with layer_norm
    unembed:   W_U (d_model, d_vocab_out), b_U (d_vocab_out)

so a toy exports to a ``HookedTransformer`` (attn_only=True) with no renaming. Shapes in names follow the
suffix convention: ``x_BTD`` is batch x position x d_model.

Inputs are token ids (int, shape (B, T)) for token streams, or vectors (float, shape (B, T, d_vocab)) for
in-context classification, where each position carries an item vector or a one-hot label (see
:func:`toy_models.tasks.classification_inputs`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from zipfhead.toy_models.config import ModelConfig

__all__ = ["ModelConfig", "content_mask", "forward", "init_params"]

Params = dict[str, Any]


def _onehot_positions(cfg: ModelConfig) -> jnp.ndarray:
    return jnp.zeros((cfg.n_ctx, cfg.d_model)).at[:, cfg.d_model - cfg.n_ctx :].set(jnp.eye(cfg.n_ctx))


def content_mask(cfg: ModelConfig) -> jnp.ndarray:
    """(1, d_model): 1 on the content dimensions, 0 on the one-hot positions' (a row, to scale W_E's rows)."""
    return (jnp.arange(cfg.d_model) < cfg.d_model - cfg.n_ctx).astype(jnp.float32)[None, :]


def init_params(cfg: ModelConfig, key: jax.Array) -> Params:
    """Initial parameters: weights ~ N(0, (init_scale / sqrt(d_model))^2), biases 0, layer norms identity."""
    std = cfg.init_scale / np.sqrt(cfg.d_model)
    keys = iter(jax.random.split(key, 3 + 4 * cfg.n_layers))
    H, M, E = cfg.n_heads, cfg.d_model, cfg.d_head

    def normal(shape):
        return std * jax.random.normal(next(keys), shape)

    W_E = normal((cfg.d_vocab, M))
    params: Params = {
        "embed": {"W_E": W_E * content_mask(cfg) if cfg.positional == "onehot" else W_E},
        "pos_embed": {"W_pos": normal((cfg.n_ctx, M)) if cfg.positional == "learned" else _onehot_positions(cfg)},
        "blocks": [],
        "unembed": {"W_U": normal((M, cfg.d_vocab_out)), "b_U": jnp.zeros(cfg.d_vocab_out)},
    }
    if cfg.positional == "onehot":
        next(keys)  # keep the key schedule independent of the positional scheme
    for _ in range(cfg.n_layers):
        block = {
            "attn": {
                "W_Q": normal((H, M, E)),
                "W_K": normal((H, M, E)),
                "W_V": normal((H, M, E)),
                "W_O": normal((H, E, M)),
                "b_Q": jnp.zeros((H, E)),
                "b_K": jnp.zeros((H, E)),
                "b_V": jnp.zeros((H, E)),
                "b_O": jnp.zeros(M),
            }
        }
        if cfg.layer_norm:
            block["ln1"] = {"w": jnp.ones(M), "b": jnp.zeros(M)}
        params["blocks"].append(block)
    if cfg.layer_norm:
        params["ln_final"] = {"w": jnp.ones(M), "b": jnp.zeros(M)}
    return params


def _layer_norm(x: jnp.ndarray, p: dict[str, jnp.ndarray], eps: float = 1e-5) -> jnp.ndarray:
    x = x - x.mean(-1, keepdims=True)
    lead = (1,) * (x.ndim - 1)  # the scale and shift broadcast over every leading axis, explicitly
    return x * jax.lax.rsqrt((x * x).mean(-1, keepdims=True) + eps) * p["w"].reshape(*lead, -1) + p["b"].reshape(
        *lead, -1
    )


def embed(params: Params, cfg: ModelConfig, inputs: jnp.ndarray) -> jnp.ndarray:
    """Residual stream at layer 0, (B, T, d_model): token or vector embedding plus positions."""
    W_E = params["embed"]["W_E"]
    W_pos = params["pos_embed"]["W_pos"]
    if cfg.positional == "onehot":
        # Reddy's concatenation [content | one-hot position]: content lives in the first d_model - n_ctx
        # dimensions, positions in the last n_ctx; neither W_pos nor that split is trained.
        W_E = W_E * content_mask(cfg)
        W_pos = jax.lax.stop_gradient(W_pos)
    x_BTD = W_E[inputs] if jnp.issubdtype(inputs.dtype, jnp.integer) else inputs @ W_E
    return x_BTD + W_pos[None, : x_BTD.shape[1]]


def attention(attn: dict[str, jnp.ndarray], x_BTD: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Causal multi-head attention: (output (B, T, d_model), pattern (B, n_heads, T_query, T_key))."""
    q_BHTE = jnp.einsum("btd,hde->bhte", x_BTD, attn["W_Q"]) + attn["b_Q"][None, :, None, :]
    k_BHTE = jnp.einsum("btd,hde->bhte", x_BTD, attn["W_K"]) + attn["b_K"][None, :, None, :]
    v_BHTE = jnp.einsum("btd,hde->bhte", x_BTD, attn["W_V"]) + attn["b_V"][None, :, None, :]
    T = x_BTD.shape[1]
    scores = jnp.einsum("bhqe,bhke->bhqk", q_BHTE, k_BHTE) / np.sqrt(q_BHTE.shape[-1])
    causal = jnp.tril(jnp.ones((T, T), dtype=bool))
    scores = jnp.where(causal[None, None], scores, -jnp.inf)
    pattern = jax.nn.softmax(scores, axis=-1)
    z_BHTE = jnp.einsum("bhqk,bhke->bhqe", pattern, v_BHTE)
    return jnp.einsum("bhqe,hed->bqd", z_BHTE, attn["W_O"]) + attn["b_O"][None, None, :], pattern


def forward(params: Params, cfg: ModelConfig, inputs: jnp.ndarray, *, cache: bool = False):
    """Logits (B, T, d_vocab_out); with ``cache=True`` also a dict of every attention pattern and residual.

    The cache holds ``pattern`` (n_layers, B, n_heads, T, T) and ``resid`` (n_layers + 1, B, T, d_model): the
    residual stream before each layer and after the last one.
    """
    x = embed(params, cfg, inputs)
    patterns, resids = [], [x]
    for block in params["blocks"]:
        h = _layer_norm(x, block["ln1"]) if cfg.layer_norm else x
        out, pattern = attention(block["attn"], h)
        x = x + out
        patterns.append(pattern)
        resids.append(x)
    if cfg.layer_norm:
        x = _layer_norm(x, params["ln_final"])
    logits = x @ params["unembed"]["W_U"] + params["unembed"]["b_U"][None, None, :]
    if cache:
        return logits, {"pattern": jnp.stack(patterns), "resid": jnp.stack(resids)}
    return logits
