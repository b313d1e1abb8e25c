"""The toys' configurations, importable without JAX: the model's shape (:class:`ModelConfig`), the optimiser,
schedule and evaluation (:class:`TrainConfig`), a run of M models (:class:`RunConfig`), and each kind of toy's
headline measure (:func:`headline_measure`).
:mod:`toy_models.model` and :mod:`toy_models.train` re-export them; the command line builds its flags from their
fields and docstrings, and the presets (:mod:`toy_models.presets`) are built from them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from zipfhead.theory._validate import check_choice, check_int, check_real
from zipfhead.theory.distributions import ClassificationTask, MarkovTask, TokenStreamTask, config_from_dict
from zipfhead.theory.schedule import MAX_LR, MAX_WEIGHT_DECAY, Schedule

__all__ = [
    "POSITIONAL",
    "SAMPLERS",
    "ModelConfig",
    "RunConfig",
    "TrainConfig",
    "headline_measure",
    "io_shape",
    "shape_signature",
    "task_kind",
]

#: the position codes: ``learned`` absolute positions, or ``onehot`` fixed one-hot directions (Reddy 2024)
POSITIONAL = ("learned", "onehot")


@dataclass(frozen=True)
class ModelConfig:
    """An attention-only transformer.

    Args:
        n_layers: attention layers, 1..16 (1 and 2 are the cases studied).
        n_heads: heads per layer.
        d_model: residual stream width.
        d_head: per-head width (default d_model // n_heads).
        n_ctx: context length (positions).
        d_vocab: input vocabulary (token ids) or input vector width.
        d_vocab_out: number of output classes (tokens or labels).
        layer_norm: pre-attention and final layer norm.
        positional: ``learned`` absolute positions, or ``onehot``: fixed one-hot position directions in the
            last n_ctx residual dimensions, the embedded content in the others (Reddy 2024's concatenation of
            content and one-hot position; needs d_model > n_ctx).
        init_scale: standard deviation of the initial weights is init_scale / sqrt(d_model) (TransformerLens
            uses 0.8).
    """

    n_ctx: int
    d_vocab: int
    d_vocab_out: int
    n_layers: int = 2
    n_heads: int = 1
    d_model: int = 64
    d_head: int | None = None
    layer_norm: bool = False
    positional: str = "learned"
    init_scale: float = 0.8

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "n_ctx", check_int("n_ctx", self.n_ctx, 1, 1 << 16))
        set_(self, "d_vocab", check_int("d_vocab", self.d_vocab, 1, 1 << 24))
        set_(self, "d_vocab_out", check_int("d_vocab_out", self.d_vocab_out, 2, 1 << 24))
        set_(self, "n_layers", check_int("n_layers", self.n_layers, 1, 16))
        set_(self, "n_heads", check_int("n_heads", self.n_heads, 1, 64))
        set_(self, "d_model", check_int("d_model", self.d_model, 1, 1 << 14))
        if self.d_head is None:
            set_(self, "d_head", max(1, self.d_model // self.n_heads))
        set_(self, "d_head", check_int("d_head", self.d_head, 1, 1 << 14))
        set_(self, "positional", check_choice("positional", self.positional, POSITIONAL))
        set_(self, "init_scale", check_real("init_scale", self.init_scale, 0.0, 100.0, low_open=True))
        if self.positional == "onehot" and self.d_model <= self.n_ctx:
            raise ValueError(
                f"d_model = {self.d_model} is too small for one-hot positions: d_model must exceed n_ctx = {self.n_ctx}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dataclasses.asdict(self)


#: where training batches are drawn: ``host`` (the Numba samplers, streamed in by chunk) or ``device`` (the JAX
#: twins of :mod:`toy_models.device_samplers`, inside the compiled chunk; classification and token streams)
SAMPLERS = ("host", "device")


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser, schedule and evaluation.

    Args:
        optimizer: ``adam`` (AdamW when weight_decay > 0) or ``sgd`` (with momentum).
        lr: learning rate (a run may give each model its own, see :class:`RunConfig`).
        momentum: SGD momentum.
        beta2: Adam's second-moment decay; its memory is 1 / (1 - beta2) steps (1000 at the default 0.999, as
            long as the presets' whole horizon: the early, large gradients still weigh on every step then).
        weight_decay: decoupled weight decay (per step the weights shrink by lr x weight_decay, as in AdamW).
        decay_on: which weights decay: ``all``, or ``attention`` (the heads' Q, K, V, O weights and biases only:
            the in-context path, leaving the embedding-unembedding path that memorises free, as in Nguyen &
            Reddy 2025, where decay on the in-context path makes in-context learning transient).
        warmup_steps: linear warm-up of the learning rate over this many steps (0: none).
        batch_size: sequences per step.
        steps: training steps.
        eval_every: steps between evaluations (dense phases: eval_every / dense_factor).
        dense_factor: how much denser evaluations get while the measures move fast.
        eval_size: sequences in each evaluation set.
        sampler: where training batches are drawn (:data:`SAMPLERS`): ``host``, the Numba samplers (the default,
            and the faster on a CPU), or ``device``, their JAX twins inside the compiled chunk (for accelerators:
            no per-step generation and transfer on the host). The two draw from the same laws with different
            random streams, so their numbers differ; evaluation sets come from the host samplers in both.
    """

    optimizer: str = Schedule.optimizer
    lr: float = Schedule.lr
    momentum: float = 0.9
    beta2: float = 0.999
    weight_decay: float = Schedule.weight_decay
    decay_on: str = Schedule.decay_on
    warmup_steps: int = 0
    batch_size: int = Schedule.batch_size
    steps: int = Schedule.steps
    eval_every: int = 100
    dense_factor: int = 4
    eval_size: int = 512
    sampler: str = "host"

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "sampler", check_choice("sampler", self.sampler, SAMPLERS))
        # the schedule's fields are validated (and normalised) by the one record the theory also reads
        for name, value in self.schedule.to_dict().items():
            set_(self, name, value)
        set_(self, "momentum", check_real("momentum", self.momentum, 0.0, 1.0))
        set_(self, "beta2", check_real("beta2", self.beta2, 0.0, 1.0 - 1e-7))  # 1: v never moves from 0
        set_(self, "warmup_steps", check_int("warmup_steps", self.warmup_steps, 0, 10**9))
        set_(self, "dense_factor", check_int("dense_factor", self.dense_factor, 1, 64))
        set_(self, "eval_every", check_int("eval_every", self.eval_every, self.dense_factor, 10**9))
        if self.eval_every % self.dense_factor:
            raise ValueError(
                f"eval_every = {self.eval_every} is not a multiple of dense_factor = {self.dense_factor}: "
                f"eval_every must be a multiple of {self.dense_factor}"
            )
        set_(self, "eval_size", check_int("eval_size", self.eval_size, 1, 1 << 20))

    @property
    def schedule(self) -> Schedule:
        """What the theory reads of this config (:class:`theory.schedule.Schedule`)."""
        return Schedule(self.optimizer, self.lr, self.steps, self.batch_size, self.weight_decay, self.decay_on)

    @property
    def chunk(self) -> int:
        """Steps per compiled chunk (the dense evaluation spacing)."""
        return self.eval_every // self.dense_factor


