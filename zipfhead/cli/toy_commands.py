"""``zipfhead train`` and ``zipfhead bench``: the toys' commands (JAX is imported when they run)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from zipfhead.cli.flags import MODEL_FLAGS, TRAIN_FLAGS, add_distribution_flags, add_train_flags, pick, task_from_args

__all__ = ["add_bench_parser", "add_train_parser", "run_config_from_args"]


# --- zipfhead bench --------------------------------------------------------------------------------------
def _cmd_bench(args: argparse.Namespace) -> int:
    payload: dict[str, Any] = {}
    lines: list[str] = []
    if args.part in ("data", "all"):
        from zipfhead.theory.bench import bench_samplers, bench_statistics

        n_seqs, K, repeats = (20_000, 10**5, 2) if args.quick else (200_000, 10**6, 5)
        samplers = bench_samplers(n_seqs=n_seqs, repeats=repeats)
        stats = bench_statistics(K=K, repeats=repeats)
        payload.update({"samplers": samplers, "statistics": stats, "n_seqs": n_seqs})
        lines.append(f"Samplers ({n_seqs} sequences; positions per second; median of {repeats})")
        lines.append(f"  {'sampler':<38} {'numba':>10} {'numpy':>10} {'python':>10} {'x numpy':>8} {'x python':>9}")
        for r in samplers:
            py = "-" if r["python_positions_per_s"] is None else f"{r['python_positions_per_s']:.3g}"
            xpy = "-" if r["speedup_vs_python"] is None else f"{r['speedup_vs_python']:.1f}"
            lines.append(
                f"  {r['sampler']:<38} {r['numba_positions_per_s']:>10.3g} {r['numpy_positions_per_s']:>10.3g} "
                f"{py:>10} {r['speedup_vs_numpy']:>8.2f} {xpy:>9}"
            )
        lines.append(f"\nStatistics at K = {K} (milliseconds per evaluation; exact includes the normaliser)")
        lines.append(f"  {'statistic':<28} {'exact':>8} {'asymptotic':>11}")
        for r in stats:
            lines.append(f"  {r['statistic']:<28} {r['exact_ms']:>8.2f} {r['asymptotic_ms']:>11.2f}")
    if args.part in ("theory", "all"):
        from zipfhead.theory.bench import bench_theory

        n = 20 if args.quick else 100
        th = bench_theory(n=n, twin_cells=1 if args.quick else 2)
        payload["theory"] = th
        lines.append(f"\nReduced model: {th['cells']}-cell phase diagram (alpha x p_B), median")
        lines.append(f"  integration (Numba, all cores)   {th['integration_s']:8.2f} s")
        lines.append(f"  closed forms (numpy)             {th['closed_form_s']:8.3f} s")
        lines.append(
            f"  per cell: Numba {th['numba_ms_per_cell']:.3f} ms, plain-Python twin {th['python_ms_per_cell']:.0f} ms"
            f" -> x{th['speedup']:.0f}"
        )
    if args.part in ("sweep", "all"):
        from zipfhead.toy_models.bench import bench_sweep, format_sweep

        payload["sweep"] = bench_sweep(quick=args.quick)
        lines.append(format_sweep(payload["sweep"]))
    if args.part in ("training", "all"):
        from zipfhead.toy_models.bench import bench_training, format_training

        payload["training"] = bench_training(quick=args.quick)
        lines.append(format_training(payload["training"]))
    print(json.dumps(payload, sort_keys=True) if args.json else "\n".join(lines))
    return 0


# --- zipfhead train --------------------------------------------------------------------------------------
def run_config_from_args(args: argparse.Namespace):
    """The RunConfig that ``zipfhead train``'s flags describe."""
    from zipfhead.toy_models.config import ModelConfig, RunConfig, TrainConfig, io_shape

    task = task_from_args(args)
    n_ctx, d_vocab, d_vocab_out = io_shape(task)
    model_kw = pick(args, MODEL_FLAGS)
    model_kw.setdefault("positional", "onehot" if args.task == "classification" else "learned")
    if model_kw["positional"] == "onehot":
        model_kw.setdefault("d_model", max(ModelConfig.d_model, n_ctx + 32))
    model = ModelConfig(n_ctx=n_ctx, d_vocab=d_vocab, d_vocab_out=d_vocab_out, **model_kw)
    return RunConfig(
        task=task,
        model=model,
        train=TrainConfig(**pick(args, TRAIN_FLAGS)),
        seeds=tuple(args.seeds),
        lrs=tuple(args.lrs or ()),
    )


def _cmd_train(args: argparse.Namespace) -> int:
    import shutil
    from pathlib import Path

    from zipfhead.cli.sweep_commands import out_dir
    from zipfhead.toy_models.results import write_run
    from zipfhead.toy_models.train import train

    run = run_config_from_args(args)
    out = Path(out_dir(args.out, "runs/train"))
    if args.overwrite and out.exists():
        shutil.rmtree(out)
    result = train(run, out, progress=args.progress)
    summary = write_run(result, out)
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        for info in summary["models"]:
            tr = info["transition_step"]
            when = (
                "no transition"
                if tr is None
                else f"transition at step {tr:.0f} +- {info['transition_uncertainty']:.0f}"
            )
            head = summary["headline"]
            print(
                f"model {info['model']} (seed {info['seed']}, lr {info['lr']:g}): "
                f"{head} {info['final'][head]:.3f}, {when}"
            )
        print(f"wrote {out}/config.json, metrics.npz, summary.json, curves.png, attention.png")
    return 0


def add_train_parser(sub: Any) -> None:
    """``zipfhead train``."""
    tr = sub.add_parser("train", help="train attention-only toys (several seeds as one vmapped batch)")
    add_distribution_flags(tr)
    add_train_flags(tr)
    tr.set_defaults(func=_cmd_train)


def add_bench_parser(sub: Any) -> None:
    """``zipfhead bench``."""
    bench = sub.add_parser("bench", help="benchmarks: samplers and statistics, the theory, training, the sweep")
    bench.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    bench.add_argument(
        "--part", choices=("data", "theory", "training", "sweep", "all"), default="all", help="which benchmarks [all]"
    )
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.set_defaults(func=_cmd_bench)
