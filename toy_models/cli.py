"""The ``zipfhead`` command line.

Distribution parameters are spelled as the papers' symbols in every command (``--K``, ``--N``, ``--alpha``,
``--q``, ``--B``, ``--p_B``, ``--p_C``, ``--eps``, ``--D``, ``--L``, ``--V``, ``--T``); ``--p-B`` style aliases
are accepted. Bad input prints one line ``zipfhead: error: ...`` and exits with status 2.

Subcommands import what they need when they run: ``zipfhead stats``, ``predict`` and ``calibrate`` never load JAX
(tests/unit/test_cli.py checks it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import zipfile
from collections.abc import Sequence
from typing import Any, NoReturn

from toy_models.cli_flags import add_distribution_flags, add_train_flags, task_from_args, tasks_from_args

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"zipfhead: error: {message}\n")


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

    from theory import symbolic as sym

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
    from theory.statistics import all_statistics

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


# --- zipfhead bench --------------------------------------------------------------------------------------
def _cmd_bench(args: argparse.Namespace) -> int:
    payload: dict[str, Any] = {}
    lines: list[str] = []
    if args.part in ("data", "all"):
        from theory.bench import bench_samplers, bench_statistics

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
        from theory.bench import bench_theory

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
        from toy_models.bench import bench_sweep, format_sweep

        payload["sweep"] = bench_sweep(quick=args.quick)
        lines.append(format_sweep(payload["sweep"]))
    if args.part in ("training", "all"):
        from toy_models.bench import bench_training, format_training

        payload["training"] = bench_training(quick=args.quick)
        lines.append(format_training(payload["training"]))
    print(json.dumps(payload, sort_keys=True) if args.json else "\n".join(lines))
    return 0


# --- zipfhead train --------------------------------------------------------------------------------------
def run_config_from_args(args: argparse.Namespace):
    """The RunConfig that ``zipfhead train``'s flags describe."""
    from toy_models.model import ModelConfig
    from toy_models.train import RunConfig, TrainConfig, data_stream

    task = task_from_args(args)
    stream = data_stream(task, 0)
    model_kw = {
        n: getattr(args, n)
        for n in ("n_layers", "n_heads", "d_model", "d_head", "positional", "init_scale")
        if getattr(args, n) is not None
    }
    model_kw.setdefault("positional", "onehot" if args.task == "classification" else "learned")
    if model_kw["positional"] == "onehot":
        model_kw.setdefault("d_model", max(64, stream.n_ctx + 32))
    model = ModelConfig(
        n_ctx=stream.n_ctx,
        d_vocab=stream.d_vocab,
        d_vocab_out=stream.d_vocab_out,
        layer_norm=args.layer_norm,
        **model_kw,
    )
    train_kw = {
        n: getattr(args, n)
        for n in (
            "optimizer",
            "lr",
            "momentum",
            "beta2",
            "weight_decay",
            "decay_on",
            "warmup_steps",
            "batch_size",
            "steps",
            "eval_every",
            "eval_size",
            "sampler",
        )
        if getattr(args, n) is not None
    }
    return RunConfig(
        task=task, model=model, train=TrainConfig(**train_kw), seeds=tuple(args.seeds), lrs=tuple(args.lrs or ())
    )


def _cmd_train(args: argparse.Namespace) -> int:
    import shutil
    from pathlib import Path

    from toy_models.cli_sweep import out_dir
    from toy_models.results import write_run
    from toy_models.train import train

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


# --- entry point -----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The full ``zipfhead`` parser (exposed for tests and documentation)."""
    parser = _Parser(prog="zipfhead", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

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

    tr = sub.add_parser("train", help="train attention-only toys (several seeds as one vmapped batch)")
    add_distribution_flags(tr)
    add_train_flags(tr)
    tr.set_defaults(func=_cmd_train)

    from toy_models.cli_theory import add_calibrate_parser, add_predict_parser

    add_predict_parser(sub)
    add_calibrate_parser(sub)

    from toy_models.cli_sweep import add_sweep_parsers

    add_sweep_parsers(sub)

    from toy_models.cli_lens import add_export_parser

    add_export_parser(sub)

    bench = sub.add_parser("bench", help="benchmarks: sampler throughput and statistic cost")
    bench.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    bench.add_argument(
        "--part", choices=("data", "theory", "training", "sweep", "all"), default="all", help="which benchmarks [all]"
    )
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.set_defaults(func=_cmd_bench)
    return parser


def use_every_core() -> None:
    """Expose each CPU core as a JAX host device (unless XLA_FLAGS already says), before JAX is imported.

    The engine splits a batch of models over all devices; on a CPU-only machine that is how both cores do
    useful work. Accelerators are unaffected: they stay the default devices.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags and "jax" not in sys.modules:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={os.cpu_count() or 1}".strip()


# glibc returns large freed buffers to the kernel at once (mmap'd above mmap_threshold, trimmed above
# trim_threshold), so every training step page-faults its activations in again; measured 1.5-1.65x faster
# at batch >= 96 with both thresholds at their maximum, and no slower at small batch.
ALLOCATOR_TUNABLES = "glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=4294967295"
_JAX_COMMANDS = ("train", "bench", "sweep", "merge", "experiment")


def reexec_with_allocator_tunables() -> None:
    """Restart this process once with GLIBC_TUNABLES set (glibc reads it only at start-up).

    Only on glibc, only when GLIBC_TUNABLES is unset, and never when ZIPFHEAD_NO_REEXEC is set (it is set
    for the restarted process, so this happens at most once). Returns if it does not restart.
    """
    import platform

    if os.environ.get("ZIPFHEAD_NO_REEXEC") or "GLIBC_TUNABLES" in os.environ:
        return
    if platform.libc_ver()[0] != "glibc" or not getattr(sys, "orig_argv", None):
        return
    env = {**os.environ, "GLIBC_TUNABLES": ALLOCATOR_TUNABLES, "ZIPFHEAD_NO_REEXEC": "1"}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``zipfhead``; returns the exit status (0, or 2 for bad input).

    From the command line (``argv`` None), ``train`` and ``bench`` first restart the process with glibc's
    allocator tuned (see :func:`reexec_with_allocator_tunables`; ZIPFHEAD_NO_REEXEC=1 turns that off).
    """
    use_every_core()
    parser = build_parser()
    args = parser.parse_args(argv)
    if argv is None and args.command in _JAX_COMMANDS:
        reexec_with_allocator_tunables()
    try:
        return int(args.func(args))
    except ValueError as err:
        print(f"zipfhead: error: {err}", file=sys.stderr)
        return 2
    except (OSError, zipfile.BadZipFile) as err:  # files that cannot be read or written (the message names them)
        if isinstance(err, BrokenPipeError):  # the reader went away (`| head`): end quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush cannot fail
            return 0
        print(f"zipfhead: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
