"""The named sweeps (presets), the sweep's configuration and grid files, importable without JAX.

:class:`SweepConfig` is a grid of cells x seeds on a base task, model and training config; :func:`preset` builds
the named ones, :func:`load_grid_file` a user's grid from TOML or JSON. :mod:`toy_models.sweep` trains them (and
re-exports these names); the command line offers the names when it builds its parser.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zipfhead.theory._validate import check_real
from zipfhead.theory.distributions import ClassificationTask, MarkovTask, TokenStreamTask, config_from_dict
from zipfhead.theory.schedule import MAX_LR, MAX_WEIGHT_DECAY
from zipfhead.toy_models.config import ModelConfig, RunConfig, TrainConfig, io_shape, shape_signature

__all__ = [
    "CALIBRATION_CELLS",
    "EXPERIMENT_NAMES",
    "PRESETS",
    "SweepConfig",
    "load_grid_file",
    "preset",
]

#: the named sweeps of ``zipfhead sweep --preset`` (the first is the default, ``make demo``'s)
PRESETS = ("demo", "chan2022", "reddy2024", "tokens", "markov", "transience")
#: the control experiments of ``zipfhead experiment`` (built by :data:`toy_models.experiments.EXPERIMENTS`)
EXPERIMENT_NAMES = ("repetition", "recruitment", "recruitment_edge", "narrow")
#: which cells of a sweep calibrate the theory (:meth:`SweepConfig.calibration_cells`; the first is the default)
CALIBRATION_CELLS = ("stratified", "random25", "corners")


TRAIN_AXES = ("lr", "weight_decay")


def _is_integer_field(template: Any) -> bool:
    """Whether a task field whose default is ``template`` takes integers."""
    return isinstance(template, int) and not isinstance(template, bool)


MAX_MODELS_PER_GROUP = 64


@dataclass(frozen=True)
class SweepConfig:
    """A grid of cells x seeds on a base task, model and training config.

    Attributes:
        name: a label (presets use their own name).
        task: the base distribution; each cell replaces the axes' parameters.
        model: the toy (shared by every cell of a group; shapes follow the task).
        train: the optimiser and schedule (``lr`` and ``weight_decay`` may be axes).
        axes: ((parameter name, values), ...): the grid, first axis outermost.
        seeds: seeds per cell.
        calibration: which cells calibrate the theory (:meth:`calibration_cells`): ``stratified`` (the default),
            ``random25`` or ``corners``; every other cell is held out for the scores.
    """

    name: str
    task: ClassificationTask | TokenStreamTask | MarkovTask
    model: ModelConfig
    train: TrainConfig
    axes: tuple[tuple[str, tuple[float, ...]], ...]
    seeds: tuple[int, ...] = (0, 1)
    calibration: str = "stratified"

    def __post_init__(self) -> None:
        if not self.axes:
            raise ValueError("axes = () is empty: a sweep needs at least one axis")
        fields = self.task.to_dict()
        names = [n for n, _ in self.axes]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"axis {twice[0]!r} is given twice: give each axis once")
        for name, values in self.axes:
            if name not in fields and name not in TRAIN_AXES:
                allowed = sorted([k for k in fields if k != "kind"] + list(TRAIN_AXES))
                raise ValueError(f"axis {name!r} is not a parameter of {type(self.task).__name__}: one of {allowed}")
            if isinstance(values, str | bytes) or not isinstance(values, tuple | list) or len(values) == 0:
                raise ValueError(f"axis {name!r} = {values!r} is not allowed: give a non-empty list of numbers")
            integer = _is_integer_field(fields.get(name))
            for v in values:
                if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                    raise ValueError(f"axis {name!r} has the value {v!r}: every value must be a finite number")
                if integer and float(v) != round(v):
                    raise ValueError(f"axis {name!r} has the value {v!r}: {name} is an integer parameter")

        # each value in its parameter's type, however it was written (K = 256.0 in a grid file is K = 256): the
        # CSV, config.json and the report then show one spelling per parameter
        def typed(name: str, v: float) -> int | float:
            return int(v) if _is_integer_field(fields.get(name)) else float(v)

        object.__setattr__(self, "axes", tuple((n, tuple(typed(n, v) for v in vs)) for n, vs in self.axes))
        if self.calibration not in CALIBRATION_CELLS:
            allowed = ", ".join(CALIBRATION_CELLS)
            raise ValueError(f"calibration = {self.calibration!r} is not allowed: one of {allowed}")
        if isinstance(self.seeds, str | bytes) or not isinstance(self.seeds, tuple | list) or not self.seeds:
            raise ValueError(f"seeds = {self.seeds!r} is not allowed: give a non-empty list of seeds")
        for seed in self.seeds:
            if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                raise ValueError(f"seeds has the value {seed!r}: every seed must be a whole number >= 0")
        for cell in self.cells():  # every cell must be valid: fail before training anything
            self.cell_task(cell)
            check_real("lr", self.cell_lr(cell), 0.0, MAX_LR, low_open=True)
            check_real("weight_decay", self.cell_weight_decay(cell), 0.0, MAX_WEIGHT_DECAY)

    @property
    def axis_names(self) -> list[str]:
        return [n for n, _ in self.axes]

    def cells(self) -> list[dict[str, float]]:
        """Every cell as {axis: value}, first axis outermost (C cells)."""
        names = self.axis_names
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(v for _, v in self.axes))]

    def cell_task(self, cell: dict[str, float]) -> ClassificationTask | TokenStreamTask | MarkovTask:
        """The distribution of one cell."""
        fields = {k: v for k, v in self.task.to_dict().items() if k != "kind"}
        for name, value in cell.items():
            if name in fields:
                template = fields[name]
                fields[name] = round(value) if isinstance(template, int) and not isinstance(template, bool) else value
        return type(self.task)(**fields)

    def cell_lr(self, cell: dict[str, float]) -> float:
        """The learning rate of one cell."""
        return float(cell.get("lr", self.train.lr))

    def cell_weight_decay(self, cell: dict[str, float]) -> float:
        """The weight decay of one cell."""
        return float(cell.get("weight_decay", self.train.weight_decay))

    def calibration_cells(self, transitioned: Sequence[bool] | None = None) -> list[int]:
        """Indices of the cells that calibrate the theory; every other cell is held out.

        * ``stratified`` (the default): a quarter of the cells (at least 2), spread over the axes (greedy
          farthest-point selection in grid-index space, from a seeded start), at least 60% of them (as far as
          there are) among the cells in which every seed made a transition (``transitioned``, (C,)), so that the
          time scale rests on several transitions and the phase boundary on cells that make none;
        * ``random25``: a seeded random 25%;
        * ``corners``: the grid's corners.
        """
        C = len(self.cells())
        shape = [len(v) for _, v in self.axes]
        if self.calibration == "random25":
            rng = np.random.default_rng(20261129)
            return sorted(rng.choice(C, size=max(1, C // 4), replace=False).tolist())
        if self.calibration == "corners":
            corners = set()
            for combo in itertools.product(*[(0, n - 1) for n in shape]):
                corners.add(int(np.ravel_multi_index(combo, shape)))
            return sorted(corners)
        made = np.zeros(C, bool) if transitioned is None else np.asarray(transitioned, dtype=bool)
        if made.shape != (C,):
            raise ValueError(f"transitioned has shape {made.shape}: expected one flag per cell, ({C},)")
        n_cal = min(C, max(2, C // 4))
        n_made = min(int(made.sum()), math.ceil(0.6 * n_cal))
        coords = np.stack(np.unravel_index(np.arange(C), shape), axis=1).astype(np.float64)
        coords /= np.maximum(np.array(shape, dtype=np.float64) - 1, 1)
        rng = np.random.default_rng(20261203)
        chosen: list[int] = []

        def spread(pool: np.ndarray, k: int) -> None:
            pool = [int(c) for c in pool if c not in chosen]
            for _ in range(min(k, len(pool))):
                if not chosen:
                    pick = pool[int(rng.integers(len(pool)))]
                else:
                    dist = np.min(np.linalg.norm(coords[pool][:, None] - coords[chosen][None], axis=2), axis=1)
                    pick = pool[int(np.argmax(dist))]
                chosen.append(pick)
                pool.remove(pick)

        spread(np.flatnonzero(made), n_made)
        spread(np.flatnonzero(~made), n_cal - len(chosen))
        spread(np.arange(C), n_cal - len(chosen))  # too few cells without a transition: fill from the rest
        return sorted(chosen)

    def groups(self) -> list[list[int]]:
        """Cells grouped by shape signature (and split to at most MAX_MODELS_PER_GROUP models), in cell order."""
        by_shape: dict[tuple, list[int]] = {}
        for i, cell in enumerate(self.cells()):
            by_shape.setdefault(shape_signature(self.cell_task(cell)), []).append(i)
        per = max(1, MAX_MODELS_PER_GROUP // len(self.seeds))
        out = []
        for cells in by_shape.values():
            out += [cells[k : k + per] for k in range(0, len(cells), per)]
        return out

    def group_run(self, cells: list[int]) -> RunConfig:
        """The RunConfig that trains one group (its model sized to the group's shapes)."""
        all_cells = self.cells()
        tasks = tuple(self.cell_task(all_cells[i]) for i in cells)
        lrs = tuple(self.cell_lr(all_cells[i]) for i in cells) if "lr" in self.axis_names else ()
        wds = tuple(self.cell_weight_decay(all_cells[i]) for i in cells) if "weight_decay" in self.axis_names else ()
        n_ctx, d_vocab, d_vocab_out = io_shape(tasks[0])
        model = dataclasses.replace(self.model, n_ctx=n_ctx, d_vocab=d_vocab, d_vocab_out=d_vocab_out)
        return RunConfig(
            task=tasks[0], model=model, train=self.train, seeds=self.seeds, tasks=tasks, lrs=lrs, weight_decays=wds
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task": self.task.to_dict(),
            "model": self.model.to_dict(),
            "train": dataclasses.asdict(self.train),
            "axes": [[n, list(v)] for n, v in self.axes],
            "seeds": list(self.seeds),
            "calibration": self.calibration,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SweepConfig:
        return cls(
            name=d["name"],
            task=config_from_dict(d["task"]),  # type: ignore[arg-type]
            model=ModelConfig(**d["model"]),
            train=TrainConfig(**d["train"]),
            axes=tuple((n, tuple(v)) for n, v in d["axes"]),
            seeds=tuple(d["seeds"]),
            calibration=d.get("calibration", "random25"),  # a sweep from before ``stratified`` keeps its cells
        )


# --- presets ---------------------------------------------------------------------------------------------------
def _cls_model() -> ModelConfig:
    # shapes are filled per group; onehot positions and a small init, as in the classification reproduction
    return ModelConfig(
        n_ctx=17, d_vocab=32, d_vocab_out=16, n_layers=2, d_model=64, positional="onehot", init_scale=0.3
    )


def preset(name: str, scale: str = "fast") -> SweepConfig:
    """A named sweep. ``scale='full'`` is the GPU-sized variant (more cells, steps and seeds). Most of this
    function's length is the description of each preset below.

    * ``demo`` (the default of ``zipfhead sweep`` and ``make demo``): in-context classification over K x p_B,
      K in {256, ..., 16384} (9 values) x p_B in {0.75, 1} (18 cells) x 2 seeds, D = 16, L = 16, N = 8, B = 2,
      alpha = 0, Adam 6e-3 (twice the reproductions' rate, so that K = 16384 transitions within the budget),
      1500 steps. Designed so that a ranking can be scored: the memorisation edge (K = 256 with i.i.d.
      sequences) inside the grid, and transitions spanning about 3x, from ~300 steps just above the edge to
      ~900-1000 at K = 16384 (the in-context window of ``zipfhead experiment repetition``: the head forms
      fastest just above the memorisation edge and later as K grows). Expected: no head at K = 256 with
      p_B = 0.75, an induction head everywhere else, later for larger K.
    * ``chan2022``: alpha x p_B at K = 8192, alpha in {0, 0.5, 0.75, 1, 1.25, 1.5} (6) x p_B in {0.5, 0.75, 1}
      (18 cells) x 2 seeds, with the demo's optimiser (Adam 6e-3, 1500 steps), so that the demo's calibration
      carries over without an lr transfer. Expected (Chan et al. 2022): in-context learning needs burstiness and
      many rare classes; as alpha grows the effective number of classes falls, the head forms sooner (the
      in-context window's fast edge) and then gives way to in-weights learning; the two coexist near alpha ~ 1.
    * ``reddy2024``: K x B at p_B = 1, K in {64, 256, 1024, 4096, 16384} x B in {1, 2, 4}, with the demo's
      optimiser, and eps as a third axis at full scale. Expected (Reddy 2024): in-context learning rises with
      K, B and eps; in-weights learning at small K.
    * ``tokens``: alpha x V on trigger token streams (2 uniform triggers, uniform outputs, T = 64), alpha in {1,
      1.25, 1.5, 1.75, 2, 2.5} x V in {12, 16} (12 cells) x 2 seeds, 1200 steps, two-layer toys (d_model 64, Adam
      1e-2, batch 32). Designed so that a ranking can be scored: every cell forms its head, at ~100-750 steps.
      Outside this range the measure stops marking a formed head within a budget this size: with a uniform
      background (alpha = 0), or alpha <= 1.25 at V = 32, no head forms within 3000 steps, and alpha 1.5-1.75 at
      V = 32 forms it in one seed and not the other (``proofs_notebooks/data/tokens_wide.json``,
      ``tokens_v16v32.json``). Expected: an induction head in every cell, sooner for a more skewed background and
      for the smaller vocabulary; the token-stream model (:func:`theory.reduced_markov.stream_cases`) ranks the
      cells as the seeds rank each other (notebook 05, section 7).
    * ``markov``: in-context Markov chains (Edelman et al. 2024, :mod:`theory.markov`) over the Zipf exponent of
      the prior's base measure x the prior's concentration, alpha in {0, 1, 2} x beta in {0.5, 1.5, 4} (9 cells) x
      3 seeds, k = 5 states, T = 32, two-layer attention-only toys (d_model 32, learned positions), Adam 3e-3,
      batch 32, 2000 steps, 512 held-out chains per evaluation. The headline is the bigram progress (0 at the
      in-context unigram predictor, 1 at the Bayes bigram predictor) and the transition is the bigram stage's
      onset. beta is the axis that spreads the onset (concentrated rows give the bigram counts more to gain). It
      stops at 4: at beta = 9 the two rungs are ~0.05 nats apart and the toys cover a quarter to a third of that
      gap within 100 steps with no previous-token head yet (a better in-context unigram estimate than the
      prior-smoothed counts), so the progress no longer marks the head. k is not an axis: the onset barely moves
      with it (k = 3, 5, 8 at alpha 0, beta 3, 1500 steps: seed means 427, 387, 431 steps; ``--preset markov --axis
      k=3,5,8 --axis alpha=0 --axis beta=3 --steps 1500``). Expected: every toy
      reaches the unigram rung within ~100 steps and then the bigram stage, soonest for sparse rows (beta = 0.5)
      and a flat base measure, later for larger beta and larger alpha (a skewed base measure leaves the bigram
      counts less to add to the unigram counts).
    * ``transience``: K x weight decay on the in-context path only (``decay_on='attention'``, Nguyen & Reddy
      2025), D = 32, p_B = 0.75, 10000 steps. Expected (Singh et al. 2023; Nguyen & Reddy 2025): without decay an
      induction head that forms stays; with decay on the attention weights, in-context accuracy rises and then
      fades as memorisation (the undecayed direct path) covers the training classes; at small K memorisation
      wins before the head forms, at large K it never catches up. Measured here (fast scale, 9 minutes): at
      K = 512 in-context learning is transient. Without decay one seed forms the head (peak 0.82 at step 1700)
      and loses it to memorisation (0.18 at step 10000, in-weights 0.88) while the other memorises from the
      start; with decay 0.6 both seeds form it (peaks 0.81, 0.77) and it fades to 0.46 and 0.45 as in-weights
      accuracy climbs to 0.5. K = 384 memorises (in-context never above 0.22); K = 768 keeps its head (0.77-0.86
      at step 10000). Decay on the attention weights does not hasten the fade in these toys: in an
      attention-only transformer the heads carry part of the memorisation too (at K = 768 in-weights accuracy
      reaches 0.25 with decay against 0.5 without), so the two paths are not as separate as in the reduced
      model, where this decay erases the circuit once memorisation is done.
    """
    full = scale == "full"
    if scale not in ("fast", "full"):
        raise ValueError(f"scale = {scale!r} is not allowed: scale must be one of fast, full")
    base = ClassificationTask(K=1024, N=8, D=16, L=16, B=2, p_B=1.0, eps=0.1, alpha=0.0)
    train = TrainConfig(lr=3e-3, batch_size=64, steps=2500, eval_every=100, eval_size=256)
    seeds = (0, 1, 2, 3) if full else (0, 1)
    # the demo's optimiser: one calibration carries across these presets without an lr transfer (the toys'
    # transition steps do not scale as 1 / lr, and the memorisation edge moves with lr)
    demo_train = dataclasses.replace(train, lr=6e-3, steps=1500 if not full else 3000)
    if name == "demo":
        Ks = (256, 384, 512, 768, 1024, 2048, 4096, 8192, 16384) if not full else tuple(2**k for k in range(6, 16))
        pBs = (0.75, 1.0) if not full else (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)
        return SweepConfig("demo", base, _cls_model(), demo_train, (("K", Ks), ("p_B", pBs)), seeds)
    if name == "chan2022":
        alphas = (0.0, 0.5, 0.75, 1.0, 1.25, 1.5) if not full else tuple(np.round(np.linspace(0, 3, 13), 3))
        pBs = (0.5, 0.75, 1.0) if not full else tuple(np.round(np.linspace(0, 1, 11), 3))
        task = dataclasses.replace(base, K=8192)
        return SweepConfig("chan2022", task, _cls_model(), demo_train, (("alpha", alphas), ("p_B", pBs)), seeds)
    if name == "reddy2024":
        Ks = (64, 256, 1024, 4096, 16384) if not full else tuple(2**k for k in range(5, 15))
        Bs = (1, 2, 4)
        axes: tuple = (("K", Ks), ("B", Bs))
        if full:
            axes += (("eps", (0.0, 0.1, 0.5, 1.0)),)
        return SweepConfig("reddy2024", base, _cls_model(), demo_train, axes, seeds)
    if name == "tokens":
        task = TokenStreamTask(V=16, T=64, alpha=1.0, n_triggers=2, trigger_dist="uniform", output_dist="uniform")
        model = ModelConfig(n_ctx=63, d_vocab=16, d_vocab_out=16, n_layers=2, n_heads=2, d_model=64)
        tt = TrainConfig(lr=1e-2, batch_size=32, steps=1200 if not full else 20000, eval_every=100, eval_size=256)
        alphas = (1.0, 1.25, 1.5, 1.75, 2.0, 2.5) if not full else (0.0, 0.5, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)
        Vs = (12, 16) if not full else (12, 16, 24, 32)
        return SweepConfig("tokens", task, model, tt, (("alpha", alphas), ("V", Vs)), seeds)
    if name == "markov":
        task = MarkovTask(k=5, T=32, beta=3.0, alpha=0.0)
        model = ModelConfig(n_ctx=31, d_vocab=5, d_vocab_out=5, n_layers=2, d_model=32, positional="learned")
        tt = TrainConfig(lr=3e-3, batch_size=32, steps=2000 if not full else 10000, eval_every=100, eval_size=512)
        alphas = (0.0, 1.0, 2.0) if not full else (0.0, 0.5, 1.0, 1.5, 2.0)
        betas = (0.5, 1.5, 4.0) if not full else (0.5, 1.0, 2.0, 4.0)
        axes_m: tuple = (("alpha", alphas), ("beta", betas))
        if full:
            axes_m += (("k", (3, 5, 8, 16)),)
        return SweepConfig("markov", task, model, tt, axes_m, (0, 1, 2) if not full else (0, 1, 2, 3, 4))
    if name == "transience":
        task = dataclasses.replace(base, D=32, p_B=0.75)
        tt = dataclasses.replace(train, steps=10000 if not full else 50000, decay_on="attention")
        Ks = (384, 512, 768) if not full else (256, 384, 512, 768, 1024, 2048)
        wds = (0.0, 0.6) if not full else (0.0, 0.3, 0.6, 1.0)
        return SweepConfig("transience", task, _cls_model(), tt, (("K", Ks), ("weight_decay", wds)), seeds)
    raise ValueError(f"preset = {name!r} is not allowed: one of {', '.join(PRESETS)}")


def load_grid_file(path: str | Path, base: SweepConfig) -> SweepConfig:
    """A grid from TOML or JSON: ``{"axes": {"K": [64, 256], "p_B": [0.5, 1.0]}, "seeds": [0, 1], ...}``.

    Other top-level keys: ``name``, ``calibration``, ``task`` / ``train`` (dicts of overrides of the base).
    Unknown keys are an error naming them.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"grid file {str(path)!r} does not exist")
    import tomllib

    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        kind = "TOML" if path.suffix == ".toml" else "JSON"
        raise ValueError(f"grid file {str(path)!r} is not valid {kind}: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"grid file {str(path)!r} holds {type(data).__name__}, not a table of axes and settings")
    allowed = {"axes", "seeds", "name", "calibration", "task", "train"}
    unknown = set(data) - allowed
    if unknown:
        raise ValueError(f"grid file {path} has unknown keys {sorted(unknown)}: allowed {sorted(allowed)}")
    axes = data.get("axes")
    if not axes:
        raise ValueError(f"grid file {path} has an empty grid: give at least one axis under 'axes'")
    if not isinstance(axes, dict):
        raise ValueError(f"grid file {path}: axes = {axes!r} is not allowed: give a table of name = [values]")
    overrides = {}
    for section, template in (("task", base.task), ("train", base.train)):
        given = data.get(section, {})
        if not isinstance(given, dict):
            raise ValueError(f"grid file {path}: {section} = {given!r} is not allowed: give a table of overrides")
        known = {f.name for f in dataclasses.fields(template)}
        unknown = sorted(set(given) - known)
        if unknown:
            raise ValueError(f"grid file {path} has unknown keys {unknown} under [{section}]: allowed {sorted(known)}")
        try:
            overrides[section] = dataclasses.replace(template, **given)
        except TypeError as err:  # a value of the wrong type inside the dataclass's own checks
            raise ValueError(f"grid file {path}: [{section}] {err}") from None
    seeds = data.get("seeds", base.seeds)
    return SweepConfig(
        name=data.get("name", path.stem),
        task=overrides["task"],
        model=base.model,
        train=overrides["train"],
        axes=tuple((str(k), tuple(v) if isinstance(v, list | tuple) else v) for k, v in axes.items()),
        seeds=tuple(seeds) if isinstance(seeds, list | tuple) else seeds,
        calibration=data.get("calibration", base.calibration),
    )


# --- running ---------------------------------------------------------------------------------------------------
