"""``zipfhead predict`` and ``zipfhead calibrate``: the theory's commands (no JAX import)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from theory.schedule import Schedule
from toy_models.cli_flags import add_distribution_flags, add_train_flags, task_from_args

__all__ = ["add_calibrate_parser", "add_predict_parser"]

#: the schedule's fields, each a flag of ``predict`` (theory.schedule.Schedule; unset flags keep its defaults)
SCHEDULE_FIELDS = tuple(f.name for f in dataclasses.fields(Schedule))


def _grid_axis(spec: str) -> tuple[str, np.ndarray]:
    """``name=lo:hi:n`` (linear) or ``name=lo:hi:n:log`` -> (name, values)."""
    try:
        name, rng = spec.split("=", 1)
        parts = rng.split(":")
        lo, hi, n = float(parts[0]), float(parts[1]), int(parts[2])
        log = len(parts) > 3 and parts[3] == "log"
    except (ValueError, IndexError):
        raise ValueError(f"--grid {spec!r} is not allowed: write name=lo:hi:n or name=lo:hi:n:log") from None
    if n < 2 or n > 1000:
        raise ValueError(f"--grid {spec!r}: n = {n} is out of range: n must be an integer in [2, 1000]")
    if log and (lo <= 0 or hi <= 0):
        raise ValueError(f"--grid {spec!r}: a log axis needs lo > 0 and hi > 0")
    return name.strip().replace("-", "_"), (np.geomspace(lo, hi, n) if log else np.linspace(lo, hi, n))


def _cmd_predict(args: argparse.Namespace) -> int:
    from theory._io import atomic_write
    from theory.phases import PHASES
    from theory.predict import load_calibration, phase_grid, predict

    task = task_from_args(args)
    cal = load_calibration(args.calibration)
    given = {n: getattr(args, n) for n in SCHEDULE_FIELDS if getattr(args, n, None) is not None}
    kw: dict[str, Any] = Schedule(**given).to_dict() | {"calibration": cal}
    if getattr(args, "n_layers", None) is not None:
        kw["n_layers"] = args.n_layers
    if args.grid:
        if len(args.grid) != 2:
            raise ValueError(f"--grid needs two axes, got {len(args.grid)}: --grid alpha=0:2:100 p_B=0:1:100")
        x, y = (_grid_axis(g) for g in args.grid)
        if x[0] == y[0]:
            raise ValueError(f"--grid names the axis {x[0]!r} twice: give two different axes")
        grid = phase_grid(task, x, y, **kw)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        arrays = {k: v for k, v in grid.items() if isinstance(v, np.ndarray)}
        extra = {"x_name": grid["x_name"], "y_name": grid["y_name"], "phases": np.array(PHASES)}
        atomic_write(out / "phase_grid.npz", lambda f: np.savez(f, **arrays, **extra))
        from theory.plots import plot_phase_grid

        plot_phase_grid(grid, out / "phase_grid.png")
        counts = {p: int((grid["phase"] == i).sum()) for i, p in enumerate(PHASES)}
        if args.json:
            print(json.dumps({"cells": int(grid["phase"].size), "phases": counts, "out": str(out)}))
        else:
            print(f"{grid['phase'].size} cells: " + ", ".join(f"{p} {n}" for p, n in counts.items()))
            print(f"wrote {out}/phase_grid.npz and phase_grid.png")
        return 0
    res = predict(task, **kw)
    if args.json:
        print(json.dumps(res, sort_keys=True))
        return 0
    step = res["transition_step"]
    closed = res["transition_step_closed_form"]
    print(f"phase: {res['phase']}")
    print("transition step: " + ("none before the horizon" if step is None else f"{step:.0f}"))
    if res["phase_closed_form"] is not None:
        closed_txt = "none before the horizon" if closed is None else f"{closed:.0f}"
        print(f"  closed forms: transition step {closed_txt} (v2's escape under Adam without decay, else v1's),")
        print(f"  phase {res['phase_closed_form']} (v1's)")
    if args.task == "markov":
        print(f"bigram progress at the horizon (0 unigram rung, 1 Bayes predictor): {res['icl_accuracy']:.3f}")
    else:
        print(f"in-context accuracy at the horizon (proxy): {res['icl_accuracy']:.3f} (max {res['icl_max']:.3f})")
        print(f"in-weights accuracy at the horizon (proxy): {res['iwl_accuracy']:.3f}")
    print(f"calibration: {cal.source}")
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from theory.predict import DEFAULT_CALIBRATION
    from toy_models.runs import calibrate_runs

    if Path(args.out).resolve() == DEFAULT_CALIBRATION.resolve():
        raise ValueError(f"--out = {args.out!r} is the packaged calibration: write to a path of your own")
    cal = calibrate_runs(args.run_dirs)
    cal.to_json(args.out)
    resid = np.asarray(cal.residuals)
    rms = float(np.sqrt(np.mean(resid**2))) if resid.size else float("nan")
    if args.json:
        print(
            json.dumps(
                {
                    "out": args.out,
                    "time_scale": cal.time_scale,
                    "init": cal.init,
                    "iw_speed": cal.iw_speed,
                    "rms_log_residual": rms,
                    "n": int(resid.size),
                }
            )
        )
    else:
        print(f"time_scale {cal.time_scale:.4g}, iw_speed {cal.iw_speed:.3g}, kappa {cal.kappa:.3g}")
        print(f"{resid.size} transitions, rms log residual {rms:.3f} (x{np.exp(rms):.2f})")
        print(f"wrote {args.out}")
    return 0


def add_predict_parser(sub: Any) -> None:
    """Register ``zipfhead predict``: ``train``'s distribution flags, and of its model and optimiser flags only
    those the theory reads."""
    p = sub.add_parser("predict", help="the theory's transition step and phase for a distribution")
    add_distribution_flags(p)
    add_train_flags(p, theory_only=True)
    p.add_argument(
        "--calibration",
        default=None,
        help="a calibration JSON, or a sweep's theory.json [theory/calibration.json, packaged]",
    )
    p.add_argument(
        "--grid",
        nargs="+",
        default=None,
        metavar="NAME=LO:HI:N[:log]",
        help="two axes: a phase diagram of the theory alone, written to --out",
    )
    p.add_argument("--out", default="runs/predict", help="where --grid writes its phase diagram [runs/predict]")
    p.set_defaults(func=_cmd_predict)


def add_calibrate_parser(sub: Any) -> None:
    """Register ``zipfhead calibrate RUN_DIRS...``."""
    p = sub.add_parser("calibrate", help="fit the theory's constants to trained toys")
    p.add_argument("run_dirs", nargs="+", help="zipfhead train output directories")
    p.add_argument("--out", default="calibration.json", help="where to write the calibration [calibration.json]")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_calibrate)
