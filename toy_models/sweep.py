"""Phase-diagram sweeps: many toys trained as vmapped batches, measured, and set beside the theory's prediction.

A sweep is a grid of *cells* (one value per axis: distribution parameters such as K, p_B, alpha, eps, B, or the
learning rate ``lr``) times seeds. Cells whose arrays have the same shapes (same N, D, L; T, V; or T, k) train together
as one :class:`toy_models.train.RunConfig` with per-cell tasks: one compilation per group of equal shapes, never
one per cell, the model axis split over every JAX device by the engine.

On disk (``RUN_DIR``):

* ``config.json``: the full :class:`SweepConfig` (a rerun with a different config is refused);
* ``groups/gNNN/``: each group's checkpoints (resumable after any interruption, ``kill -9`` included) and, once
  finished, its ``result.npz`` and ``result.json`` (written, then renamed: a group is done iff they exist);
* ``arrays.npz``: ``values`` (cell x seed x measure x step) on the regular evaluation grid, with ``measures``,
  ``steps``, ``seeds``, ``axis_names`` and ``axis_values`` (cell x axis) as coordinates;
* ``summary.csv``: one row per cell and seed (measured and predicted transition step and phase, final accuracies,
  whether the cell calibrated the theory);
* ``theory.json``: the calibration, the prediction for every cell, and the held-out errors;
* ``report.html`` (:mod:`toy_models.report`).

``--shard i/n`` trains groups i, i+n, ... only; ``zipfhead merge`` joins the parts' group results into one run.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zipfhead.theory._io import atomic_write, remove
from zipfhead.theory._validate import check_real
from zipfhead.theory.distributions import ClassificationTask, MarkovTask, TokenStreamTask, config_from_dict
from zipfhead.theory.phases import DIVERGED, FORMED
from zipfhead.theory.predict import LR_MAX, Calibration, calibrate_rows, measured_phase, predict_many
from zipfhead.theory.schedule import Observation
from zipfhead.toy_models.model import ModelConfig
from zipfhead.toy_models.presets import CALIBRATION_CELLS, PRESETS
from zipfhead.toy_models.scores import score_predictions
from zipfhead.toy_models.train import (
    TIMING_PARTS,
    RunConfig,
    TrainConfig,
    data_stream,
    headline_measure,
    shape_signature,
    task_kind,
)

__all__ = [
    "PRESETS",
    "SweepConfig",
    "SweepResult",
    "TheoryComparison",
    "aggregate",
    "compare_theory",
    "finish",
    "load_grid_file",
    "merge",
    "preset",
    "run_sweep",
    "write_arrays",
    "write_summary_csv",
]

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
            check_real("lr", self.cell_lr(cell), 0.0, 1e3, low_open=True)
            check_real("weight_decay", self.cell_weight_decay(cell), 0.0, 10.0)

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
        stream = data_stream(tasks[0], 0)
        model = dataclasses.replace(
            self.model, n_ctx=stream.n_ctx, d_vocab=stream.d_vocab, d_vocab_out=stream.d_vocab_out
        )
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
    """A named sweep. ``scale='full'`` is the GPU-sized variant (more cells, steps and seeds).

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
def _group_dir(out: Path, g: int) -> Path:
    return out / "groups" / f"g{g:03d}"


def _group_done(out: Path, g: int) -> bool:
    d = _group_dir(out, g)
    return (d / "result.json").exists() and (d / "result.npz").exists()


def _remove_leftovers(out: Path) -> None:
    """What a kill can leave that is never data: half-written ``*.tmp`` files (config.json.tmp, a group's
    result.npz.tmp, ...), and the checkpoint of a group whose result is already written (a kill between the result
    and the checkpoint's removal)."""
    for leftover in sorted([*out.glob("*.tmp"), *out.glob("groups/*/*.tmp")]):
        remove(leftover)
    for d in sorted(out.glob("groups/g*")):
        if (d / "result.json").exists() and (d / "result.npz").exists():
            for ckpt in sorted(d.glob("checkpoint*")):
                remove(ckpt)


