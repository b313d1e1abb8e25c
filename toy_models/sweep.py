"""Phase-diagram sweeps: many toys trained as vmapped batches, measured, and set beside the theory's prediction.

A sweep's configuration (:class:`SweepConfig`), the named presets and grid files live in the JAX-free
:mod:`toy_models.presets`, and its records (:class:`SweepResult`, :class:`TheoryComparison`, the summary table) in
the JAX-free :mod:`toy_models.sweep_result`, which also reads them back from a run directory (both re-exported
here); this module trains the toys (:func:`run_sweep`), aggregates them (:func:`aggregate` -> SweepResult), sets
the theory beside them (:func:`compare_theory` -> TheoryComparison) and writes the files from the records
(:func:`finish`).

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
* ``report.html`` (:mod:`toy_models.report`), rendered from the records in memory; ``zipfhead report`` renders it
  again from the files above.

``--shard i/n`` trains groups i, i+n, ... only; ``zipfhead merge`` joins the parts' group results into one run.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zipfhead.theory._io import atomic_write, remove
from zipfhead.theory.phases import DIVERGED, FORMED
from zipfhead.theory.predict import LR_MAX, Calibration, calibrate_rows, measured_phase, predict_many
from zipfhead.theory.schedule import Observation
from zipfhead.toy_models.config import headline_measure, task_kind
from zipfhead.toy_models.presets import PRESETS, SweepConfig, load_grid_file, preset
from zipfhead.toy_models.scores import score_predictions
from zipfhead.toy_models.sweep_result import SweepResult, TheoryComparison, summary_header, summary_rows
from zipfhead.toy_models.train import TIMING_PARTS

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
    """``summary.csv``: one row per cell and seed, the toys' measurements beside the theory's prediction
    (:func:`toy_models.sweep_result.summary_rows`)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(summary_header(result))
    writer.writerows(summary_rows(result, theory))
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

    write_report(out, result, theory)  # from the records in memory, as zipfhead report renders them from the files
    return theory.scores
