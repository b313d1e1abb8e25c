"""What passes between the halves: the training schedule the theory reads from a toy, and one trained toy as the
calibration sees it.

:class:`toy_models.train.TrainConfig` takes its defaults from :class:`Schedule` and hands one out
(:attr:`toy_models.train.TrainConfig.schedule`); ``zipfhead predict`` builds one from its flags. The toys' other
training settings (momentum, Adam's beta2, warm-up, evaluation, sampler) do not enter the reduced models. An
:class:`Observation` (a task, its schedule and its measured transition) is a row of
:func:`theory.predict.calibrate_rows`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from zipfhead.theory._validate import check_choice, check_int, check_real
from zipfhead.theory.distributions import ClassificationTask, MarkovTask, TokenStreamTask

__all__ = ["DECAY_ON", "LR_MAX", "MAX_LR", "MAX_WEIGHT_DECAY", "OPTIMIZERS", "Observation", "Schedule"]

#: the optimisers: ``adam`` (AdamW when weight_decay > 0) or ``sgd`` (with momentum)
OPTIMIZERS = ("adam", "sgd")
#: which weights decay: ``all``, or ``attention`` (the heads only: the in-context path)
DECAY_ON = ("all", "attention")
#: the largest learning rate and weight decay a schedule takes (every config that sets one checks against these)
MAX_LR, MAX_WEIGHT_DECAY = 1e3, 10.0
#: the largest learning rate the theory predicts for (a flow-time horizon of tau x lr x steps: far past what the
#: reduced model was fitted on; the toys diverge long before)
LR_MAX = 10.0


@dataclass(frozen=True)
class Schedule:
    """Optimiser, learning rate, horizon, batch and decoupled weight decay.

    Attributes:
        optimizer: adam (AdamW when weight_decay > 0) or sgd (with momentum); :data:`OPTIMIZERS`.
        lr: learning rate, in (0, 1000].
        steps: training steps (the horizon), >= 1.
        batch_size: sequences per step, >= 1.
        weight_decay: decoupled weight decay (per step the weights shrink by lr x weight_decay), in [0, 10].
        decay_on: which weights decay: all, or attention (the heads only: the in-context path); :data:`DECAY_ON`.
    """

    optimizer: str = "adam"
    lr: float = 3e-3
    steps: int = 2000
    batch_size: int = 64
    weight_decay: float = 0.0
    decay_on: str = "all"

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "optimizer", check_choice("optimizer", self.optimizer, OPTIMIZERS))
        set_(self, "lr", check_real("lr", self.lr, 0.0, MAX_LR, low_open=True))
        set_(self, "steps", check_int("steps", self.steps, 1, 10**9))
        set_(self, "batch_size", check_int("batch_size", self.batch_size, 1, 1 << 20))
        set_(self, "weight_decay", check_real("weight_decay", self.weight_decay, 0.0, MAX_WEIGHT_DECAY))
        set_(self, "decay_on", check_choice("decay_on", self.decay_on, DECAY_ON))

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (the keyword arguments of :func:`theory.predict.predict_many`)."""
        return asdict(self)


@dataclass(frozen=True)
class Observation:
    """One trained toy as the calibration sees it.

    Attributes:
        task: its distribution.
        schedule: how it was trained (``steps``: the steps it trained for).
        transition: its measured transition step, or None where no head formed by the end (a transition counts
            only for a toy that ended with the circuit formed), > 0.
    """

    task: ClassificationTask | TokenStreamTask | MarkovTask
    schedule: Schedule
    transition: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.task, ClassificationTask | TokenStreamTask | MarkovTask):
            raise ValueError(
                f"task = {self.task!r} is not allowed: a ClassificationTask, TokenStreamTask or MarkovTask"
            )
        if not isinstance(self.schedule, Schedule):
            raise ValueError(f"schedule = {self.schedule!r} is not allowed: schedule must be a Schedule")
        if self.transition is not None:
            object.__setattr__(self, "transition", check_real("transition", self.transition, 0.0, 1e12))