def _check_config(out: Path, cfg: SweepConfig, overwrite: bool) -> None:
    path = out / "config.json"
    if str(out) in ("", "."):
        raise ValueError(f"--out = {str(out)!r} is not allowed: name a directory for the sweep")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out = {str(out)!r} is a file, not a directory: name a directory for the sweep")
    if out.exists() and overwrite:
        shutil.rmtree(out)
    if out.is_dir():
        _remove_leftovers(out)
    if path.exists():
        old = json.loads(path.read_text())
        try:  # through the dataclass, so that a field added later with its default still matches
            old = json.loads(json.dumps(SweepConfig.from_dict(old).to_dict()))
        except (KeyError, TypeError, ValueError):
            pass
        if old != json.loads(json.dumps(cfg.to_dict())):
            raise ValueError(f"{out} holds a sweep with a different config: use another --out, or --overwrite")
    elif out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not a sweep directory: use another --out, or --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: json.dump(cfg.to_dict(), f, indent=2), mode="w")


def _train_group(cfg: SweepConfig, cells: list[int], d: Path, progress: bool) -> None:
    from zipfhead.toy_models.results import summarise
    from zipfhead.toy_models.train import train

    run = cfg.group_run(cells)
    result = train(run, d, progress=progress)
    summary = summarise(result)
    kept = {k: v for k, v in result.curves.items() if v.ndim == 2}
    for k, v in result.curves.items():
        if v.ndim == 4:  # per-head scores (model, step, layer, head): each layer's best head, as name_l<layer>
            for layer in range(v.shape[2]):
                kept[f"{k}_l{layer}"] = v[:, :, layer].max(axis=-1)
    scalar = sorted(kept)
    buf = io.BytesIO()
    np.savez(
        buf,
        curves=np.stack([kept[k] for k in scalar]),  # (measure, model, step)
        measures=np.asarray(scalar),
        steps=result.steps,
        train_loss=result.train_loss,
    )
    atomic_write(d / "result.npz", lambda f: f.write(buf.getvalue()))
    info = {"cells": cells, "seconds": result.seconds, "summary": summary}
    atomic_write(d / "result.json", lambda f: json.dump(info, f, indent=2), mode="w")
    for ckpt in sorted(d.glob("checkpoint*")):
        remove(ckpt)  # the group is done: its result is the record


def run_sweep(
    cfg: SweepConfig,
    out_dir: str | Path,
    *,
    shard: tuple[int, int] = (0, 1),
    overwrite: bool = False,
    progress: bool = True,
    stop_after_groups: int | None = None,
    calibration: Calibration | None = None,
) -> dict[str, Any] | None:
    """Train every unfinished group of this shard, then (unsharded) aggregate, predict and report.

    Args:
        cfg: the sweep.
        out_dir: the run directory (created; reused to resume).
        shard: (i, n): train groups i, i + n, ... only (no aggregation: ``zipfhead merge`` joins the parts).
        overwrite: discard whatever ``out_dir`` holds.
        progress: show progress bars (groups, and steps within a group).
        stop_after_groups: stop after training this many groups (tests of resumption).
        calibration: predict with these constants instead of fitting them, and score every cell (see
            :func:`finish`); a finished sweep is then scored again.

    Returns:
        The held-out evaluation (see :func:`finish`), or None for a shard.
    """
    i, n = shard
    if not (isinstance(n, int) and n >= 1 and isinstance(i, int) and 0 <= i < n):
        raise ValueError(f"shard = {i}/{n} is out of range: give i/n with 0 <= i < n")
    out = Path(out_dir)
    _check_config(out, cfg, overwrite)
    groups = cfg.groups()
    mine = [g for g in range(len(groups)) if g % n == i]
    todo = [g for g in mine if not _group_done(out, g)]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(mine), initial=len(mine) - len(todo), unit="group", desc=f"sweep {cfg.name}")
    for k, g in enumerate(todo):
        if stop_after_groups is not None and k >= stop_after_groups:
            break
        _train_group(cfg, groups[g], _group_dir(out, g), progress)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if n > 1 or not all(_group_done(out, g) for g in range(len(groups))):
        return None
    done = not todo and (out / "theory.json").exists() and (out / "report.html").exists()
    if done and calibration is None:
        theory = json.loads((out / "theory.json").read_text())
        if not str(theory.get("calibration_note", "")).startswith("given"):
            return theory["scores"]  # finished earlier: nothing to redo
    t0 = time.perf_counter()
    scores = finish(out, calibration)
    write_profile(out, time.perf_counter() - t0)
    return scores


#: the parts of a sweep's wall time in :func:`write_profile` (the training loop's, see ``RunResult.timings``)


