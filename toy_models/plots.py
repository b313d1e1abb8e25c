"""Figures of a training run: functions of loaded results that return a matplotlib Figure (the CLI saves them)."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display is assumed
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from zipfhead.toy_models.model import forward
from zipfhead.toy_models.tasks import classification_inputs
from zipfhead.toy_models.train import RunResult, data_streams, headline_measure

__all__ = ["attention", "close", "curves"]


def close(fig: Figure) -> None:
    """Release a figure's memory."""
    plt.close(fig)


def curves(result: RunResult, summary: dict[str, Any]) -> Figure:
    """Training loss and accuracies against step, one column per model (up to 8), the transition marked."""
    M = min(len(result.run.model_seeds), 8)
    fig, axes = plt.subplots(2, M, figsize=(3.2 * M, 5.5), squeeze=False, sharex=True)
    # accuracies, or for a Markov toy its progress up the stage ladder (each 0 at one rung and 1 at the next)
    suffix = "_progress" if result.run.kind == "markov" else "_acc"
    acc_names = [k for k, v in result.curves.items() if v.ndim == 2 and k.endswith(suffix)]
    headline = headline_measure(result.run.kind)
    for m in range(M):
        info = summary["models"][m]
        loss = result.train_loss[m]
        ax = axes[0, m]
        if loss.size:
            window = max(1, loss.size // 100)
            smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
            ax.plot(np.arange(window, loss.size + 1), smooth, lw=1)
        ax.set_title(f"seed {info['seed']}, lr {info['lr']:g}", fontsize=9)
        ax.set_ylabel("training loss (nats)" if m == 0 else "")
        ax = axes[1, m]
        for name in acc_names:
            ax.plot(result.steps, result.curves[name][m], lw=1.5 if name == headline else 1, label=name)
        ax.set_ylim(-0.02, 1.02) if suffix == "_acc" else ax.axhline(1.0, color="0.6", lw=0.6)
        ax.set_xlabel("step")
        ax.set_ylabel(("accuracy" if suffix == "_acc" else "progress to the next rung") if m == 0 else "")
        if info["transition_step"] is not None:
            for a in axes[:, m]:
                a.axvline(info["transition_step"], color="k", ls="--", lw=0.8)
    axes[1, 0].legend(fontsize=7, loc="best")
    fig.suptitle(f"{result.run.kind}: dashed line = transition ({headline} half-way to its final value)")
    return fig


def attention(result: RunResult, model: int = 0) -> Figure:
    """Attention pattern of every head of one model at the end of training, on one evaluation sequence."""
    run = result.run
    params = _select(result.state["params"], model)
    stream = data_streams(run)[model]
    sets = stream.eval_sets(stream.means(), 1)
    if run.kind == "classification":
        s = sets["icl"]
        inputs = classification_inputs(jnp.asarray(s["items"]), jnp.asarray(s["labels"]), run.task.L)
        ticks = [f"x{i // 2 + 1}" if i % 2 == 0 else f"l{i // 2 + 1}" for i in range(run.model.n_ctx - 1)] + ["xq"]
    else:  # repeated random tokens for a token toy; a held-out chain for a Markov toy
        probe = sets["repeated"] if "repeated" in sets else sets["chain"]
        inputs = jnp.asarray(probe["tokens"][:, :-1])
        ticks = None
    _, cache = forward(params, run.model, inputs, cache=True)
    pattern = np.asarray(cache["pattern"][:, 0])  # (layers, heads, T, T)
    n_layers, n_heads = pattern.shape[:2]
    fig, axes = plt.subplots(n_layers, n_heads, figsize=(3.6 * n_heads, 3.4 * n_layers), squeeze=False)
    for layer in range(n_layers):
        for head in range(n_heads):
            ax = axes[layer, head]
            ax.imshow(pattern[layer, head], cmap="viridis", vmin=0, vmax=1)
            ax.set_title(f"layer {layer + 1}, head {head + 1}", fontsize=9)
            if ticks is not None:
                ax.set_xticks(range(len(ticks)), ticks, fontsize=5, rotation=90)
                ax.set_yticks(range(len(ticks)), ticks, fontsize=5)
            ax.set_xlabel("key position")
            ax.set_ylabel("query position")
    fig.suptitle(f"attention at step {int(result.steps[-1])} (model {model})")
    return fig


def _select(tree: Any, m: int) -> Any:
    """Model m's slice of a vmapped parameter pytree."""
    return jax.tree_util.tree_map(lambda x: x[m], tree)
