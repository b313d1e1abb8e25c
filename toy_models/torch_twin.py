"""A PyTorch-eager twin of the attention-only toy: the baseline a user would write instead of zipfhead's engine.

Same parameters (TransformerLens names and shapes, copied from a JAX initialisation so both start from the same
weights), same forward pass (:func:`toy_models.model.forward`: embedding plus learned positions, causal softmax
attention with biases, residual sums, unembedding; optional pre-attention layer norm), same token-stream loss
(mean next-token cross-entropy over every position), and the same optimiser: ``torch.optim.AdamW`` with optax's
Adam constants (b1 0.9, b2 0.999, eps 1e-8 outside the square root) and decoupled weight decay lr x wd x theta,
as ``optax.adamw``. It runs eagerly, one op at a time, as a PyTorch user's training loop does.

``zipfhead bench --part training`` times it beside the JAX toy's jitted step; ``tests/unit/test_torch_twin.py`` checks
that the two produce the same loss curve on a fixed sequence of batches. torch comes with the ``lens`` extra
(``make`` installs it); it is not a core dependency, so this module imports it only when called.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from zipfhead.toy_models.model import ModelConfig

__all__ = ["TorchToy", "torch_step_fn"]


def _torch():
    try:
        import torch
    except ImportError as err:  # pragma: no cover - the lens extra installs torch
        raise ImportError("the PyTorch twin needs torch: pip install 'zipfhead[lens]'") from err
    return torch


class TorchToy:
    """The toy's parameters as torch tensors (float32, requires_grad), in the JAX pytree's layout.

    Args:
        cfg: the model; token inputs, learned positions (one-hot positions and vector inputs are the
            classification toy's and are not twinned).
        params: a JAX parameter pytree (:func:`toy_models.model.init_params`) whose values are copied.
        threads: torch intra-op threads (default: torch's own choice).
    """

    def __init__(self, cfg: ModelConfig, params: Any, threads: int | None = None) -> None:
        torch = _torch()
        if cfg.positional != "learned":
            raise ValueError(f"positional = {cfg.positional!r} is not allowed: the twin has learned positions only")
        if threads is not None:
            torch.set_num_threads(int(threads))
        self.cfg = cfg

        def leaf(x: Any):
            return torch.tensor(np.asarray(x, dtype=np.float32), requires_grad=True)

        self.W_E = leaf(params["embed"]["W_E"])
        self.W_pos = leaf(params["pos_embed"]["W_pos"])
        self.W_U = leaf(params["unembed"]["W_U"])
        self.b_U = leaf(params["unembed"]["b_U"])
        self.blocks = [
            {name: leaf(value) for name, value in block["attn"].items()}
            | ({"ln_w": leaf(block["ln1"]["w"]), "ln_b": leaf(block["ln1"]["b"])} if cfg.layer_norm else {})
            for block in params["blocks"]
        ]
        self.ln_final = (leaf(params["ln_final"]["w"]), leaf(params["ln_final"]["b"])) if cfg.layer_norm else None

    def parameters(self) -> list:
        """Every trained tensor (the optimiser's list)."""
        out = [self.W_E, self.W_pos, self.W_U, self.b_U]
        for block in self.blocks:
            out.extend(block.values())
        if self.ln_final is not None:
            out.extend(self.ln_final)
        return out

    @staticmethod
    def _layer_norm(x, w, b, eps: float = 1e-5):
        x = x - x.mean(-1, keepdim=True)
        return x * (x * x).mean(-1, keepdim=True).add(eps).rsqrt() * w + b

    def forward(self, tokens):
        """Logits (B, T, d_vocab_out) of int64 tokens (B, T), as :func:`toy_models.model.forward`."""
        torch = _torch()
        x = self.W_E[tokens] + self.W_pos[: tokens.shape[1]]
        T = tokens.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        for blk in self.blocks:
            h = self._layer_norm(x, blk["ln_w"], blk["ln_b"]) if "ln_w" in blk else x
            q = torch.einsum("btd,hde->bhte", h, blk["W_Q"]) + blk["b_Q"][:, None, :]
            k = torch.einsum("btd,hde->bhte", h, blk["W_K"]) + blk["b_K"][:, None, :]
            v = torch.einsum("btd,hde->bhte", h, blk["W_V"]) + blk["b_V"][:, None, :]
            scores = torch.einsum("bhqe,bhke->bhqk", q, k) / math.sqrt(q.shape[-1])
            pattern = scores.masked_fill(~causal, float("-inf")).softmax(-1)
            z = torch.einsum("bhqk,bhke->bhqe", pattern, v)
            x = x + torch.einsum("bhqe,hed->bqd", z, blk["W_O"]) + blk["b_O"]
        if self.ln_final is not None:
            x = self._layer_norm(x, *self.ln_final)
        return x @ self.W_U + self.b_U

    def loss(self, tokens):
        """Mean next-token cross-entropy (nats) of a (B, T) batch: logits of tokens[:, :-1] against tokens[:, 1:]."""
        torch = _torch()
        logits = self.forward(tokens[:, :-1])
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))


def torch_step_fn(toy: TorchToy, lr: float, weight_decay: float = 0.0):
    """One eager training step ``step(tokens: np.ndarray (B, T) int) -> loss (float)`` of ``toy`` under AdamW with
    optax's constants."""
    torch = _torch()
    opt = torch.optim.AdamW(toy.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay)

    def step(tokens: np.ndarray) -> float:
        batch = torch.from_numpy(np.asarray(tokens, dtype=np.int64))
        opt.zero_grad(set_to_none=True)
        loss = toy.loss(batch)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step