def write_profile(out_dir: str | Path, finish_seconds: float) -> dict[str, Any]:
    """``profile.json``: where a finished sweep's wall time went, in seconds: each part of
    :data:`toy_models.train.TIMING_PARTS` summed over the groups' training loops (from their ``result.json``;
    groups trained before timings were recorded are counted in ``untimed_groups``), and ``finish`` (aggregation,
    theory, calibration, report)."""
    out = Path(out_dir)
    parts = dict.fromkeys(TIMING_PARTS, 0.0)
    untimed = 0
    for path in sorted(out.glob("groups/*/result.json")):
        timings = json.loads(path.read_text())["summary"].get("timings")
        if not timings:
            untimed += 1
            continue
        for k in TIMING_PARTS:
            parts[k] += float(timings.get(k, 0.0))
    profile = {"training": parts, "finish": finish_seconds, "untimed_groups": untimed}
    atomic_write(out / "profile.json", lambda f: json.dump(profile, f, indent=2), mode="w")
    return profile


def format_profile(profile: dict[str, Any]) -> str:
    """One line per part of a sweep profile, with its share of the total."""
    rows = [*profile["training"].items(), ("finish", profile["finish"])]
    total = sum(v for _, v in rows) or 1.0
    lines = [f"  {name:<12} {v:8.1f} s {v / total:6.1%}" for name, v in rows]
    note = f" ({profile['untimed_groups']} groups untimed)" if profile.get("untimed_groups") else ""
    return "\n".join([f"where the sweep's {total:.0f} s went{note}:", *lines])


def merge(
    parts: Sequence[str | Path], out_dir: str | Path, *, overwrite: bool = False, calibration: Calibration | None = None
) -> dict[str, Any]:
    """Join the group results of sharded runs of one sweep into ``out_dir``, then aggregate and report."""
    if not parts:
        raise ValueError("parts is empty: give the run directories of the shards")
    cfgs = []
    for p in parts:
        path = Path(p) / "config.json"
        if not path.exists():
            raise ValueError(f"{p} is not a sweep directory (no config.json)")
        cfgs.append(json.loads(path.read_text()))
    if any(c != cfgs[0] for c in cfgs):
        raise ValueError("the parts were made by different sweep configs: they cannot be merged")
    cfg = SweepConfig.from_dict(cfgs[0])
    out = Path(out_dir)
    _check_config(out, cfg, overwrite)
    for p in parts:
        for d in sorted((Path(p) / "groups").glob("g*")):
            target = out / "groups" / d.name
            if (d / "result.json").exists() and not (target / "result.json").exists():
                target.mkdir(parents=True, exist_ok=True)
                for name in ("result.npz", "result.json"):
                    atomic_write(target / name, lambda f, src=d / name: f.write(src.read_bytes()))
    missing = [g for g in range(len(cfg.groups())) if not _group_done(out, g)]
    if missing:
        raise ValueError(f"groups {missing} are in none of the parts: run the missing shards first")
    return finish(out, calibration)


# --- aggregation, theory, report -----------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepResult:
    """A finished sweep's toys, aggregated over its groups: what ``arrays.npz``, ``summary.csv`` and the theory's
    comparison are written from. C cells, S seeds, E regular evaluation steps.

    Attributes:
        config: the sweep.
        measures: the names of the recorded measures (M,).
        steps: (E,) the regular evaluation grid (multiples of eval_every, and the last step).
        values: (C, S, M, E) every measure on that grid.
        measured: (C, S) the measured transition step of each model, NaN where no head formed (or it diverged).
        phases: C lists of S measured phases (:mod:`theory.phases`).
        finals: (C, S, 2) the final headline and in-weights accuracies (0 where the task has no iwl measure).
        diverged: (C, S) bool.
    """

    config: SweepConfig
    measures: list[str]
    steps: np.ndarray
    values: np.ndarray
    measured: np.ndarray
    phases: list[list[str]]
    finals: np.ndarray
    diverged: np.ndarray

    @property
    def headline(self) -> str:
        """The measure whose rise is the transition (:func:`toy_models.train.headline_measure`)."""
        return headline_measure(task_kind(self.config.task))


