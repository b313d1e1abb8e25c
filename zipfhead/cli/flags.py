"""The command line's shared flags: the distribution flags every command takes, and ``train``'s model and training
flags (of which ``predict`` takes only those the theory reads). Imported by the command modules, never the other
way round; no JAX.

Every flag that sets a config field is generated from that field: its type and default from the dataclass, its
help from the ``Args:`` (or ``Attributes:``) section of the class's docstring. Nothing here retypes a default.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import re
from collections.abc import Sequence
from typing import Any

from zipfhead.theory.distributions import ClassificationTask, MarkovTask, TokenStreamTask
from zipfhead.theory.schedule import LR_MAX, Schedule
from zipfhead.toy_models.config import ModelConfig, TrainConfig

__all__ = [
    "MODEL_FLAGS",
    "THEORY_FLAGS",
    "TRAIN_FLAGS",
    "add_config_flags",
    "add_distribution_flags",
    "add_train_flags",
    "field_docs",
    "pick",
    "task_from_args",
    "tasks_from_args",
]

_CLASSIFICATION_FLAGS = tuple(f.name for f in dataclasses.fields(ClassificationTask))
_TOKEN_FLAGS = tuple(f.name for f in dataclasses.fields(TokenStreamTask))
_MARKOV_FLAGS = tuple(f.name for f in dataclasses.fields(MarkovTask))
#: how a default is labelled when the configs that share a flag disagree on it
_OWNER_NAMES = {ClassificationTask: "classification", TokenStreamTask: "token streams", MarkovTask: "Markov chains"}
_TYPES = {"int": int, "float": float, "str": str}


def _plain(text: str) -> str:
    """Docstring markup as plain text: ``x`` -> x, :role:`a.b.C` -> C."""
    text = re.sub(r"\s*\(:data:`[^`]+`\)|;\s*:data:`[^`]+`", "", text)  # "(:data:`SAMPLERS`)": the code's name
    text = re.sub(r":\w+:`~?(?:[\w.]*\.)?([\w]+)`", r"\1", text)
    return text.replace("``", "")


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Each field's description in the ``Args:`` or ``Attributes:`` section of ``cls``'s docstring (Google style:
    ``name: text``, continuation lines indented further), as plain text, first sentence only."""
    docs: dict[str, str] = {}
    name, section = None, False
    for line in (inspect.getdoc(cls) or "").splitlines():
        if line.strip() in ("Args:", "Attributes:"):
            section = True
            continue
        if not section:
            continue
        entry = re.match(r"^    (\w+): (.*)$", line)
        if entry:
            name, docs[entry.group(1)] = entry.group(1), entry.group(2)
        elif name is not None and line.startswith("        "):
            docs[name] += " " + line.strip()
        else:  # a blank line or the next section ends this one
            name, section = None, False
    return {k: re.split(r"(?<=[.;])\s+(?=[A-Z(])", _plain(v), maxsplit=1)[0].rstrip(".;") for k, v in docs.items()}


def add_config_flags(parser: Any, configs: Sequence[type], names: Sequence[str], notes: dict[str, str] | None = None):
    """One flag per field ``name`` of the dataclasses ``configs`` (the first that has it gives its type and help).

    Every flag defaults to None (a switch to False), so that an unset flag keeps the config's own default; the help
    shows that default
    in brackets (each config's where they differ), or ``notes[name]`` where the command has a rule of its own.
    Boolean fields become switches (``--name`` sets True).
    """
    notes = notes or {}
    for name in names:
        owners = [c for c in configs if name in {f.name for f in dataclasses.fields(c)}]
        if not owners:
            raise ValueError(f"no config among {[c.__name__ for c in configs]} has a field {name!r}")
        fields = [next(f for f in dataclasses.fields(c) if f.name == name) for c in owners]
        help_ = field_docs(owners[0]).get(name, name.replace("_", " "))
        defaults = [f.default for f in fields]
        if name in notes:
            help_ += f" [{notes[name]}]"
        elif len(set(defaults)) == 1 and defaults[0] is not None and defaults[0] is not False:
            help_ += f" [{defaults[0]:g}]" if isinstance(defaults[0], float) else f" [{defaults[0]}]"
        elif len(set(defaults)) > 1:
            each = (f"{_OWNER_NAMES.get(c, c.__name__)} {d:g}" for c, d in zip(owners, defaults, strict=True))
            help_ += f" [{', '.join(each)}]"
        spellings = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
        kind = str(fields[0].type).split(" | ")[0]
        if kind == "bool":
            parser.add_argument(*spellings, dest=name, action="store_true", help=help_)
        else:
            parser.add_argument(*spellings, dest=name, type=_TYPES[kind], default=None, help=help_)


