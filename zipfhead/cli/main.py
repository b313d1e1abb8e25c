"""The ``zipfhead`` command line.

Distribution parameters are spelled as the papers' symbols in every command (``--K``, ``--N``, ``--alpha``,
``--q``, ``--B``, ``--p_B``, ``--p_C``, ``--eps``, ``--D``, ``--L``, ``--V``, ``--T``); ``--p-B`` style aliases
are accepted. Bad input prints one line ``zipfhead: error: ...`` and exits with status 2.

Subcommands import what they need when they run: ``zipfhead stats``, ``predict`` and ``calibrate`` never load JAX
(tests/unit/test_cli.py checks it).
"""

from __future__ import annotations

import argparse
import os
import sys
import zipfile
from collections.abc import Sequence
from typing import NoReturn

from zipfhead.cli.lens_commands import add_export_parser
from zipfhead.cli.sweep_commands import add_sweep_parsers
from zipfhead.cli.theory_commands import add_calibrate_parser, add_predict_parser, add_stats_parser
from zipfhead.cli.toy_commands import add_bench_parser, add_train_parser

__all__ = ["build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"zipfhead: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The full ``zipfhead`` parser (exposed for tests and documentation). Building it imports no JAX: each
    command module imports what its command needs when it runs."""
    parser = _Parser(prog="zipfhead", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    add_stats_parser(sub)
    add_train_parser(sub)
    add_predict_parser(sub)
    add_calibrate_parser(sub)
    add_sweep_parsers(sub)
    add_export_parser(sub)
    add_bench_parser(sub)
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

    From the command line (``argv`` None), the commands that run JAX (train, bench, sweep, merge, experiment)
    first restart the process with glibc's
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