_KIND_OF = {ClassificationTask: "classification", TokenStreamTask: "tokens", MarkovTask: "markov"}


def task_kind(task: ClassificationTask | TokenStreamTask | MarkovTask) -> str:
    """``classification``, ``tokens`` or ``markov``: the kind of toy a task trains."""
    return _KIND_OF[type(task)]


def headline_measure(kind: str) -> str:
    """The measure whose rise marks the transition: ICL accuracy, accuracy on induction positions, or (Markov
    chains) the progress from the unigram rung to the Bayes bigram predictor."""
    return {"classification": "icl_acc", "tokens": "induction_acc", "markov": "bigram_progress"}[kind]


def shape_signature(task: ClassificationTask | TokenStreamTask | MarkovTask) -> tuple[int, ...]:
    """The task parameters that fix array shapes: (N, D, L), (T, V) or (T, k)."""
    if isinstance(task, ClassificationTask):
        return (task.N, task.D, task.L)
    return (task.T, task.V) if isinstance(task, TokenStreamTask) else (task.T, task.k)


def io_shape(task: ClassificationTask | TokenStreamTask | MarkovTask) -> tuple[int, int, int]:
    """(n_ctx, d_vocab, d_vocab_out) of the toy that trains on ``task``: in-context classification reads 2N + 1
    positions of D + L input dimensions and answers one of L labels; token streams and Markov chains read T - 1
    tokens of V (or k) and predict the next."""
    if isinstance(task, ClassificationTask):
        return 2 * task.N + 1, task.D + task.L, task.L
    n = task.V if isinstance(task, TokenStreamTask) else task.k
    return task.T - 1, n, n


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run: task, model, training, and the models' seeds and learning rates.

    Without ``tasks`` the run trains one model per (lr, seed) pair, lrs outermost: model m has seed seeds[m % S]
    and learning rate lrs[m // S]; ``lrs`` empty means every model uses ``train.lr``.

    With ``tasks`` (a sweep's cells: distributions that share ``task``'s shapes and kind) the run trains one model
    per (cell, seed), cells outermost: model m has task tasks[m // S] and seed seeds[m % S]; ``lrs`` is then
    empty or holds one learning rate per cell, and ``weight_decays`` likewise (empty: ``train.weight_decay``).
    ``task`` stays the template that fixes the shapes.
    """

    task: ClassificationTask | TokenStreamTask | MarkovTask
    model: ModelConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    seeds: tuple[int, ...] = (0,)
    lrs: tuple[float, ...] = ()
    tasks: tuple[ClassificationTask | TokenStreamTask | MarkovTask, ...] = ()
    weight_decays: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("seeds = () is empty: give at least one seed")
        for s in self.seeds:
            check_int("seed", s, 0, 2**63 - 1)
        for lr in self.lrs:
            check_real("lrs", lr, 0.0, MAX_LR, low_open=True)
        for wd in self.weight_decays:
            check_real("weight_decays", wd, 0.0, MAX_WEIGHT_DECAY)
        if self.weight_decays and len(self.weight_decays) != len(self.tasks):
            raise ValueError(
                f"weight_decays has {len(self.weight_decays)} values for {len(self.tasks)} tasks: give none or one "
                "per task"
            )
        if self.tasks:
            if self.lrs and len(self.lrs) != len(self.tasks):
                raise ValueError(
                    f"lrs has {len(self.lrs)} values for {len(self.tasks)} tasks: give none or one per task"
                )
            for t in self.tasks:
                if type(t) is not type(self.task) or shape_signature(t) != shape_signature(self.task):
                    raise ValueError(
                        f"task {t} does not share the template's kind and shapes {shape_signature(self.task)}"
                    )
        if self.train.sampler == "device" and self.kind == "markov":
            raise ValueError(
                "sampler = 'device' is not available for Markov tasks: it must be 'host' (the device samplers cover "
                "classification and token streams)"
            )
        want = io_shape(self.task)
        got = (self.model.n_ctx, self.model.d_vocab, self.model.d_vocab_out)
        if want != got:
            raise ValueError(f"model (n_ctx, d_vocab, d_vocab_out) = {got} does not fit the task: expected {want}")

    @property
    def kind(self) -> str:
        """``classification``, ``tokens`` or ``markov``."""
        return task_kind(self.task)

    @property
    def model_lrs(self) -> list[float]:
        """Learning rate of each model."""
        lrs = self.lrs or (self.train.lr,) * max(1, len(self.tasks))
        return [lr for lr in lrs for _ in self.seeds]

    @property
    def model_weight_decays(self) -> list[float]:
        """Weight decay of each model."""
        wds = self.weight_decays or (self.train.weight_decay,) * max(1, len(self.tasks) or len(self.lrs))
        return [wd for wd in wds for _ in self.seeds]

    @property
    def model_seeds(self) -> list[int]:
        """Seed of each model."""
        return list(self.seeds) * max(1, len(self.tasks) or len(self.lrs))

    @property
    def model_tasks(self) -> list[ClassificationTask | TokenStreamTask | MarkovTask]:
        """Distribution of each model."""
        if self.tasks:
            return [t for t in self.tasks for _ in self.seeds]
        return [self.task] * len(self.model_seeds)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (inverse: :meth:`from_dict`)."""
        return {
            "task": self.task.to_dict(),
            "model": self.model.to_dict(),
            "train": dataclasses.asdict(self.train),
            "seeds": list(self.seeds),
            "lrs": list(self.lrs),
            "tasks": [t.to_dict() for t in self.tasks],
            "weight_decays": list(self.weight_decays),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """Rebuild a run config from :meth:`to_dict`'s output."""
        return cls(
            task=config_from_dict(d["task"]),  # type: ignore[arg-type]
            model=ModelConfig(**d["model"]),
            train=TrainConfig(**d["train"]),
            seeds=tuple(d["seeds"]),
            lrs=tuple(d["lrs"]),
            tasks=tuple(config_from_dict(t) for t in d.get("tasks", ())),  # type: ignore[misc]
            weight_decays=tuple(d.get("weight_decays", ())),
        )
