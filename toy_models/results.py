"""What a training run leaves on disk, and the summary measures computed from its curves.

``config.json``   the full :class:`~toy_models.train.RunConfig` (every result file sits beside it);
``metrics.npz``   labelled curves: ``curves`` (measure x model x step) with ``measures``, ``steps``, ``seeds``
                  and ``lrs`` stored as coordinates; per-head curves ``head_<measure>`` (model x step x layer x
                  head); ``train_loss`` (model x step). Loads with ``allow_pickle=False``.
``summary.json``  per model: final measures, transition step with its uncertainty, loss bumps, copying scores.
``params.npz``    the final parameters, one array per leaf named by its TransformerLens state-dict key
                  (``embed.W_E``, ``blocks.0.attn.W_Q``, ``unembed.b_U``, ...), with a leading model axis (see
                  :func:`param_arrays`; :mod:`toy_models.lens` exports a model to TransformerLens from it).
``curves.png``, ``attention.png``  figures (see :mod:`toy_models.plots`).

All files are written to a temporary name and renamed, so none is ever half-written.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import jax
import numpy as np

from zipfhead.theory._io import atomic_write
from zipfhead.toy_models import measures as ms
from zipfhead.toy_models.train import RunResult, headline_chance, headline_measure

__all__ = ["param_arrays", "summarise", "write_run"]


def _chance(result: RunResult) -> float:
    """The headline measure's reference level (:func:`toy_models.train.headline_chance`; a token toy's is the mean
    of its models' step-0 values)."""
    chance = headline_chance(result.run.task)
    if chance is None:
        return float(np.mean(result.curves[headline_measure(result.run.kind)][:, 0]))
    return chance


def _copying_scores(result: RunResult, m: int) -> list[list[float]]:
    """Olsson's OV copying score of every head (layer x head) of model m, on label (or token) rows."""
    run = result.run
    params = result.state["params"]
    W_E = np.asarray(params["embed"]["W_E"][m])
    if run.kind == "classification":
        W_E = W_E[run.task.D :]  # the one-hot label rows: copying a label means raising its own logit
    W_U = np.asarray(params["unembed"]["W_U"][m])
    out = []
    for block in params["blocks"]:
        attn = block["attn"]
        scores = ms.copying_score(W_E, np.asarray(attn["W_V"][m]), np.asarray(attn["W_O"][m]), W_U)
        out.append([float(x) for x in np.asarray(scores)])
    return out


def summarise(result: RunResult) -> dict[str, Any]:
    """Per-model summary: final value of every measure, transition step (+- uncertainty), bumps, copying."""
    run = result.run
    headline = headline_measure(run.kind)
    chance = _chance(result)
    models = []
    for m, (seed, lr) in enumerate(zip(run.model_seeds, run.model_lrs, strict=True)):
        final = {}
        for name, curve in result.curves.items():
            last = curve[m, -1]
            final[name] = float(last) if np.ndim(last) == 0 else np.asarray(last).tolist()
        tr = ms.transition_step(result.steps, result.curves[headline][m], chance)
        loss = result.train_loss[m]
        steps = np.arange(1, loss.shape[0] + 1)
        bumps = ms.loss_bumps(steps, loss) if loss.size else []
        models.append(
            {
                "model": m,
                "seed": int(seed),
                "lr": float(lr),
                "diverged": bool(result.diverged[m]),
                "final": final,
                "transition_step": None if tr.step is None else float(tr.step),
                "transition_uncertainty": None if tr.uncertainty is None else float(tr.uncertainty),
                "loss_bumps": [[float(a), float(b), float(h)] for a, b, h in bumps],
                "copying_score": _copying_scores(result, m),
            }
        )
    return {
        "kind": run.kind,
        "headline": headline,
        "chance": chance,
        "steps_trained": int(result.steps[-1]),
        "seconds": result.seconds,
        "data_seconds": result.data_seconds,
        "timings": result.timings,
        "models": models,
    }


def param_arrays(params: Any) -> dict[str, np.ndarray]:
    """A parameter pytree as flat arrays named by TransformerLens's state-dict keys (``blocks.0.attn.W_Q``).

    Leading axes are kept: a run's stacked parameters keep their model axis (M, ...).
    """
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        name = ".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
        out[name] = np.asarray(leaf)
    return out


def write_run(result: RunResult, out_dir: str | Path, *, figures: bool = True) -> dict[str, Any]:
    """Write config.json, metrics.npz, params.npz, summary.json (and the figures) to ``out_dir``; return the summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run = result.run
    atomic_write(out / "config.json", lambda f: json.dump(run.to_dict(), f, indent=2), mode="w")

    scalar = sorted(k for k, v in result.curves.items() if v.ndim == 2)
    heads = sorted(k for k, v in result.curves.items() if v.ndim == 4)
    arrays = {
        "curves": np.stack([result.curves[k] for k in scalar]),
        "measures": np.asarray(scalar),
        "steps": result.steps,
        "seeds": np.asarray(run.model_seeds),
        "lrs": np.asarray(run.model_lrs),
        "train_loss": result.train_loss,
        "diverged": result.diverged,
    }
    arrays.update({f"head_{k}": result.curves[k] for k in heads})
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write(out / "metrics.npz", lambda f: f.write(buf.getvalue()))
    params_buf = io.BytesIO()
    np.savez(params_buf, **param_arrays(result.state["params"]))
    atomic_write(out / "params.npz", lambda f: f.write(params_buf.getvalue()))

    summary = summarise(result)
    atomic_write(out / "summary.json", lambda f: json.dump(summary, f, indent=2), mode="w")
    if figures:
        from zipfhead.toy_models import plots

        for name, fig in (("curves.png", plots.curves(result, summary)), ("attention.png", plots.attention(result))):
            fig_buf = io.BytesIO()
            fig.savefig(fig_buf, format="png", dpi=110, bbox_inches="tight")
            plots.close(fig)
            atomic_write(out / name, lambda f, b=fig_buf: f.write(b.getvalue()))
    return summary
