"""The PyTorch-eager twin (toy_models.torch_twin) against the JAX toy: the same loss curve on the same batches."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zipfhead.theory.distributions import TokenStreamTask
from zipfhead.theory.samplers import sample_token_streams
from zipfhead.toy_models import measures as ms
from zipfhead.toy_models.model import ModelConfig, forward, init_params
from zipfhead.toy_models.train import TrainConfig, make_optimizer

torch_twin = pytest.importorskip("zipfhead.toy_models.torch_twin")
pytest.importorskip("torch")

TASK = TokenStreamTask(V=16, T=32, alpha=1.5, n_triggers=2, trigger_dist="uniform")


def jax_losses(cfg: ModelConfig, params, batches: list[np.ndarray], lr: float, wd: float) -> list[float]:
    """The JAX toy's training losses under zipfhead's optimiser (optax adamw), one batch per step."""
    opt = make_optimizer(TrainConfig(lr=lr, weight_decay=wd), lr, wd)
    state = opt.init(params)

    @jax.jit
    def step(params, state, tokens):
        def loss(p):
            logits = forward(p, cfg, tokens[:, :-1])
            return ms.cross_entropy(logits.reshape(-1, cfg.d_vocab_out), tokens[:, 1:].reshape(-1))

        value, grads = jax.value_and_grad(loss)(params)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    out = []
    for b in batches:
        params, state, value = step(params, state, jnp.asarray(b))
        out.append(float(value))
    return out


@pytest.mark.parametrize(("layer_norm", "wd"), [(False, 0.0), (True, 0.1)])
def test_the_twin_trains_along_the_same_loss_curve(layer_norm, wd):
    """25 Adam steps from the same initial weights on the same batches: the losses agree to 1e-4 nats at every
    step (float32 with different summation orders; measured ~3e-6 after 30 steps), and training moved them by far
    more than that (so a twin that did not train, or trained differently, fails)."""
    cfg = ModelConfig(n_ctx=31, d_vocab=16, d_vocab_out=16, n_layers=2, n_heads=2, d_model=32, layer_norm=layer_norm)
    params = init_params(cfg, jax.random.PRNGKey(3))
    batches = [sample_token_streams(TASK, 16, 5, offset=16 * i).tokens for i in range(25)]
    reference = jax_losses(cfg, params, batches, 1e-2, wd)
    step = torch_twin.torch_step_fn(torch_twin.TorchToy(cfg, params), 1e-2, wd)
    twin = [step(b) for b in batches]
    assert np.max(np.abs(np.array(twin) - np.array(reference))) < 1e-4
    assert reference[0] - min(reference) > 0.3


def test_the_twin_refuses_one_hot_positions():
    cfg = ModelConfig(n_ctx=8, d_vocab=4, d_vocab_out=4, d_model=16, positional="onehot")
    with pytest.raises(ValueError, match="positional = 'onehot' is not allowed"):
        torch_twin.TorchToy(cfg, init_params(cfg, jax.random.PRNGKey(0)))


def test_the_bench_times_the_twin_beside_the_jax_rate():
    """The bench's row: both rates positive and their ratio as stated (the JAX rate is given, the twin's timed)."""
    from zipfhead.toy_models.bench import _token_run, bench_torch_twin

    row = bench_torch_twin(_token_run(4), steps=2, repeats=1, jax_steps_per_s=10.0)
    assert row["torch_steps_per_s"] > 0 and row["jax_steps_per_s"] == 10.0
    assert row["ratio"] == pytest.approx(10.0 / row["torch_steps_per_s"])
