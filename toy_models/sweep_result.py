"""A finished sweep's records, importable without JAX: the toys aggregated over the groups (:class:`SweepResult`),
the theory set beside them (:class:`TheoryComparison`), the summary table made from both (:func:`summary_header`,
:func:`summary_rows`: ``summary.csv``'s rows), and :func:`load_sweep`, which reads the records back from a run
directory's files.

:mod:`toy_models.sweep` makes the records (training, :func:`~toy_models.sweep.aggregate`,
:func:`~toy_models.sweep.compare_theory`) and writes the run's files from them; :mod:`toy_models.report` renders
``report.html`` from them, in memory at the end of a sweep or read back here by ``zipfhead report``. The files hold
the transition steps to 0.1 step and the final accuracies to 4 decimals (``summary.csv``); :func:`as_written`
rounds records in memory the same way, so that what is shown from either is the same.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from zipfhead.theory.predict import Calibration
from zipfhead.toy_models.config import headline_measure, task_kind
from zipfhead.toy_models.presets import SweepConfig

__all__ = [
    "PREDICTION_KEYS",
    "REQUIRED_FILES",
    "GroupTime",
    "SweepResult",
    "TheoryComparison",
    "as_float",
    "as_written",
    "load_sweep",
    "read_group_times",
    "summary_header",
    "summary_rows",
]

#: the files of a finished sweep that :func:`load_sweep` reads (the groups' timings are optional)
REQUIRED_FILES = ("config.json", "arrays.npz", "summary.csv", "theory.json")
#: what ``theory.json`` keeps of each cell's prediction
PREDICTION_KEYS = ("transition_step", "transition_step_closed_form", "phase", "phase_closed_form")


@dataclass(frozen=True)
class SweepResult:
    """A finished sweep's toys, aggregated over its groups: what ``arrays.npz``, ``summary.csv`` and the theory's
    comparison are written from. C cells, S seeds, M measures, E regular evaluation steps.

    Attributes:
        config: the sweep.
        measures: the names of the recorded measures (M,).
        steps: (E,) the regular evaluation grid (multiples of eval_every, and the last step).
        values: (C, S, M, E) every measure on that grid.
        measured: (C, S) the measured transition step of each model, NaN where no head formed (or it diverged).
        phases: C lists of S measured phases (:mod:`theory.phases`; "" where a run's files lack the model's row).
        finals: (C, S, 2) the final headline and in-weights accuracies (0 where the task has no iwl measure).
        diverged: (C, S) bool.
        headline: the measure whose rise is the transition. None (the default) takes the rule's,
            :func:`toy_models.config.headline_measure` of the task's kind; records read back from a run's files
            keep the one its ``summary.csv`` names.
    """

    config: SweepConfig
    measures: list[str]
    steps: np.ndarray
    values: np.ndarray
    measured: np.ndarray
    phases: list[list[str]]
    finals: np.ndarray
    diverged: np.ndarray
    headline: str | None = None

    def __post_init__(self) -> None:
        if self.headline is None:
            object.__setattr__(self, "headline", headline_measure(task_kind(self.config.task)))


@dataclass(frozen=True)
class TheoryComparison:
    """The theory beside a sweep: its calibration, a prediction per cell, and the scores on the held-out cells.

    Attributes:
        calibration: the constants used.
        note: how they were obtained (fitted, given, or the packaged fallback and why).
        calibration_cells: the cells fitted on (empty when a calibration was given).
        held_out: the cells scored.
        predictions: C dicts: transition_step, transition_step_closed_form, phase, phase_closed_form
            (:data:`PREDICTION_KEYS`).
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
        return {
            "calibration": dataclasses.asdict(self.calibration),
            "calibration_note": self.note,
            "calibration_cells": self.calibration_cells,
            "held_out_cells": self.held_out,
            "scores": self.scores,
            "predictions": [{k: p[k] for k in PREDICTION_KEYS} for p in self.predictions],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TheoryComparison:
        """The inverse of :meth:`to_dict` (a ``theory.json``). A missing entry reads as empty, a prediction that is
        not a JSON object as no prediction (every key None), and a missing constant as its default.

        Raises:
            ValueError: the calibration is not a :class:`theory.predict.Calibration` (the message says why).
        """
        try:
            calibration = Calibration(**(d.get("calibration") or {}))
        except TypeError as err:
            raise ValueError(f"calibration = {d.get('calibration')!r} is not a calibration: {err}") from None
        predictions = [
            {k: p.get(k) for k in PREDICTION_KEYS} if isinstance(p, dict) else dict.fromkeys(PREDICTION_KEYS)
            for p in d.get("predictions") or []
        ]
        return cls(
            calibration,
            str(d.get("calibration_note", "")),
            [int(c) for c in d.get("calibration_cells") or []],
            [int(c) for c in d.get("held_out_cells") or []],
            predictions,
            dict(d.get("scores") or {}),
        )


class GroupTime(NamedTuple):
    """One finished group's training time (its ``groups/gNNN/result.json``)."""

    group: str  #: the group's directory name, gNNN
    seconds: float | None  #: its training wall time (None where result.json records none)
    cells: int  #: how many cells it trained


# --- the summary table ---------------------------------------------------------------------------------------
def _step_text(x: float) -> str:
    """A measured transition step as summary.csv writes it (0.1 step; empty for none)."""
    return "" if math.isnan(x) else f"{x:.1f}"


def _accuracy_text(x: float) -> str:
    """A final accuracy as summary.csv writes it (4 decimals)."""
    return f"{x:.4f}"


def as_float(x: Any) -> float:
    """A number read back from a run's files (a CSV field or a JSON value): NaN where it is empty, missing (None)
    or not a number."""
    if x is None or x == "":
        return math.nan
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def summary_header(result: SweepResult) -> list[str]:
    """The columns of ``summary.csv``: cell, one per axis, seed, calibration_cell, the measured transition step and
    phase, the final headline (``final_<headline>``) and in-weights accuracies, the predicted transition step and
    phase, diverged."""
    head = ["cell", *result.config.axis_names, "seed", "calibration_cell", "measured_transition_step"]
    tail = ["predicted_transition_step", "predicted_phase", "diverged"]
    return [*head, "measured_phase", f"final_{result.headline}", "final_iwl_acc", *tail]


def summary_rows(result: SweepResult, theory: TheoryComparison) -> list[list[str]]:
    """The rows of ``summary.csv`` as written (strings): one per cell and seed (C x S rows, cell-major), the
    toys' measurements beside the theory's prediction, in the columns of :func:`summary_header`. A model without a
    phase (its row missing from the files it was read from, see :func:`load_sweep`) has no row."""
    cfg = result.config
    rows = []
    none = dict.fromkeys(PREDICTION_KEYS)
    for c, cell in enumerate(cfg.cells()):
        pred = theory.predictions[c] if c < len(theory.predictions) else none  # a theory.json cut short
        pt = pred["transition_step"]
        for s, seed in enumerate(cfg.seeds):
            if not result.phases[c][s]:
                continue
            rows.append(
                [
                    str(c),
                    *[str(cell[n]) for n in cfg.axis_names],
                    str(seed),
                    str(int(c in theory.calibration_cells)),
                    _step_text(result.measured[c, s]),
                    result.phases[c][s],
                    _accuracy_text(result.finals[c, s, 0]),
                    _accuracy_text(result.finals[c, s, 1]),
                    "" if pt is None else f"{pt:.1f}",
                    pred["phase"] or "",
                    str(int(result.diverged[c, s])),
                ]
            )
    return rows


def as_written(result: SweepResult) -> SweepResult:
    """``result`` with its measured transition steps (C, S) and final accuracies (C, S, 2) rounded as
    ``summary.csv`` writes them (0.1 step, 4 decimals): the records :func:`load_sweep` reads back from the files
    written from ``result`` (records read back are unchanged by it)."""
    step = np.vectorize(lambda x: as_float(_step_text(x)), otypes=[np.float64])
    accuracy = np.vectorize(lambda x: as_float(_accuracy_text(x)), otypes=[np.float64])
    return dataclasses.replace(result, measured=step(result.measured), finals=accuracy(result.finals))


# --- reading a run back --------------------------------------------------------------------------------------
def load_sweep(run_dir: str | Path) -> tuple[SweepResult, TheoryComparison, list[GroupTime]]:
    """The records of a finished sweep, read back from its files: the toys from ``config.json``, ``arrays.npz``
    and ``summary.csv``, the theory from ``theory.json``, and the groups' training times (:func:`read_group_times`).

    Rows of ``summary.csv`` that are missing, or whose cell or seed is not one of the sweep's, leave their model's
    entries NaN, "" (phase) and False (diverged); a field that is not a number reads as NaN.

    Returns:
        (result, theory, group times): the SweepResult (C cells x S seeds of ``config.json``; ``values`` as
        ``arrays.npz`` holds them), the TheoryComparison, and one GroupTime per finished group.

    Raises:
        ValueError: ``run_dir`` is not a finished sweep: it does not exist, a file is missing or does not read (the
            message names it).
    """
    out = Path(run_dir)
    if not out.is_dir():
        raise ValueError(f"{out} is not a finished sweep: the directory does not exist")
    for name in REQUIRED_FILES:
        if not (out / name).is_file():
            raise ValueError(f"{out} is not a finished sweep: {name} is missing")
    config = _read_record(out, "config.json", SweepConfig.from_dict)
    theory = _read_record(out, "theory.json", TheoryComparison.from_dict)
    try:
        with np.load(out / "arrays.npz") as z:
            values, measures, steps = z["values"], [str(m) for m in z["measures"]], z["steps"]
    except (KeyError, OSError, ValueError) as err:
        raise ValueError(f"{out} is not a finished sweep: arrays.npz does not read ({err})") from None
    headline, measured, finals, phases, diverged = _read_summary(out / "summary.csv", len(config.cells()), config.seeds)
    result = SweepResult(config, measures, steps, values, measured, phases, finals, diverged, headline)
    return result, theory, read_group_times(out)


def _read_record(out: Path, name: str, parse: Callable[[dict[str, Any]], Any]) -> Any:
    """``parse`` of the JSON file ``out / name``; any failure is a ValueError naming the file."""
    try:
        return parse(json.loads((out / name).read_text()))
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{out} is not a finished sweep: {name} does not read ({type(err).__name__}: {err})") from None


def _read_summary(
    path: Path, C: int, seeds: tuple[int, ...]
) -> tuple[str | None, np.ndarray, np.ndarray, list[list[str]], np.ndarray]:
    """(headline, measured (C, S), finals (C, S, 2), C lists of S phases, diverged (C, S)) from ``summary.csv``;
    the headline is the one its ``final_<headline>`` column names (None without one)."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        rows = list(reader)
    finals_columns = [c for c in columns if c.startswith("final_") and c != "final_iwl_acc"]
    headline = finals_columns[0][len("final_") :] if finals_columns else None
    S = len(seeds)
    measured = np.full((C, S), np.nan)
    finals = np.full((C, S, 2), np.nan)
    phases = [[""] * S for _ in range(C)]
    diverged = np.zeros((C, S), dtype=bool)
    slot = {seed: k for k, seed in enumerate(seeds)}
    for r in rows:
        c, s = _integer(r.get("cell")), slot.get(_integer(r.get("seed")))
        if c is None or s is None or not 0 <= c < C:
            continue
        measured[c, s] = as_float(r.get("measured_transition_step"))
        finals[c, s] = (as_float(r.get(f"final_{headline}")), as_float(r.get("final_iwl_acc")))
        phases[c][s] = r.get("measured_phase") or ""
        diverged[c, s] = (r.get("diverged") or "0") in ("1", "True", "true")
    return headline, measured, finals, phases, diverged


def _integer(text: str | None) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def read_group_times(run_dir: str | Path) -> list[GroupTime]:
    """The training time of each finished group of a run (``groups/gNNN/result.json``, in group order); groups
    without a readable result.json are left out."""
    times = []
    for d in sorted(Path(run_dir).glob("groups/g[0-9]*")):
        try:
            info = json.loads((d / "result.json").read_text())
        except (OSError, ValueError):
            continue
        seconds = info.get("seconds")
        number = isinstance(seconds, int | float) and not isinstance(seconds, bool)
        times.append(GroupTime(d.name, float(seconds) if number else None, len(info.get("cells", []))))
    return times