@dataclass(frozen=True)
class TheoryComparison:
    """The theory beside a sweep: its calibration, a prediction per cell, and the scores on the held-out cells.

    Attributes:
        calibration: the constants used.
        note: how they were obtained (fitted, given, or the packaged fallback and why).
        calibration_cells: the cells fitted on (empty when a calibration was given).
        held_out: the cells scored.
        predictions: C dicts: transition_step, transition_step_closed_form, phase, phase_closed_form.
        scores: :func:`toy_models.scores.score_predictions` on the held-out cells.
    """

    calibration: Calibration
    note: str
    calibration_cells: list[int]
    held_out: list[int]
    predictions: list[dict[str, Any]]
    scores: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The ``theory.json`` layout."""
        keys = ("transition_step", "transition_step_closed_form", "phase", "phase_closed_form")
        return {
            "calibration": dataclasses.asdict(self.calibration),
            "calibration_note": self.note,
            "calibration_cells": self.calibration_cells,
            "held_out_cells": self.held_out,
            "scores": self.scores,
            "predictions": [{k: p[k] for k in keys} for p in self.predictions],
        }


def aggregate(out_dir: str | Path) -> SweepResult:
    """Read a sweep's finished groups (``groups/gNNN/result.*``) into one :class:`SweepResult`, with each model's
    measured phase (:func:`theory.predict.measured_phase`) and transition."""
    out = Path(out_dir)
    cfg = SweepConfig.from_dict(json.loads((out / "config.json").read_text()))
    cells, S = cfg.cells(), len(cfg.seeds)
    regular, measures = None, None
    every: dict[int, np.ndarray] = {}  # cell -> (measure, seed, every evaluated step, dense ones included)
    on_grid: dict[int, np.ndarray] = {}  # cell -> (measure, seed, regular step)
    models: dict[int, list[dict[str, Any]]] = {}  # cell -> its seeds' summaries
    for g, group in enumerate(cfg.groups()):
        d = _group_dir(out, g)
        info = json.loads((d / "result.json").read_text())
        with np.load(d / "result.npz") as z:
            curves, names, steps = z["curves"], [str(m) for m in z["measures"]], z["steps"]
        keep = (steps % cfg.train.eval_every == 0) | (steps == cfg.train.steps)
        regular = steps[keep] if regular is None else regular
        measures = names if measures is None else measures
        for k, cell in enumerate(group):
            every[cell] = curves[:, k * S : (k + 1) * S]
            on_grid[cell] = every[cell][:, :, keep]
            models[cell] = info["summary"]["models"][k * S : (k + 1) * S]
    assert regular is not None and measures is not None
    C = len(cells)
    values = np.stack([np.moveaxis(on_grid[c], 0, 1) for c in range(C)])  # (C, S, measure, step)
    headline = headline_measure(task_kind(cfg.task))
    iwl_name = "iwl_acc" if "iwl_acc" in measures else None
    measured = np.full((C, S), np.nan)
    phases = [["neither"] * S for _ in range(C)]
    finals = np.zeros((C, S, 2))
    diverged = np.zeros((C, S), dtype=bool)
    for c in range(C):
        task = cfg.cell_task(cells[c])
        for s in range(S):
            icl = every[c][measures.index(headline), s]
            iwl_final = float(every[c][measures.index(iwl_name), s, -1]) if iwl_name else 0.0
            finals[c, s] = (float(icl[-1]), iwl_final)
            diverged[c, s] = bool(models[c][s].get("diverged", False))
            # a diverged model has no phase, no transition, no say in the calibration and no place in the scores
            phases[c][s] = DIVERGED if diverged[c, s] else measured_phase(task, icl, iwl_final)
            tr = models[c][s]["transition_step"]
            if tr is not None and phases[c][s] in FORMED:
                measured[c, s] = float(tr)
    return SweepResult(cfg, measures, regular, values, measured, phases, finals, diverged)


def compare_theory(result: SweepResult, label: str, calibration: Calibration | None = None) -> TheoryComparison:
    """Calibrate the theory on the sweep's designated cells (or take ``calibration``), predict every cell, and
    score the others. ``label`` names the fit's source (the run directory's name)."""
    cfg, S = result.config, len(result.config.seeds)
    cells = cfg.cells()
    C = len(cells)
    tasks = [cfg.cell_task(c) for c in cells]
    lrs = [cfg.cell_lr(c) for c in cells]
    wds = [cfg.cell_weight_decay(c) for c in cells]
    if calibration is not None:
        cal, calib, note = calibration, [], f"given: {calibration.source}"
    else:
        calib = cfg.calibration_cells(np.all(np.isfinite(result.measured), axis=1))
        rows = []
        for c in calib:
            for s in range(S):
                if result.diverged[c, s] or lrs[c] > LR_MAX:
                    continue
                tr = None if math.isnan(result.measured[c, s]) else float(result.measured[c, s])
                schedule = dataclasses.replace(cfg.train.schedule, lr=float(lrs[c]), weight_decay=float(wds[c]))
                rows.append(Observation(tasks[c], schedule, tr))
        try:
            cal = calibrate_rows(rows, source=f"{label}: cells {calib}")
            note = "fitted on the calibration cells"
        except ValueError as err:
            from zipfhead.theory.predict import load_calibration

            cal = load_calibration()
            note = f"packaged calibration ({err})"
    # the theory's range of learning rates is narrower than the toys': cells outside it are not predicted
    in_range = [c for c in range(C) if lrs[c] <= LR_MAX]
    none = {"transition_step": None, "transition_step_closed_form": None, "phase": "", "phase_closed_form": None}
    preds: list[dict[str, Any]] = [none] * C
    if in_range:
        predicted = predict_many(
            [tasks[c] for c in in_range],
            lr=[lrs[c] for c in in_range],
            steps=cfg.train.steps,
            optimizer=cfg.train.optimizer,
            batch_size=cfg.train.batch_size,
            weight_decay=[wds[c] for c in in_range],
            decay_on=cfg.train.decay_on,
            n_layers=cfg.model.n_layers,
            calibration=cal,
        )
        for c, p in zip(in_range, predicted, strict=True):
            preds[c] = p
    held = [c for c in range(C) if c not in calib and c in in_range]
    scores = score_predictions(
        held, result.measured, result.phases, [p["transition_step"] for p in preds], [p["phase"] for p in preds]
    )
    return TheoryComparison(cal, note, calib, held, preds, scores)


def write_arrays(out_dir: str | Path, result: SweepResult) -> None:
    """``arrays.npz``: the values on the regular grid with their coordinates (see the module docstring)."""
    cfg = result.config
    axis_values = np.array([[cell[n] for n in cfg.axis_names] for cell in cfg.cells()], dtype=np.float64)
    buf = io.BytesIO()
    np.savez(
        buf,
        values=result.values,
        measures=np.asarray(result.measures),
        steps=result.steps,
        seeds=np.asarray(cfg.seeds),
        axis_names=np.asarray(cfg.axis_names),
        axis_values=axis_values,
    )
    atomic_write(Path(out_dir) / "arrays.npz", lambda f: f.write(buf.getvalue()))


def write_summary_csv(out_dir: str | Path, result: SweepResult, theory: TheoryComparison) -> None:
    """``summary.csv``: one row per cell and seed, the toys' measurements beside the theory's prediction."""
    cfg = result.config
    cells = cfg.cells()
    buf = io.StringIO()
    writer = csv.writer(buf)
    head = ["cell", *cfg.axis_names, "seed", "calibration_cell", "measured_transition_step", "measured_phase"]
    writer.writerow(
        [*head, f"final_{result.headline}", "final_iwl_acc", "predicted_transition_step", "predicted_phase", "diverged"]
    )
    for c, cell in enumerate(cells):
        pred = theory.predictions[c]
        for s, seed in enumerate(cfg.seeds):
            m, pt = result.measured[c, s], pred["transition_step"]
            writer.writerow(
                [
                    c,
                    *[cell[n] for n in cfg.axis_names],
                    seed,
                    int(c in theory.calibration_cells),
                    "" if math.isnan(m) else f"{m:.1f}",
                    result.phases[c][s],
                    f"{result.finals[c, s, 0]:.4f}",
                    f"{result.finals[c, s, 1]:.4f}",
                    "" if pt is None else f"{pt:.1f}",
                    pred["phase"],
                    int(result.diverged[c, s]),
                ]
            )
    atomic_write(Path(out_dir) / "summary.csv", lambda f: f.write(buf.getvalue()), mode="w")


def finish(out_dir: str | Path, calibration: Calibration | None = None) -> dict[str, Any]:
    """Aggregate the finished groups of a sweep (:func:`aggregate`), set the theory beside them
    (:func:`compare_theory`: calibrate on the designated cells, predict every cell, score the held-out ones), and
    write arrays.npz, theory.json, summary.csv and report.html. Returns the held-out scores.

    With ``calibration`` given (``zipfhead sweep --calibration FILE``) nothing is fitted: every cell is predicted
    with those constants and every cell is scored."""
    out = Path(out_dir)
    result = aggregate(out)
    write_arrays(out, result)
    theory = compare_theory(result, out.name, calibration)
    atomic_write(out / "theory.json", lambda f: json.dump(theory.to_dict(), f, indent=2), mode="w")
    write_summary_csv(out, result, theory)

    from zipfhead.toy_models.report import write_report

    write_report(out)
    return theory.scores
