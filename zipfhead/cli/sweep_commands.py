"""``zipfhead sweep``, ``zipfhead merge`` and ``zipfhead report``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from typing import Any

from zipfhead.cli.flags import add_config_flags, pick
from zipfhead.toy_models.config import TrainConfig

__all__ = ["add_sweep_parsers", "out_dir"]

#: the training fields a sweep's flags may override (the rest come from the preset or grid file)
_TRAIN_OVERRIDES = ("steps", "lr", "eval_every", "sampler")


def _parse_axis(spec: str) -> tuple[str, tuple[float, ...]]:
    """``name=v1,v2,...`` -> (name, values)."""
    try:
        name, values = spec.split("=", 1)
        vals = tuple(float(v) for v in values.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"--axis {spec!r} is not allowed: write name=v1,v2,... (numbers)") from None
    if not vals:
        raise ValueError(f"--axis {spec!r} is empty: give at least one value")
    return name.strip().replace("-", "_"), vals


def out_dir(given: str | None, default: str) -> str:
    """The run directory: ``--out``, or the default when it was not given; an empty ``--out`` is an error."""
    if given is None:
        return default
    if not given.strip():
        raise ValueError(f"--out = {given!r} is not allowed: name a directory")
    if os.path.exists(given) and not os.path.isdir(given):
        raise ValueError(f"--out = {given!r} is a file, not a directory: name a directory")
    return given


def _parse_shard(spec: str | None) -> tuple[int, int]:
    if spec is None:
        return (0, 1)
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise ValueError(f"--shard {spec!r} is not allowed: write i/n, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard {spec!r} is out of range: i must be in [0, n - 1] and n >= 1")
    return i, n


def sweep_config_from_args(args: argparse.Namespace):
    """The SweepConfig that ``zipfhead sweep``'s flags describe (preset, then grid file, then flags)."""
    from zipfhead.toy_models.presets import load_grid_file, preset

    cfg = preset(args.preset, args.scale)
    if args.grid is not None:
        cfg = load_grid_file(args.grid, cfg)
    changes: dict[str, Any] = {}
    if args.axis:
        changes["axes"] = tuple(_parse_axis(a) for a in args.axis)
        # a grid of its own is not the preset: named after its axes, so it defaults to its own directory
        changes["name"] = f"{cfg.name}-" + "-".join(name for name, _ in changes["axes"])
    if args.seeds is not None:
        changes["seeds"] = tuple(args.seeds)
    if args.calibration_cells is not None:
        changes["calibration"] = args.calibration_cells
    train_changes = pick(args, _TRAIN_OVERRIDES)
    if train_changes:
        changes["train"] = dataclasses.replace(cfg.train, **train_changes)
    return dataclasses.replace(cfg, **changes) if changes else cfg


