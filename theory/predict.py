"""Predictions for a trained toy: transition step and phase from the data's statistics and four constants.

The reduced models (:mod:`theory.reduced_v2` for in-context classification, :mod:`theory.reduced` for token
streams) run in gradient-flow time. Four calibration constants map them onto a toy trained by zipfhead
(:class:`Calibration`, stored as JSON; the packaged default is ``calibration.json`` beside this module, fitted on
the runs named in its ``source`` field):

* ``time_scale`` (tau): flow time per unit of learning rate x training steps. Needed because the toy's induction
  circuit is a product of several weight matrices and Adam rescales gradients, so one optimiser step moves the
  reduced strengths by tau x lr, not lr.
* ``iw_speed`` (rho): the in-weights channel's clock relative to the induction channel's. Needed because the
  direct path (embedding -> unembedding) has a different effective learning rate from the two-layer circuit.
* ``kappa``: the in-weights capacity in units of the second-order estimate D L. Needed because that estimate
  (Gaussian interference of a linear read-out, expanded to second order) is a bound, and the toy's read-out also
  uses the positional and label dimensions of its residual stream.
* ``leak`` (v2 only): the logit noise an untrained item read-out puts on every label, per unit of the item
  features' squared scale; with nothing to memorise it is what pulls the item features down.

``init`` (theta0, the initial previous-token and match strength) is not fitted: at initialisation a label token
attends roughly uniformly over the ~N + 1 earlier positions, so the weight on its own item is about 1 / (N + 1) ~
0.1, the documented default.

Phases at the training horizon (shared with the sweep): in-context learning has *formed* when the novel-class
accuracy proxy reaches half-way from B/N (the copy plateau) to 1, and has *faded* when it formed but ends below that;
in-weights learning has formed when the in-weights accuracy proxy reaches 1/2.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zipfhead.theory._io import atomic_write
from zipfhead.theory._validate import check_int, check_real
from zipfhead.theory.closed_form import phases_closed_form
from zipfhead.theory.closed_form_v2 import escape_v2
from zipfhead.theory.distributions import ClassificationTask, MarkovTask, TokenStreamTask
from zipfhead.theory.phases import PHASES, phase_from
from zipfhead.theory.reduced import ReducedParams
from zipfhead.theory.reduced_markov import MarkovCases, integrate_markov, markov_cases, stream_cases
from zipfhead.theory.reduced_markov import closed_form as closed_form_mixture
from zipfhead.theory.reduced_v2 import CasesV2, ParamsV2, cases_v2, integrate_v2
from zipfhead.theory.schedule import LR_MAX, MAX_WEIGHT_DECAY, Observation, Schedule
from zipfhead.theory.transition import curve_phase_flags

__all__ = [
    "DEFAULT_CALIBRATION",
    "IWL_THRESHOLD",
    "LR_MAX",
    "Calibration",
    "calibrate_rows",
    "icl_threshold",
    "load_calibration",
    "measured_phase",
    "phase_grid",
    "predict",
    "predict_many",
    "reduced_params",
    "theory_threshold",
]

#: in-weights accuracy at which in-weights learning counts as formed (chance is 1 / L)
IWL_THRESHOLD = 0.5
DEFAULT_CALIBRATION = Path(__file__).with_name("calibration.json")
#: distinct distributions from which every constant is fitted; with 3 to 7, time_scale, iw_speed and spread are
#: (kappa and leak keep the packaged values), with fewer only time_scale: a handful of cells cannot pin five
#: constants (the demo's 4 calibration cells alone picked iw_speed = 1, kappa = 16)
FULL_FIT_DISTRIBUTIONS = 8
#: the grid for v2's circuit noise spread (:class:`theory.reduced_v2.ParamsV2`), fitted from 3 distinct
#: distributions on: it is what sets how much the burstiness (B, p_B) moves the transition, so cells that vary the
#: burstiness pin it, and toys that all share one (the repetition sweeps, p_B = 1, B = 2) do not (their best fits at
#: these four values differ by 0.017 in rms log residual, 0.216-0.233)
SPREADS = (10.0, 30.0, 100.0, 300.0)


#: bigram progress at which a Markov toy's statistical induction head counts as formed: a quarter of the way from
#: the unigram rung to the Bayes predictor. The markov preset's toys (attention-only, one head per layer) end at
#: 0.47-0.80 of that way and the reduced model's single-head mixture plateaus at 0.31-0.69 (notebook 05): the head
#: has formed well before either plateau, and a one-layer toy on the unigram rung stays within 0.11 of 0.
MARKOV_FORMED = 0.25


def icl_threshold(task: ClassificationTask | TokenStreamTask | MarkovTask) -> float:
    """The toys' headline measure's level at which the induction circuit counts as formed: for classification,
    half-way from the copy plateau to 1; for token streams, induction accuracy 0.5; for Markov chains, bigram
    progress :data:`MARKOV_FORMED`."""
    if isinstance(task, ClassificationTask):
        return 0.5 * (1.0 + task.B / task.N)
    if isinstance(task, MarkovTask):
        return MARKOV_FORMED
    return 0.5


def measured_phase(
    task: ClassificationTask | TokenStreamTask | MarkovTask, icl_curve: np.ndarray, iwl_final: float
) -> str:
    """A toy's phase from its in-context curve ((E,) on its evaluation grid, the one rule of
    :mod:`theory.transition` at :func:`icl_threshold`) and its final in-weights accuracy (formed at
    :data:`IWL_THRESHOLD`)."""
    formed, faded = curve_phase_flags(np.asarray(icl_curve, dtype=np.float64), icl_threshold(task))
    return phase_from(formed, iwl_final >= IWL_THRESHOLD, faded)


def theory_threshold(task: ClassificationTask | TokenStreamTask | MarkovTask) -> float:
    """The same level on the reduced model's tracked curve: :func:`icl_threshold`, except for token streams, whose
    model tracks the loss progress of :mod:`theory.reduced_markov` (as the Markov chains' does), not an accuracy:
    :data:`MARKOV_FORMED` there too."""
    return MARKOV_FORMED if isinstance(task, TokenStreamTask) else icl_threshold(task)


@dataclass(frozen=True)
class Calibration:
    """The constants that map the reduced model onto trained toys (see the module docstring).

    Attributes:
        time_scale: tau, flow time per (learning rate x step), > 0.
        iw_speed: rho, in-weights clock relative to the induction clock, > 0.
        kappa: in-weights capacity in units of D L, > 0.
        leak: the untrained read-out's logit-noise variance per unit item-feature gain squared (reduced model v2,
            :class:`theory.reduced_v2.ParamsV2`), >= 0.
        spread: the circuit's Adam noise per unit of the data's sensitivity to the match (reduced model v2,
            :class:`theory.reduced_v2.ParamsV2`), > 0.
        init: theta0, initial previous-token and match strength, > 0 (documented, not fitted).
        residuals: log(measured / predicted transition step) of the runs the fit used.
        source: what the constants were fitted on (run directories, or a note).
    """

    time_scale: float = 1.0
    iw_speed: float = 10.0
    kappa: float = 1.0
    init: float = 0.1
    leak: float = 0.2
    spread: float = 30.0
    residuals: tuple[float, ...] = field(default_factory=tuple)
    source: str = "uncalibrated defaults"

    def __post_init__(self) -> None:
        check_real("time_scale", self.time_scale, 0.0, 1e9, low_open=True)
        check_real("init", self.init, 0.0, 10.0, low_open=True)
        check_real("iw_speed", self.iw_speed, 0.0, 1e6, low_open=True)
        check_real("kappa", self.kappa, 0.0, 1e6, low_open=True)
        check_real("leak", self.leak, 0.0, 1e3)
        check_real("spread", self.spread, 0.0, 1e9, low_open=True)
        res = self.residuals
        if isinstance(res, str | bytes) or not isinstance(res, tuple | list):
            raise ValueError(f"residuals = {res!r} is not allowed: give a list of numbers")
        if any(isinstance(r, bool) or not isinstance(r, int | float) for r in res):
            raise ValueError(f"residuals = {list(res)!r} is not allowed: every residual must be a number")
        if not isinstance(self.source, str):
            raise ValueError(f"source = {self.source!r} is not allowed: give a string")
        object.__setattr__(self, "residuals", tuple(float(r) for r in res))

    def to_json(self, path: str | Path) -> None:
        """Write the constants as JSON (write, then rename)."""
        atomic_write(path, lambda f: f.write(json.dumps(asdict(self), indent=2) + "\n"), mode="w")


def load_calibration(path: str | Path | None = None, *, label: str | None = None) -> Calibration:
    """Read a calibration file (default: the packaged one), or the fitted constants of a sweep's ``theory.json``
    (their ``source`` then starts with ``label``, default the path as given). Unknown keys are an error naming
    them."""
    path = DEFAULT_CALIBRATION if path is None else Path(path)
    if not path.exists():
        raise ValueError(f"calibration = {str(path)!r} does not exist: give a file written by zipfhead calibrate")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"calibration = {str(path)!r} is not a JSON calibration file: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"calibration = {str(path)!r} holds {type(data).__name__}, not a JSON object")
    if "calibration" in data and "scores" in data:  # a sweep's theory.json: its fitted constants
        data = data["calibration"]
        if not isinstance(data, dict):
            raise ValueError(f"calibration = {str(path)!r}: its 'calibration' entry is not a JSON object")
        data = data | {"source": f"{path if label is None else label} ({data.get('source', '')})"}
    allowed = {f for f in Calibration.__dataclass_fields__}
    unknown = set(data) - allowed
    if unknown:
        raise ValueError(f"calibration file {path} has unknown keys {sorted(unknown)}: allowed {sorted(allowed)}")
    return Calibration(**data)


def _params(
    task: ClassificationTask | TokenStreamTask | MarkovTask,
    cal: Calibration,
    weight_decay: float,
    optimizer: str,
    batch: int,
    decay_on: str = "all",
    n_layers: int = 2,
) -> ReducedParams:
    """The reduced model's parameters for one toy: v2's (:class:`ParamsV2`) for classification, v1's for token streams
    and Markov chains (their model, :mod:`theory.reduced_markov`, reads init, optimizer, batch and the circuit's decay
    rate)."""
    common = {
        # one layer cannot build the previous-token step: a = b = 0 is then a fixed point (the copy plateau)
        "init": cal.init if n_layers >= 2 else 0.0,
        "iw_speed": cal.iw_speed,
        "kappa": cal.kappa,
        "weight_decay": weight_decay / cal.time_scale,
        "decay_on": decay_on,
        "optimizer": "adam" if optimizer == "adam" else "gd",
        "batch": batch,
    }
    if isinstance(task, ClassificationTask):
        return ParamsV2(D=task.D, leak=cal.leak, spread=cal.spread, **common)
    return ReducedParams(D=1, **common)


def reduced_params(
    task: ClassificationTask | TokenStreamTask | MarkovTask,
    calibration: Calibration | None = None,
    schedule: Schedule | None = None,
    n_layers: int = 2,
) -> ReducedParams:
    """The reduced model's parameters for a toy trained on ``task`` with ``schedule`` (default: :class:`Schedule`'s
    defaults), under ``calibration`` (default: the packaged file): :class:`theory.reduced_v2.ParamsV2` for
    classification, :class:`theory.reduced.ReducedParams` otherwise. What :func:`predict_many` integrates."""
    cal = load_calibration() if calibration is None else calibration
    sch = Schedule() if schedule is None else schedule
    return _params(task, cal, sch.weight_decay, sch.optimizer, sch.batch_size, sch.decay_on, n_layers)


def _cases(task: ClassificationTask | TokenStreamTask | MarkovTask):
    if isinstance(task, ClassificationTask):
        return cases_v2(task)
    if isinstance(task, TokenStreamTask):
        return stream_cases(task)
    if isinstance(task, MarkovTask):
        return markov_cases(task)
    raise ValueError(f"task = {task!r} is not allowed: a ClassificationTask, TokenStreamTask or MarkovTask")


def _integrate(cells: list[tuple[Any, ReducedParams, np.ndarray]], rtol: float, recruitment: bool = True) -> list[Any]:
    """Trajectories of (cases, params, t_out) cells, in order: v2 cells (classification) and the single-head
    mixture's cells (Markov chains and token streams), each model's cells integrated as one parallel batch."""
    out: list[Any] = [None] * len(cells)

    def kind(cs: Any) -> str:
        if isinstance(cs, CasesV2):
            return "v2"
        if isinstance(cs, MarkovCases):
            return "markov"
        raise ValueError(f"cases of type {type(cs).__name__} have no reduced model here")

    for model in ("v2", "markov"):
        idx = [i for i, (cs, _, _) in enumerate(cells) if kind(cs) == model]
        if not idx:
            continue
        part = [cells[i] for i in idx]
        if model == "v2":
            trajs = integrate_v2(part, rtol=rtol, recruitment=recruitment)
        else:
            trajs = integrate_markov(
                [(cs, p.init, _noise_floor(p), p.decay_rates()[0], t) for cs, p, t in part], rtol=rtol
            )
        for i, tr in zip(idx, trajs, strict=True):
            out[i] = tr
    return out


def _noise_floor(params: ReducedParams) -> float:
    """Adam's noise floor of the single-head mixture's flow, as v2's: 1 / batch in units of the expected loss's
    gradient (0: gradient flow, for SGD)."""
    return 1.0 / params.batch if params.optimizer == "adam" else 0.0


def predict_many(
    tasks: list[ClassificationTask | TokenStreamTask | MarkovTask],
    *,
    lr: float | list[float],
    steps: int,
    optimizer: str = Schedule.optimizer,
    batch_size: int = Schedule.batch_size,
    weight_decay: float | list[float] = Schedule.weight_decay,
    decay_on: str = Schedule.decay_on,
    n_layers: int = 2,
    calibration: Calibration | None = None,
    closed_form: bool = True,
    n_times: int = 60,
    rtol: float = 1e-4,
    recruitment: bool = True,
) -> list[dict[str, Any]]:
    """Predict transition step and phase for many distributions at once (one Numba-parallel integration).

    Args:
        tasks: the distributions (n,).
        lr: the toy's learning rate (one, or one per task).
        steps: training steps (the horizon).
        optimizer: ``adam`` (Adam's normalised flow) or ``sgd`` (gradient flow; momentum is not modelled).
        batch_size: sequences per step (Adam's noise floor).
        weight_decay: the optimiser's decoupled weight decay (one, or one per task), as AdamW's: the weights
            shrink by lr x weight_decay per step. A step is lr x tau of flow time, so the flow's decay rate is
            weight_decay / tau, whatever lr.
        decay_on: ``all`` or ``attention`` (only the circuit decays; the in-weights logits do not), as the toy's
            :class:`toy_models.train.TrainConfig`.
        n_layers: the toy's attention layers. One layer forms no induction head (Olsson et al. 2022): the reduced
            model then starts at a = b = 0, a fixed point, and stays on the copy plateau (phase iwl or neither).
        calibration: the constants (default: the packaged calibration file).
        closed_form: also give the closed-form transition step (classification: v2's escape,
            :func:`theory.closed_form_v2.escape_v2`, under Adam without weight decay, else v1's closed form; Markov
            chains and token streams: :func:`theory.reduced_markov.closed_form`, without weight decay) and, for
            classification, v1's closed-form phase. v2's escape does not carry the recruitment rule: where the
            integration says memorisation holds the heads, it still gives the step the circuit would have escaped.
        n_times: output times on a geometric grid up to the horizon.
        rtol: the integrator's relative tolerance (1e-4: transition times to ~0.1%; 1e-3: ~1%).
        recruitment: classification: memorisation takes the heads where it predicts the known classes at least as
            well as the copy plateau when the circuit would escape (:func:`theory.reduced_v2.integrate_v2`);
            False gives v2 without that rule (an ablation).

    Returns:
        One dict per task: ``transition_step`` (float, or None when the head does not form), ``phase``,
        ``transition_step_closed_form`` (see ``closed_form``), ``phase_closed_form`` (classification),
        ``icl_accuracy`` and ``iwl_accuracy`` at the horizon (proxies), ``icl_max``, and ``inputs``.
    """
    if not tasks:
        raise ValueError("tasks is empty: give at least one distribution")
    cal = load_calibration() if calibration is None else calibration
    steps = check_int("steps", steps, 1)
    lrs = [check_real("lr", v, 0.0, LR_MAX, low_open=True) for v in _per_task("lr", lr, len(tasks))]
    wds = [
        check_real("weight_decay", v, 0.0, MAX_WEIGHT_DECAY)
        for v in _per_task("weight_decay", weight_decay, len(tasks))
    ]
    check_int("n_times", n_times, 4)
    horizons = [cal.time_scale * v * steps for v in lrs]
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer = {optimizer!r} is not allowed: optimizer must be one of adam, sgd")
    check_int("batch_size", batch_size, 1)
    n_layers = check_int("n_layers", n_layers, 1, 64)
    params = [_params(t, cal, wd, optimizer, batch_size, decay_on, n_layers) for t, wd in zip(tasks, wds, strict=True)]
    cells = []
    for task, prm, h in zip(tasks, params, horizons, strict=True):
        t = np.concatenate([[0.0], np.geomspace(h * 1e-4, h, n_times - 1)])
        cells.append((_cases(task), prm, t))
    trajectories = _integrate(cells, rtol, recruitment)
    if closed_form:
        closed, closed_phase = _closed_forms(tasks, cells, horizons, wds)
    else:
        closed, closed_phase = np.full(len(tasks), np.nan), [None] * len(tasks)
    out = []
    for i, (task, tr) in enumerate(zip(tasks, trajectories, strict=True)):
        per_step = cal.time_scale * lrs[i]
        closed_step = None if math.isnan(closed[i]) else float(closed[i]) / per_step
        inputs = {
            **task.to_dict(),
            "lr": lrs[i],
            "steps": steps,
            "optimizer": optimizer,
            "batch_size": batch_size,
            "weight_decay": wds[i],
            "decay_on": decay_on,
            "n_layers": n_layers,
            "recruitment": recruitment,
            "calibration": asdict(cal) | {"residuals": len(cal.residuals)},
        }
        out.append(_prediction(task, tr, per_step, horizons[i], closed_step, closed_phase[i], inputs))
    return out


def _per_task(name: str, value: float | list[float], n: int) -> list[float]:
    """One value per task: a scalar repeated n times, or a list of exactly n."""
    values = [value] * n if np.isscalar(value) else list(value)  # type: ignore[list-item]
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} values for {n} tasks: give one, or one per task")
    return values


def _closed_forms(tasks: list, cells: list, horizons: list[float], wds: list[float]) -> tuple[np.ndarray, list]:
    """The closed-form transition (flow time, NaN where none within the horizon) and phase of every task
    (see :func:`predict_many`'s ``closed_form``): v1's phase and step, v2's escape where it holds (Adam, no
    decay), and the single-head mixture's closed form for Markov chains and token streams (no decay)."""
    closed = np.full(len(tasks), np.nan)
    closed_phase: list[str | None] = [None] * len(tasks)
    params = [prm for _, prm, _ in cells]
    cls = [i for i, t in enumerate(tasks) if isinstance(t, ClassificationTask)]
    if cls:
        times, phases = phases_closed_form([tasks[i] for i in cls], [params[i] for i in cls], np.array(horizons)[cls])
        closed[cls] = times
        for i, ph in zip(cls, phases, strict=True):
            closed_phase[i] = ph
            if params[i].optimizer == "adam" and isinstance(params[i], ParamsV2) and wds[i] == 0:
                # v2's own closed form (theory.closed_form_v2) replaces v1's step where it holds (Adam, no decay)
                escape = escape_v2(tasks[i], params[i]).time
                closed[i] = escape if escape <= horizons[i] else math.nan
    for i, (cs, prm, _) in enumerate(cells):
        if isinstance(cs, MarkovCases) and prm.init > 0 and wds[i] == 0:
            cf = closed_form_mixture(cs, prm.init, _noise_floor(prm))
            # the phase rule on the closed form's own curve: formed when the plateau reaches the threshold in time
            if cf.time is not None and cf.time <= horizons[i] and cf.plateau >= theory_threshold(tasks[i]):
                closed[i] = cf.time
    return closed, closed_phase


def _prediction(task, tr, per_step: float, horizon: float, closed_step, closed_phase, inputs) -> dict[str, Any]:
    """One task's prediction from its integrated trajectory ``tr`` (flow time / ``per_step`` = training steps)."""
    thr = theory_threshold(task)
    icl = tr.icl[np.isfinite(tr.icl)]
    iwl_final = float(tr.iwl[-1]) if tr.iwl.size and np.isfinite(tr.iwl[-1]) else 0.0
    formed, faded = curve_phase_flags(icl, thr, smooth=1, final_window=1)  # the toys' rule, noise-free
    return {
        # the half-rise of a curve that never reaches the phase threshold (a one-layer toy's rise to the copy
        # plateau at B / N) is not an induction head's transition
        "transition_step": None if tr.transition is None or not formed else tr.transition / per_step,
        "transition_step_closed_form": closed_step,
        "phase": phase_from(formed, iwl_final >= IWL_THRESHOLD, faded),
        "phase_closed_form": closed_phase,
        "icl_accuracy": float(icl[-1]) if icl.size else math.nan,
        "icl_max": float(icl.max()) if icl.size else math.nan,
        "iwl_accuracy": iwl_final,
        "horizon_flow_time": horizon,
        "inputs": inputs,
    }


def predict(task: ClassificationTask | TokenStreamTask | MarkovTask, **kwargs: Any) -> dict[str, Any]:
    """Predict one distribution; see :func:`predict_many`."""
    return predict_many([task], **kwargs)[0]


def phase_grid(
    base: ClassificationTask | TokenStreamTask | MarkovTask,
    x: tuple[str, np.ndarray],
    y: tuple[str, np.ndarray],
    **kwargs: Any,
) -> dict[str, Any]:
    """The theory's phase diagram over two parameters of ``base``.

    Args:
        base: the distribution whose other parameters stay fixed.
        x, y: (parameter name, values) of the two axes (nx,), (ny,).
        **kwargs: as :func:`predict_many` (lr, steps, ...); by default rtol = 1e-3 and 24 output times (a grid
            wants many cells more than 0.1% precision: transition times are then within ~1%).

    Returns:
        Labelled arrays of shape (ny, nx): ``transition_step`` and ``transition_step_closed_form`` (NaN: none),
        ``phase`` (indices into :data:`theory.phases.PHASES`), ``icl_accuracy``, ``iwl_accuracy``; coordinates
        ``x``, ``y`` and their names ``x_name``, ``y_name``.
    """
    (xn, xv), (yn, yv) = x, y
    fields = {k: v for k, v in base.to_dict().items() if k != "kind"}
    for name in (xn, yn):
        if name not in fields:
            raise ValueError(f"grid parameter {name!r} is not a parameter of {type(base).__name__}: {sorted(fields)}")
    xv, yv = np.asarray(xv), np.asarray(yv)
    tasks = []
    for vy in yv:
        for vx in xv:
            d = dict(fields)
            d[xn] = _typed(fields[xn], vx)
            d[yn] = _typed(fields[yn], vy)
            tasks.append(type(base)(**d))
    kwargs = {"rtol": 1e-3, "n_times": 24} | kwargs
    res = predict_many(tasks, **kwargs)
    shape = (yv.size, xv.size)

    def grab(key: str) -> np.ndarray:
        return np.array([np.nan if r[key] is None else r[key] for r in res], dtype=np.float64).reshape(shape)

    return {
        "x_name": xn,
        "y_name": yn,
        "x": xv,
        "y": yv,
        "transition_step": grab("transition_step"),
        "transition_step_closed_form": grab("transition_step_closed_form"),
        "phase": np.array([PHASES.index(r["phase"]) for r in res]).reshape(shape),
        "icl_accuracy": grab("icl_accuracy"),
        "iwl_accuracy": grab("iwl_accuracy"),
    }


def _typed(template: Any, value: Any) -> Any:
    return round(float(value)) if isinstance(template, int) and not isinstance(template, bool) else float(value)


def calibrate_rows(
    rows: list[Observation],
    *,
    kappas: np.ndarray | None = None,
    iw_speeds: np.ndarray | None = None,
    spreads: np.ndarray | None = None,
    source: str = "",
) -> Calibration:
    """Fit (time_scale, iw_speed, kappa, leak, spread) to trained toys given as :class:`theory.schedule.Observation`
    rows, by least squares on log transition steps (a transition step counts only for toys that ended with the
    circuit formed; ``zipfhead calibrate`` reads them from run directories, :func:`toy_models.runs.calibrate_runs`).

    For each candidate (kappa, iw_speed, leak, spread) on a log grid the reduced model's flow-time transition t_i
    of every distinct distribution is integrated (one parallel batch); the best time_scale is then explicit, log tau =
    mean(log t_i - log lr_i - log step_i) over the toys that made a transition, and the candidate with the smallest
    cost wins: the sum of squared log residuals, plus 4 (a factor e^2 miss) for every toy whose outcome the
    candidate gets wrong (a transition predicted within the toy's training steps where the toy made none, or the
    reverse). With fewer than three distinct distributions only time_scale is fitted (the others keep the packaged
    values): they are not identifiable from one or two; with fewer than :data:`FULL_FIT_DISTRIBUTIONS`,
    time_scale, iw_speed and spread (on :data:`SPREADS`; kappa and leak keep the packaged values); with more, all
    five (leak on the grid 0.05, 0.1, 0.2, 0.4). The flow's decay rate weight_decay / tau uses the packaged tau
    (tau is fitted after the integration, which must not depend on it; with decay it does, weakly, and the packaged
    value is the best guess at hand).

    Args:
        rows: the trained toys.
        kappas, iw_speeds, spreads: candidate grids (default: 6 values of kappa in [0.5, 16], 8 of iw_speed in
            [1, 3000], and :data:`SPREADS`).
        source: where the rows come from, kept in the calibration.

    Returns:
        The fitted :class:`Calibration`, with the residuals log(measured / predicted).
    """
    for i, row in enumerate(rows):
        if not isinstance(row, Observation):
            raise ValueError(f"rows[{i}] = {row!r} is not allowed: each row must be a theory.schedule.Observation")
    made = np.array([r.transition is not None and r.transition > 0 for r in rows])
    if not made.any():
        raise ValueError("no model in these runs made a transition: nothing to calibrate on")
    lrs = np.array([r.schedule.lr for r in rows])
    trained = np.array([r.schedule.steps for r in rows], dtype=np.float64)
    measured = np.array([r.transition if m else np.nan for r, m in zip(rows, made, strict=True)], dtype=np.float64)
    base = load_calibration() if DEFAULT_CALIBRATION.exists() else Calibration()
    candidates = _candidates(rows, base, kappas, iw_speeds, spreads)
    flow = _candidate_flows(rows, candidates, base)
    best = None
    for k in range(flow.shape[0]):
        ok = np.isfinite(flow[k]) & (flow[k] > 0) & made  # a crossing at t = 0 has no time scale
        if not ok.any():
            continue
        log_tau = float(np.mean(np.log(flow[k, ok]) - np.log(lrs[ok]) - np.log(measured[ok])))
        predicted_steps = flow[k] / (math.exp(log_tau) * lrs)
        predicted_made = np.isfinite(predicted_steps) & (predicted_steps <= trained)
        resid = np.log(measured[ok]) - np.log(predicted_steps[ok])
        wrong = int((predicted_made != made).sum())
        score = float(np.sum(resid**2) + 4.0 * wrong)
        if best is None or score < best[0]:
            best = (score, k, log_tau, resid)
    if best is None:
        raise ValueError("the reduced model predicts no transition for these runs at any candidate constants")
    _, k, log_tau, resid = best
    kappa, rho, leak, spread = candidates[k]
    return Calibration(
        time_scale=math.exp(log_tau),
        iw_speed=rho,
        kappa=kappa,
        init=base.init,
        leak=leak,
        spread=spread,
        residuals=tuple(float(r) for r in resid),
        source=source,
    )


def _candidates(rows: list[Observation], base: Calibration, kappas, iw_speeds, spreads) -> list[tuple]:
    """The (kappa, iw_speed, leak, spread) candidates that :func:`calibrate_rows` tries: which constants are free
    depends on how many distinct distributions the rows hold (see its docstring)."""
    tasks = [r.task for r in rows]
    distinct = {t.to_json() for t in tasks}
    if all(isinstance(t, MarkovTask | TokenStreamTask) for t in tasks):
        # the single-head mixture (Markov chains, token streams) has neither
        kappas, iw_speeds = np.array([base.kappa]), np.array([base.iw_speed])
    elif len(distinct) < 3:
        kappas, iw_speeds = np.array([base.kappa]), np.array([base.iw_speed])
    elif len(distinct) < FULL_FIT_DISTRIBUTIONS:
        kappas = np.array([base.kappa])  # the capacity (and v2's leak) keep the packaged values: too few cells
    kappas = np.geomspace(0.5, 16.0, 6) if kappas is None else np.asarray(kappas, dtype=np.float64)
    iw_speeds = np.geomspace(1.0, 3000.0, 8) if iw_speeds is None else np.asarray(iw_speeds, dtype=np.float64)
    has_classification = any(isinstance(t, ClassificationTask) for t in tasks)
    full = has_classification and len(distinct) >= FULL_FIT_DISTRIBUTIONS
    leaks = np.array([0.05, 0.1, 0.2, 0.4]) if full else np.array([base.leak])
    if spreads is None:
        spreads = np.array(SPREADS) if len(distinct) >= 3 and has_classification else np.array([base.spread])
    spreads = np.asarray(spreads, dtype=np.float64)
    grid = itertools.product(kappas, iw_speeds, leaks, spreads)  # kappa outermost, as the fit's order
    return [(float(k), float(r), float(q), float(sp)) for k, r, q, sp in grid]


def _candidate_flows(rows: list[Observation], candidates: list[tuple], base: Calibration) -> np.ndarray:
    """(candidates, rows): each row's flow-time transition under each candidate (NaN where none), integrating each
    distinct (distribution, optimiser) once per candidate (the flow's transition does not depend on lr)."""
    lrs = np.array([r.schedule.lr for r in rows])
    trained = np.array([r.schedule.steps for r in rows], dtype=np.float64)
    # flow-time horizon: a multiple of the largest lr x step product, the largest time_scale we allow. Adam's
    # normalised flow moves each strength at most lr per step, so its time_scale is O(1) (fitted: 1.3): 10 covers
    # it. Plain SGD's can be far from 1 (momentum 0.9 alone gives 10): 100. The cost of the stiff in-weights
    # channel grows with the horizon (100 costs 5x the time of 10 on the demo's calibration cells).
    factor = 10.0 if all(r.schedule.optimizer == "adam" for r in rows) else 100.0
    horizon = factor * float(np.max(lrs * trained))
    t_out = np.concatenate([[0.0], np.geomspace(horizon * 1e-6, horizon, 15)])
    keys = [
        (r.task.to_json(), r.schedule.optimizer, r.schedule.batch_size, r.schedule.weight_decay, r.schedule.decay_on)
        for r in rows
    ]
    unique = sorted(set(keys))
    where = np.array([unique.index(k) for k in keys])
    first = [keys.index(u) for u in unique]
    cells = []
    for kappa, rho, leak, spread in candidates:
        # time_scale only sets the decay rate here (see calibrate_rows)
        cal = Calibration(
            time_scale=base.time_scale, kappa=kappa, iw_speed=rho, init=base.init, leak=leak, spread=spread
        )
        for i in first:
            task, sch = rows[i].task, rows[i].schedule
            prm = _params(task, cal, sch.weight_decay, sch.optimizer, sch.batch_size, sch.decay_on)
            cells.append((_cases(task), prm, t_out))
    trajs = _integrate(cells, 1e-4)
    flow = np.array([np.nan if tr.transition is None else tr.transition for tr in trajs])
    return flow.reshape(len(candidates), len(unique))[:, where]