def add_distribution_flags(parser: argparse.ArgumentParser) -> None:
    """The distribution flags shared by every command (defaults: the configs' own)."""
    g = parser.add_argument_group("distribution (symbols of the glossary in theory.distributions)")
    configs = (ClassificationTask, TokenStreamTask, MarkovTask)
    names = dict.fromkeys((*_CLASSIFICATION_FLAGS, *_TOKEN_FLAGS, *_MARKOV_FLAGS))
    add_config_flags(g, configs, list(names))


def pick(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """The flags among ``names`` that were given (not None), by name: the keyword arguments of a config."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def tasks_from_args(args: argparse.Namespace):
    """(ClassificationTask, TokenStreamTask) from the flags; unset flags keep the configs' defaults. The
    Markov-only flags (``--k``, ``--beta``) are checked too, whatever the task: a bad value is an error even where
    the command would not use it."""
    MarkovTask(**pick(args, ("k", "beta")))
    return ClassificationTask(**pick(args, _CLASSIFICATION_FLAGS)), TokenStreamTask(**pick(args, _TOKEN_FLAGS))


def task_from_args(args: argparse.Namespace):
    """The distribution that ``--task`` (classification, tokens or markov) and its flags describe."""
    cls_task, tok_task = tasks_from_args(args)
    if args.task == "markov":
        return MarkovTask(**pick(args, _MARKOV_FLAGS))
    return cls_task if args.task == "classification" else tok_task


# --- model and training flags ---------------------------------------------------------------------------------------
#: the model and optimiser flags the theory reads (``zipfhead predict`` takes these and no others)
THEORY_FLAGS = frozenset({"task", "n_layers", *(f.name for f in dataclasses.fields(Schedule))})
#: the model's and the optimiser's fields that ``zipfhead train`` takes as flags
MODEL_FLAGS = ("n_layers", "n_heads", "d_model", "d_head", "layer_norm", "positional", "init_scale")
TRAIN_FLAGS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name != "dense_factor")
#: the defaults that ``zipfhead train`` sets by a rule of its own (see toy_commands.run_config_from_args)
_TRAIN_NOTES = {
    "positional": "onehot for classification, learned otherwise",
    "d_model": f"{ModelConfig.d_model}; with onehot positions at least n_ctx + 32",
}


def add_train_flags(parser: argparse.ArgumentParser, theory_only: bool = False) -> None:
    """The model and training flags of ``zipfhead train``; with ``theory_only``, only :data:`THEORY_FLAGS` (the
    reduced model has no widths, heads, momentum, evaluation schedule or seeds: a flag it would ignore is not
    offered)."""

    def keep(names: Sequence[str]) -> list[str]:
        return [n for n in names if not theory_only or n in THEORY_FLAGS]

    parser.add_argument("--task", choices=("classification", "tokens", "markov"), default="classification")
    add_config_flags(parser.add_argument_group("model"), [ModelConfig], keep(MODEL_FLAGS), _TRAIN_NOTES)
    g = parser.add_argument_group("training")
    # predict's schedule is the theory's own record (the same fields, defaults and help as TrainConfig's)
    notes = {"lr": f"{Schedule.lr:g}; the theory predicts for lr <= {LR_MAX:g}"} if theory_only else None
    add_config_flags(g, [Schedule] if theory_only else [TrainConfig], keep(TRAIN_FLAGS), notes)
    if not theory_only:
        g.add_argument(
            "--lrs", type=float, nargs="+", default=None, help="several learning rates: one model per lr x seed"
        )
    parser.add_argument("--json", action="store_true", help="print summary.json" if not theory_only else "print JSON")
    if theory_only:
        return
    g.add_argument("--seeds", type=int, nargs="+", default=[0], help="one model per seed, trained as one batch [0]")
    parser.add_argument("--out", default="runs/train", help="output directory [runs/train]")
    parser.add_argument("--overwrite", action="store_true", help="discard results already in --out")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