def _cmd_sweep(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from zipfhead.toy_models.scores import format_scores
    from zipfhead.toy_models.sweep import format_profile, run_sweep

    cfg = sweep_config_from_args(args)
    out = out_dir(args.out, f"runs/{cfg.name}")
    cal = _given_calibration(args, out)
    t0 = time.perf_counter()
    scores = run_sweep(
        cfg, out, shard=_parse_shard(args.shard), overwrite=args.overwrite, progress=args.progress, calibration=cal
    )
    seconds = time.perf_counter() - t0
    if scores is None:
        print(f"shard {args.shard} done in {seconds:.0f} s: join the parts with zipfhead merge")
        return 0
    if args.json:
        print(json.dumps({"out": out, "seconds": seconds, "scores": scores}))
    else:
        print(format_scores(scores))
        profile = Path(out) / "profile.json"
        if profile.exists():  # the sweep's training over all the runs that trained its groups, and its last finish
            print(format_profile(json.loads(profile.read_text())))
        print(f"wrote {out}/report.html ({seconds:.0f} s)")
    return 0


def _given_calibration(args: argparse.Namespace, out: str):
    """The --calibration file's constants, its path in their source written relative to the run directory ``out``
    (theory.json and the report name nothing outside the directory's own tree by an absolute path)."""
    if getattr(args, "calibration", None) is None:
        return None
    from zipfhead.theory.predict import load_calibration

    return load_calibration(args.calibration, label=os.path.relpath(os.path.abspath(args.calibration), out))


def _cmd_merge(args: argparse.Namespace) -> int:
    from zipfhead.toy_models.scores import format_scores
    from zipfhead.toy_models.sweep import merge

    scores = merge(args.parts, args.out, overwrite=args.overwrite, calibration=_given_calibration(args, args.out))
    print(format_scores(scores))
    print(f"wrote {args.out}/report.html")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from zipfhead.toy_models.report import write_report

    path = write_report(args.run_dir)
    print(f"wrote {path}")
    return 0


def _cmd_experiment(args: argparse.Namespace) -> int:
    from zipfhead.toy_models.experiments import run_experiment

    out = out_dir(args.out, f"runs/{args.name}")
    run_experiment(args.name, out, progress=args.progress)
    print(f"wrote {out}/findings.json")
    return 0


def add_sweep_parsers(sub: Any) -> None:
    """Register ``sweep``, ``merge``, ``experiment`` and ``report``."""
    _add_sweep_parser(sub)
    _add_merge_parser(sub)
    _add_experiment_parser(sub)
    r = sub.add_parser("report", help="write RUN_DIR/report.html for a finished sweep")
    r.add_argument("run_dir")
    r.set_defaults(func=_cmd_report)


def _add_sweep_parser(sub: Any) -> None:
    from zipfhead.toy_models.presets import CALIBRATION_CELLS, PRESETS

    p = sub.add_parser("sweep", help="phase-diagram sweep: toys trained as vmapped batches, theory beside each cell")
    p.add_argument("--preset", choices=PRESETS, default=PRESETS[0], help=f"a named sweep [{PRESETS[0]}]")
    p.add_argument("--scale", choices=("fast", "full"), default="fast", help="full: the GPU-sized variant [fast]")
    p.add_argument("--grid", default=None, help="a TOML or JSON grid file (overrides the preset's axes)")
    p.add_argument("--axis", action="append", default=None, metavar="NAME=V1,V2,...", help="an axis (repeatable)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds per cell [preset's]")
    add_config_flags(p, [TrainConfig], _TRAIN_OVERRIDES, dict.fromkeys(_TRAIN_OVERRIDES, "preset's"))
    p.add_argument(
        "--calibration-cells",
        "--calibration_cells",
        dest="calibration_cells",
        default=None,
        choices=CALIBRATION_CELLS,
        help=f"cells that calibrate the theory [{CALIBRATION_CELLS[0]}]",
    )
    p.add_argument(
        "--calibration",
        default=None,
        metavar="FILE",
        help="predict with this calibration (a calibration JSON, or a sweep's theory.json) instead of fitting; "
        "every cell is scored",
    )
    p.add_argument("--shard", default=None, metavar="I/N", help="train groups I, I+N, ... only")
    p.add_argument("--out", default=None, help="run directory [runs/<preset>]")
    p.add_argument("--overwrite", action="store_true", help="discard what --out holds")
    p.add_argument("--json", action="store_true", help="print the held-out scores as JSON")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.set_defaults(func=_cmd_sweep)


def _add_merge_parser(sub: Any) -> None:
    m = sub.add_parser("merge", help="join the shards of a sweep into one result")
    m.add_argument("parts", nargs="+", help="the shards' run directories")
    m.add_argument("--out", required=True, help="the merged run directory")
    m.add_argument("--overwrite", action="store_true", help="discard what --out holds")
    m.add_argument("--calibration", default=None, metavar="FILE", help="as sweep --calibration")
    m.set_defaults(func=_cmd_merge)


def _add_experiment_parser(sub: Any) -> None:
    from zipfhead.toy_models.presets import EXPERIMENT_NAMES

    e = sub.add_parser("experiment", help="a control experiment: its sweeps, then findings.json")
    e.add_argument(
        "name", choices=EXPERIMENT_NAMES, help="which (each is described in zipfhead.toy_models.experiments)"
    )
    e.add_argument("--out", default=None, help="the experiment's directory [runs/<name>]")
    e.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    e.set_defaults(func=_cmd_experiment)
