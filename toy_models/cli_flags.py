"""The command line's shared flags: the distribution flags every command takes, and ``train``'s model and training
flags (of which ``predict`` takes only those the theory reads). Imported by the command modules, never the other
way round; no JAX.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from theory.schedule import Schedule as S

__all__ = ["THEORY_FLAGS", "add_distribution_flags", "add_train_flags", "task_from_args", "tasks_from_args"]

# --- distribution flags ----------------------------------------------------------------------------------------
_CLASSIFICATION_FLAGS = ("K", "N", "D", "L", "B", "p_B", "p_C", "eps", "alpha", "q", "label_map")
_TOKEN_FLAGS = ("V", "T", "alpha", "q", "n_triggers", "trigger_dist", "output_dist")
_MARKOV_FLAGS = ("k", "T", "beta", "alpha", "q")


def _flag(parser: argparse.ArgumentParser, name: str, kind: type, help_: str) -> None:
    spellings = [f"--{name}"]
    if "_" in name:
        spellings.append(f"--{name.replace('_', '-')}")
    parser.add_argument(*spellings, dest=name, type=kind, default=None, help=help_)


def add_distribution_flags(parser: argparse.ArgumentParser) -> None:
    """The distribution flags shared by every command (defaults: the configs' own)."""
    g = parser.add_argument_group("distribution (symbols of the glossary in theory.distributions)")
    _flag(g, "K", int, "number of classes (classification) [512]")
    _flag(g, "N", int, "context item-label pairs [8]")
    _flag(g, "D", int, "item dimension [63]")
    _flag(g, "L", int, "number of labels [32]")
    _flag(g, "B", int, "burstiness: copies of each class in a bursty context, divides N [2]")
    _flag(g, "p_B", float, "fraction of bursty sequences [0.9]")
    _flag(g, "p_C", float, "fraction of novel-class sequences [0]")
    _flag(g, "eps", float, "within-class noise [0.1]")
    _flag(g, "alpha", float, "Zipf exponent, >= 0 [1; Markov chains: 0]")
    _flag(g, "q", float, "Zipf-Mandelbrot shift, >= 0 [0]")
    _flag(g, "label_map", str, "known classes' labels: fixed (k mod L) or per_sequence (redrawn each sequence) [fixed]")
    _flag(g, "V", int, "token-stream vocabulary size [64]")
    _flag(g, "T", int, "sequence length [token streams 256, Markov chains 64]")
    _flag(g, "n_triggers", int, "triggers per token stream [1]")
    _flag(g, "trigger_dist", str, "trigger distribution: zipf or uniform [zipf]")
    _flag(g, "output_dist", str, "output-token distribution: zipf or uniform [uniform]")
    _flag(g, "k", int, "Markov-chain states [8]")
    _flag(g, "beta", float, "Markov-chain prior concentration: rows ~ Dirichlet(beta p) [8]")


def _pick(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def tasks_from_args(args: argparse.Namespace):
    """(ClassificationTask, TokenStreamTask) from the flags; unset flags keep the configs' defaults. The
    Markov-only flags (``--k``, ``--beta``) are checked too, whatever the task: a bad value is an error even where
    the command would not use it."""
    from theory.distributions import ClassificationTask, MarkovTask, TokenStreamTask

    MarkovTask(**_pick(args, ("k", "beta")))
    return ClassificationTask(**_pick(args, _CLASSIFICATION_FLAGS)), TokenStreamTask(**_pick(args, _TOKEN_FLAGS))


def task_from_args(args: argparse.Namespace):
    """The distribution that ``--task`` (classification, tokens or markov) and its flags describe."""
    cls_task, tok_task = tasks_from_args(args)
    if args.task == "markov":
        from theory.distributions import MarkovTask

        return MarkovTask(**_pick(args, _MARKOV_FLAGS))
    return cls_task if args.task == "classification" else tok_task


# --- model and training flags ---------------------------------------------------------------------------------------
#: the model and optimiser flags the theory reads (``zipfhead predict`` takes these and no others)
THEORY_FLAGS = frozenset({"task", "n_layers", "optimizer", "lr", "weight_decay", "decay_on", "batch_size", "steps"})


def add_train_flags(parser: argparse.ArgumentParser, theory_only: bool = False) -> None:
    """The model and training flags of ``zipfhead train``; with ``theory_only``, only :data:`THEORY_FLAGS` (the
    reduced model has no widths, heads, momentum, evaluation schedule or seeds: a flag it would ignore is not
    offered)."""

    def keep(name: str) -> bool:
        return not theory_only or name in THEORY_FLAGS

    parser.add_argument("--task", choices=("classification", "tokens", "markov"), default="classification")
    g = parser.add_argument_group("model")
    model_flags = [
        ("n_layers", int, "attention layers [2]"),
        ("n_heads", int, "heads per layer [1]"),
        ("d_model", int, "residual width [64]"),
        ("d_head", int, "head width [d_model / n_heads]"),
    ]
    for name, kind, help_ in model_flags:
        if keep(name):
            _flag(g, name, kind, help_)
    if not theory_only:
        g.add_argument("--layer_norm", "--layer-norm", action="store_true", help="pre-attention layer norm")
        _flag(g, "positional", str, "learned or onehot [onehot for classification, learned for tokens]")
        _flag(g, "init_scale", float, "initial weights' std times sqrt(d_model) [0.8, TransformerLens's]")
    g = parser.add_argument_group("training")
    _flag(g, "optimizer", str, f"adam or sgd [{S.optimizer}]")
    _flag(g, "lr", float, f"learning rate [{S.lr:g}]")
    if not theory_only:
        g.add_argument(
            "--lrs", type=float, nargs="+", default=None, help="several learning rates: one model per lr x seed"
        )
        _flag(g, "momentum", float, "sgd momentum [0.9]")
        _flag(g, "beta2", float, "Adam's second-moment decay: a memory of 1 / (1 - beta2) steps [0.999]")
    _flag(g, "weight_decay", float, f"decoupled weight decay (per step: lr x weight_decay) [{S.weight_decay:g}]")
    _flag(g, "decay_on", str, f"which weights decay: all, or attention (the in-context path only) [{S.decay_on}]")
    train_flags = [
        ("warmup_steps", int, "linear warm-up steps [0]"),
        ("batch_size", int, f"sequences per step [{S.batch_size}]"),
        ("steps", int, f"training steps [{S.steps}]"),
        ("eval_every", int, "steps between evaluations [100]"),
        ("eval_size", int, "sequences per evaluation set [512]"),
        ("sampler", str, "where training batches are drawn: host (Numba) or device (JAX, in the chunk) [host]"),
    ]
    for name, kind, help_ in train_flags:
        if keep(name):
            _flag(g, name, kind, help_)
    parser.add_argument("--json", action="store_true", help="print summary.json" if not theory_only else "print JSON")
    if theory_only:
        return
    g.add_argument("--seeds", type=int, nargs="+", default=[0], help="one model per seed, trained as one batch [0]")
    parser.add_argument("--out", default="runs/train", help="output directory [runs/train]")
    parser.add_argument("--overwrite", action="store_true", help="discard results already in --out")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
