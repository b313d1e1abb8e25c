"""Export a trained toy to TransformerLens: a ``HookedTransformer`` (``attn_only=True``) with the same weights.

Needs the optional ``lens`` extra (TransformerLens 3.x and a CPU build of torch; see the README). This is the only
module of zipfhead that imports torch, and it does so lazily: importing it costs nothing until a function runs.

Why the export is exact
-----------------------
:func:`toy_models.model.forward` is TransformerLens's attention-only transformer term by term, and the parameters
carry TransformerLens's state-dict names and shapes, so the weights load without renaming:

=====================  ==========================================================  ===============================
zipfhead               computation                                                 HookedTransformerConfig
=====================  ==========================================================  ===============================
embed, pos_embed       residual = W_E[tokens] + W_pos[:T]                          positional_embedding_type
                                                                                   ``"standard"`` (learned)
``layer_norm``         pre-attention and final LayerNorm: (x - mean) /             ``normalization_type="LN"``,
                       sqrt(var + 1e-5) * w + b; without it none                   ``eps=1e-5``; else ``None``
attention              q, k, v = x W + b; scores q.k / sqrt(d_head)                ``use_attn_scale``,
                                                                                   ``attn_scale = sqrt(d_head)``
causal mask            masked scores -inf (TransformerLens's ``IGNORE`` is -inf)   ``attention_dir="causal"``
block                  x + (z W_O + b_O), no MLP                                   ``attn_only=True``
unembed                logits = x W_U + b_U                                        ``d_vocab_out``
=====================  ==========================================================  ===============================

One-hot positions (``positional="onehot"``, Reddy 2024's [content | position] concatenation) export as they act:
``W_pos`` is the stored one-hot matrix and ``W_E`` the content-masked embedding that the toy's forward pass uses.

Token streams and in-context classification
-------------------------------------------
A token-stream toy reads token ids, as a ``HookedTransformer`` does; the exported model also gets a tokenizer
(:func:`id_tokenizer`: token i is spelled ``"i"``, tokens separated by spaces, no BOS) so that everything that
takes strings works as usual, TransformerLens's head detector included::

    model = to_hooked_transformer("runs/tokens")
    detect_head(model, token_string(tokens), "induction_head")   # (n_layers, n_heads)

A classification toy reads vectors (item vectors and one-hot labels, width D + L) that multiply ``W_E``; a
``HookedTransformer`` embeds token ids by row lookup. The export is the same ``HookedTransformer`` (d_vocab = D + L
rows of ``W_E``), and vectors go in through its embedding hook: :func:`run_with_vectors` replaces ``hook_embed``'s
output ``W_E[tokens]`` by ``vectors @ W_E``, and TransformerLens adds the positions and runs the rest, caches
and hooks included. An equivalent without hooks is ``model(vectors @ model.W_E + model.W_pos[:T],
start_at_layer=0)``. A label position is a one-hot row, so token id D + l is exactly label l; item positions are
dense vectors and have no token id.

Saving
------
:func:`export` writes ``torch.save(model.state_dict(), path)`` (TransformerLens's own format) and, beside it,
``path`` with suffix ``.json``: the ``HookedTransformerConfig`` arguments. :func:`load_export` rebuilds the model
from the two with TransformerLens's own means (``HookedTransformer(cfg)`` then ``load_state_dict``).

TransformerLens 4 removed ``HookedTransformer`` (for ``TransformerBridge``, which wraps Hugging Face models); the
``lens`` extra therefore asks for TransformerLens >= 3, < 4, whose ``HookedTransformer`` is current but for a
deprecation notice (silenced here). TransformerLens 2 needs numpy < 2.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from zipfhead.theory._io import read_json, reading

__all__ = [
    "export",
    "id_tokenizer",
    "load_export",
    "load_params",
    "run_with_vectors",
    "to_hooked_transformer",
    "token_string",
    "vector_hooks",
]

EOS = "<|endoftext|>"
_MISSING_EXTRA = (
    "the TransformerLens export needs the `lens` extra: pip install torch==2.13.0+cpu (or torch from "
    "https://download.pytorch.org/whl/cpu), then pip install -e '.[lens]'"
)


def _import_lens():
    """(torch, HookedTransformer, HookedTransformerConfig), or an ImportError that says how to install them."""
    try:
        import torch
        from transformer_lens import HookedTransformer, HookedTransformerConfig
    except ImportError as err:
        raise ImportError(f"{_MISSING_EXTRA} ({err})") from err
    return torch, HookedTransformer, HookedTransformerConfig


# --- parameters ----------------------------------------------------------------------------------------------
def _select(arrays: dict[str, np.ndarray], stacked: bool, model_index: int) -> dict[str, np.ndarray]:
    if not stacked:
        if model_index != 0:
            raise ValueError(f"model_index = {model_index} is not allowed for the parameters of one model: use 0")
        return arrays
    M = arrays["embed.W_E"].shape[0]
    if not 0 <= model_index < M:
        raise ValueError(f"model = {model_index} is out of range: the run has {M} models (0..{M - 1})")
    return {k: v[model_index] for k, v in arrays.items()}


def _run_dir_params(run_dir: Path, model_index: int) -> tuple[Any, dict[str, np.ndarray]]:
    """(RunConfig, one model's flat arrays) from a run directory: params.npz, or else its last checkpoint."""
    from zipfhead.toy_models.train import RunConfig

    if not (run_dir / "config.json").exists():
        raise ValueError(f"{run_dir} is not a run directory: it has no config.json (made by zipfhead train)")
    with reading(run_dir / "config.json", "a zipfhead train config"):
        run = RunConfig.from_dict(read_json(run_dir / "config.json"))
    if (run_dir / "params.npz").exists():
        with np.load(run_dir / "params.npz", allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    elif (run_dir / "checkpoint.json").exists():  # runs written before params.npz existed
        import jax
        import jax.numpy as jnp

        from zipfhead.toy_models.results import param_arrays
        from zipfhead.toy_models.train import Engine, load_checkpoint

        M = len(run.model_seeds)
        zeros = jnp.zeros(M, jnp.float32)  # lr and weight decay: only their shapes matter here
        template = jax.eval_shape(Engine(run).init, jnp.zeros((M, 2), jnp.uint32), zeros, zeros)
        loaded = load_checkpoint(run_dir, template)
        if loaded is None:
            raise ValueError(f"{run_dir} holds no consistent checkpoint (its payload is missing or damaged)")
        state = loaded[0]
        arrays = param_arrays(state["params"])
    else:
        raise ValueError(f"{run_dir} holds no trained parameters (params.npz or a checkpoint)")
    return run, _select(arrays, True, model_index)


def load_params(source: Any, model_index: int = 0, *, cfg: Any = None) -> tuple[Any, dict[str, np.ndarray]]:
    """(ModelConfig, flat float32 arrays named by TransformerLens's state-dict keys) of one model.

    Args:
        source: a run directory (``config.json`` and ``params.npz``, or the last checkpoint of a run
            written before params.npz existed); or parameters: a pytree as :func:`toy_models.model.init_params`
            returns it (or a run's, with a leading model axis), or a flat dict with state-dict keys.
        model_index: which model of a run (or of stacked parameters).
        cfg: the :class:`~toy_models.model.ModelConfig`, needed with parameters (a run directory has its own).

    The arrays are the ones the toy's forward pass uses: for one-hot positions, W_E is content-masked.
    """
    from zipfhead.toy_models.model import content_mask
    from zipfhead.toy_models.results import param_arrays

    if isinstance(source, str | Path):
        run, arrays = _run_dir_params(Path(source), model_index)
        cfg = run.model
    else:
        if cfg is None:
            raise ValueError("cfg is None: parameters need their ModelConfig (a run directory carries its own)")
        flat = dict(source) if "embed.W_E" in source else param_arrays(source)
        arrays = {k: np.asarray(v) for k, v in flat.items()}
        arrays = _select(arrays, arrays["embed.W_E"].ndim == 3, model_index)
    arrays = {k: np.array(v, dtype=np.float32) for k, v in arrays.items()}  # copies: writable, owned
    if cfg.positional == "onehot":
        arrays["embed.W_E"] = arrays["embed.W_E"] * np.asarray(content_mask(cfg), dtype=np.float32)
    return cfg, arrays


# --- the HookedTransformer -----------------------------------------------------------------------------------
def _config_kwargs(cfg: Any) -> dict[str, Any]:
    """The HookedTransformerConfig arguments (JSON-ready) of a toy's ModelConfig."""
    return {
        "model_name": "zipfhead-toy",
        "n_layers": cfg.n_layers,
        "n_heads": cfg.n_heads,
        "d_model": cfg.d_model,
        "d_head": cfg.d_head,
        "n_ctx": cfg.n_ctx,
        "d_vocab": cfg.d_vocab,
        "d_vocab_out": cfg.d_vocab_out,
        "attn_only": True,
        "normalization_type": "LN" if cfg.layer_norm else None,
        "eps": 1e-5,
        "positional_embedding_type": "standard",
        "attention_dir": "causal",
        "use_attn_scale": True,
        "attn_scale": math.sqrt(cfg.d_head),
        "default_prepend_bos": False,
        "init_weights": False,
    }


def id_tokenizer(d_vocab: int):
    """A Hugging Face tokenizer for token ids: token i is the word ``str(i)``, words separated by whitespace.

    No BOS is added; ``<|endoftext|>`` (id d_vocab, outside the model's vocabulary) is the end and padding token,
    so padding a batch of unequal strings fails loudly in the embedding instead of reading a real token.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {str(i): i for i in range(d_vocab)} | {EOS: d_vocab}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS)


def token_string(tokens: Any) -> str | list[str]:
    """Token ids as the text :func:`id_tokenizer` reads back: (T,) -> ``"3 7 1"``; (B, T) -> a list of B strings."""
    arr = np.asarray(tokens)
    if arr.ndim == 1:
        return " ".join(str(int(t)) for t in arr)
    if arr.ndim == 2:
        return [" ".join(str(int(t)) for t in row) for row in arr]
    raise ValueError(f"tokens has shape {arr.shape}: expected (T,) or (B, T)")


def _build(kwargs: dict[str, Any], device: str, tokenizer: bool):
    _, HookedTransformer, HookedTransformerConfig = _import_lens()
    with warnings.catch_warnings():  # TransformerLens 3 marks HookedTransformer deprecated (removed in 4)
        warnings.filterwarnings("ignore", message="HookedTransformer is deprecated", category=DeprecationWarning)
        model = HookedTransformer(HookedTransformerConfig(**kwargs, device=device))
    if tokenizer:
        model.set_tokenizer(id_tokenizer(kwargs["d_vocab"]))
    return model


def to_hooked_transformer(
    run_dir_or_params: Any, model_index: int = 0, *, cfg: Any = None, device: str = "cpu", tokenizer: bool = True
):
    """A ``transformer_lens.HookedTransformer`` (attn_only) holding one trained toy's weights.

    Args:
        run_dir_or_params: a run directory of ``zipfhead train``, or parameters (see :func:`load_params`).
        model_index: which of the run's models (seeds x learning rates, in the run's order).
        cfg: the ModelConfig, needed with parameters.
        device: torch device.
        tokenizer: attach :func:`id_tokenizer`, so that strings of token ids (:func:`token_string`) work.

    Every parameter of the model is loaded (checked); logits and attention patterns equal the toy's to float
    precision (the tests check 1e-4 on logits).
    """
    torch, _, _ = _import_lens()
    cfg, arrays = load_params(run_dir_or_params, model_index, cfg=cfg)
    model = _build(_config_kwargs(cfg), device, tokenizer)
    names = {n for n, _ in model.named_parameters()}
    if set(arrays) != names:
        raise ValueError(
            f"parameter names differ: only in the toy {sorted(set(arrays) - names)}, "
            f"only in the HookedTransformer {sorted(names - set(arrays))}"
        )
    state = {k: torch.from_numpy(v) for k, v in arrays.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or names & set(missing):  # only buffers (the causal mask, IGNORE) may be left out
        raise ValueError(f"the weights did not load: missing {missing}, unexpected {unexpected}")
    return model.eval()


# --- vector inputs (in-context classification) ---------------------------------------------------------------
def vector_hooks(model: Any, vectors: Any) -> list[tuple[str, Any]]:
    """Forward hooks that feed vectors (B, T, d_vocab) through the embedding: hook_embed -> vectors @ W_E.

    Run the model on any token ids of shape (B, T) (zeros will do) with these hooks; positions are added after
    the hook as usual.
    """
    torch, _, _ = _import_lens()
    x = torch.as_tensor(np.asarray(vectors, dtype=np.float32)).to(model.cfg.device)
    if x.ndim != 3 or x.shape[-1] != model.cfg.d_vocab:
        raise ValueError(f"vectors has shape {tuple(x.shape)}: expected (B, T, d_vocab = {model.cfg.d_vocab})")

    def embed(_embedded, hook):
        return x @ model.W_E

    return [("hook_embed", embed)]


def run_with_vectors(model: Any, vectors: Any, *, cache: bool = False):
    """Logits (B, T, d_vocab_out) of vector inputs, or (logits, ActivationCache) with ``cache=True``."""
    torch, _, _ = _import_lens()
    B, T = np.shape(vectors)[:2]
    tokens = torch.zeros((B, T), dtype=torch.long, device=model.cfg.device)
    with torch.no_grad(), model.hooks(fwd_hooks=vector_hooks(model, vectors)):
        return model.run_with_cache(tokens) if cache else model(tokens)


# --- files ---------------------------------------------------------------------------------------------------
def export(run_dir: str | Path, out: str | Path | None = None, model_index: int = 0) -> tuple[Path, Path]:
    """Save one model of a run as TransformerLens files: ``out`` (state dict) and ``out`` with suffix .json.

    Default ``out``: ``RUN_DIR/lens_model{model_index}.pt``. Returns the two paths.
    """
    torch, _, _ = _import_lens()
    run_dir = Path(run_dir)
    model = to_hooked_transformer(run_dir, model_index, tokenizer=False)
    cfg, _ = load_params(run_dir, model_index)
    out = Path(out) if out is not None else run_dir / f"lens_model{model_index}.pt"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = out.with_suffix(".json")
    torch.save(model.state_dict(), out)
    info = {
        "hooked_transformer_config": _config_kwargs(cfg),
        "zipfhead": {"run_dir": str(run_dir), "model_index": model_index, "model": cfg.to_dict()},
    }
    meta.write_text(json.dumps(info, indent=2))
    return out, meta


def load_export(path: str | Path, *, device: str = "cpu", tokenizer: bool = True):
    """The HookedTransformer that :func:`export` saved at ``path`` (and ``path`` with suffix .json)."""
    torch, _, _ = _import_lens()
    path = Path(path)
    info = json.loads(path.with_suffix(".json").read_text())
    model = _build(info["hooked_transformer_config"], device, tokenizer)
    model.load_state_dict(torch.load(path, map_location=device, weights_only=True))
    return model.eval()
