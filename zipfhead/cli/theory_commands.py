"""``zipfhead stats``, ``zipfhead predict`` and ``zipfhead calibrate``: the theory's commands (no JAX import)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from zipfhead.cli.flags import add_distribution_flags, add_train_flags, pick, task_from_args, tasks_from_args
from zipfhead.theory.schedule import Schedule

__all__ = ["add_calibrate_parser", "add_predict_parser", "add_stats_parser"]

#: the schedule's fields, each a flag of ``predict`` (theory.schedule.Schedule; unset flags keep its defaults)
SCHEDULE_FIELDS = tuple(f.name for f in dataclasses.fields(Schedule))


# --- zipfhead stats ----------------------------------------------------------------------------------------
_ROWS: list[tuple[str, str, str]] = [
    # (section, key, description)
    ("Zipf class distribution", "normaliser", "normaliser Z = sum_k (k+q)^-alpha"),
    ("Zipf class distribution", "entropy_nats", "entropy (nats)"),
    ("Zipf class distribution", "mean_rank", "mean rank E[k]"),
    ("In-context classification", "p_bursty", "P(bursty context) = p_C + (1-p_C) p_B"),
    ("In-context classification", "p_query_in_context", "P(query's class in context), training mixture"),
    ("In-context classification", "p_query_in_context_iid", "  ... i.i.d. contexts"),
    ("In-context classification", "expected_distinct", "E[distinct classes in context], mixture"),
    ("In-context classification", "expected_distinct_iid", "  ... i.i.d. contexts"),
    (
        "In-context classification",
        "expected_query_occurrences",
        "E[context items of the query's class], mixture",
    ),
    ("In-context classification", "expected_query_occurrences_iid", "  ... i.i.d. contexts"),
    ("Token streams", "token_entropy_nats", "entropy of the token marginal (nats)"),
    ("Token streams", "p_seen_before", "P(token at position T occurred earlier), background"),
    ("Token streams", "p_trigger_repeat", "P(a trigger occurs twice before T): induction signal"),
    ("In-weights memorisation", "unmemorised_mass", "U(t; c) = sum_k p_k exp(-c p_k t)"),
    ("In-weights memorisation", "unmemorised_integral", "int_0^t U(s; c) ds"),
    ("In-weights memorisation", "unmemorised_integral_limit", "int_0^inf U ds = K / c"),
]


def _format_table(values: dict[str, float], header: str) -> str:
    lines = [header, ""]
    section = None
    for sec, key, desc in _ROWS:
        if sec != section:
            if section is not None:
                lines.append("")
            lines.append(sec)
            lines.append("-" * len(sec))
            section = sec
        lines.append(f"  {desc:<52} {key:<32} {values[key]:.10g}")
    return "\n".join(lines)


def _symbolic(latex: bool) -> str:
    import sympy as sp

    from zipfhead.theory import symbolic as sym

    out = []
    for name, expr in sym.STATISTICS.items():
        body = sp.latex(expr) if latex else sp.sstr(expr)
        out.append(f"{name} = {body}")
    out.append(f"Z = {sp.latex(sym.normaliser_sum) if latex else sp.sstr(sym.normaliser_sum)}")
    return "\n".join(out)


def _cmd_stats(args: argparse.Namespace) -> int:
    if args.symbolic or args.latex:
        print(_symbolic(args.latex))
        return 0
    from zipfhead.theory.statistics import all_statistics

    cls_task, tok_task = tasks_from_args(args)
    values = all_statistics(cls_task, tok_task, c=args.c, t=args.t, method=args.method)
    if args.json:
        payload = {
            **values,
            "method": args.method,
            "classification_task": cls_task.to_dict(),
            "token_task": tok_task.to_dict(),
            "c": args.c,
            "t": args.t,
        }
        print(json.dumps(payload, sort_keys=True))
        return 0
    c = cls_task
    header = (
        f"zipfhead stats ({args.method}): K={c.K} alpha={c.alpha:g} q={c.q:g} N={c.N} B={c.B} p_B={c.p_B:g} "
        f"p_C={c.p_C:g} | V={tok_task.V} T={tok_task.T} triggers={tok_task.n_triggers} "
        f"({tok_task.trigger_dist}) | c={args.c:g} t={args.t:g}"
    )
    print(_format_table(values, header))
    return 0


def add_stats_parser(sub: Any) -> None:
    """``zipfhead stats``."""
    stats = sub.add_parser("stats", help="exact statistics of a Zipfian data distribution")
    add_distribution_flags(stats)
    g = stats.add_argument_group("memorisation")
    g.add_argument("--c", type=float, default=1.0, help="memorisation rate per unit time [1]")
    g.add_argument("--t", type=float, default=1000.0, help="time (training steps) for U(t; c) [1000]")
    stats.add_argument("--method", choices=("exact", "asymptotic", "reference"), default="exact")
    out = stats.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON object")
    out.add_argument("--symbolic", action="store_true", help="print the sympy expressions")
    out.add_argument("--latex", action="store_true", help="print the expressions as LaTeX")
    stats.set_defaults(func=_cmd_stats)


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
    from zipfhead.theory._io import atomic_write
    from zipfhead.theory.phases import PHASES
    from zipfhead.theory.predict import load_calibration, phase_grid, predict

    task = task_from_args(args)
    cal = load_calibration(args.calibration)
    given = pick(args, SCHEDULE_FIELDS)
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
        from zipfhead.theory.plots import plot_phase_grid

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
        if step is None and closed is not None:  # the closed form has no recruitment rule (predict_many)
            print("  (the closed form's escape ignores the heads' recruitment by memorisation: the integration's")
            print("  'none' is the prediction)")
    if args.task == "markov":
        print(f"bigram progress at the horizon (0 unigram rung, 1 Bayes predictor): {res['icl_accuracy']:.3f}")
    else:
        print(f"in-context accuracy at the horizon (proxy): {res['icl_accuracy']:.3f} (max {res['icl_max']:.3f})")
        print(f"in-weights accuracy at the horizon (proxy): {res['iwl_accuracy']:.3f}")
    print(f"calibration: {cal.source}")
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from zipfhead.theory.predict import DEFAULT_CALIBRATION
    from zipfhead.toy_models.runs import calibrate_runs

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
