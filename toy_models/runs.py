"""Reading finished ``zipfhead train`` run directories (no JAX import): the toys' layout, known here and not in
:mod:`theory`, turned into the typed records the theory takes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zipfhead.theory._io import read_json, reading
from zipfhead.theory.distributions import config_from_dict
from zipfhead.theory.predict import Calibration, calibrate_rows, icl_threshold
from zipfhead.theory.schedule import Observation, Schedule

__all__ = ["calibrate_runs", "read_observations"]

#: the schedule's fields a run's config.json carries under "train" (lr and steps are read per model and per run)
_SCHEDULE_KEYS = ("optimizer", "batch_size", "weight_decay", "decay_on")


def read_observations(run_dir: str | Path) -> list[Observation]:
    """Every model of a finished ``zipfhead train`` run (``config.json`` and ``summary.json``) as an
    :class:`theory.schedule.Observation`, diverged models left out. A transition counts only if the model ended with
    its headline measure above :func:`theory.predict.icl_threshold`: a run stopped mid-rise would place its half-way
    point on the plateau's onset."""
    run_dir = Path(run_dir)
    cfg_path, sum_path = run_dir / "config.json", run_dir / "summary.json"
    if not (cfg_path.exists() and sum_path.exists()):
        raise ValueError(f"run directory {str(run_dir)!r} lacks config.json or summary.json: not a finished run")
    with reading(cfg_path, "a zipfhead train config"):
        cfg = read_json(cfg_path)
        task = config_from_dict(cfg["task"])
        train = cfg.get("train", {})
        kept = {k: train[k] for k in _SCHEDULE_KEYS if k in train}
    out = []
    with reading(sum_path, "a zipfhead train summary"):
        summary = read_json(sum_path)
        steps = int(summary.get("steps_trained", train.get("steps", Schedule.steps)))
        headline = summary.get("headline", "icl_acc")
        for m in summary["models"]:
            if m.get("diverged"):
                continue
            formed = m["final"].get(headline, 0.0) >= icl_threshold(task)
            schedule = Schedule(**(kept | {"lr": float(m["lr"]), "steps": steps}))
            out.append(Observation(task, schedule, m["transition_step"] if formed else None))
    return out


def calibrate_runs(
    run_dirs: list[str | Path],
    *,
    kappas: np.ndarray | None = None,
    iw_speeds: np.ndarray | None = None,
) -> Calibration:
    """Fit the theory's constants to the toys of finished ``zipfhead train`` runs (``zipfhead calibrate``): their
    :func:`read_observations`, fitted by :func:`theory.predict.calibrate_rows` (``kappas`` and ``iw_speeds``
    replace its candidate grids), with the run list as the calibration's source."""
    if not run_dirs:
        raise ValueError("run_dirs is empty: give at least one zipfhead train output directory")
    rows = [row for d in run_dirs for row in read_observations(d)]
    return calibrate_rows(rows, kappas=kappas, iw_speeds=iw_speeds, source=", ".join(str(Path(d)) for d in run_dirs))
