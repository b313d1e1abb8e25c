"""The ``zipfhead`` command line: the issue's headline check, tables, JSON, symbolic output and bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from zipfhead.cli import main
from zipfhead.theory.distributions import ClassificationTask
from zipfhead.theory.samplers import sample_classes

ZIPFHEAD = [sys.executable, "-m", "zipfhead.cli"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*ZIPFHEAD, *args], capture_output=True, text=True, timeout=300, check=False)


def test_stats_json_p_query_in_context_agrees_with_monte_carlo():
    """`zipfhead stats --K 512 --alpha 1 --N 8 --json` against the sampler, within 5 binomial standard errors.

    The command runs as a user would run it (a subprocess); the Monte Carlo uses the same task (the CLI's
    defaults for the other parameters, read back from the JSON's own record of the task).
    """
    out = run("stats", "--K", "512", "--alpha", "1", "--N", "8", "--json")
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    predicted = payload["p_query_in_context"]
    task = ClassificationTask.from_dict(payload["classification_task"])
    assert (task.K, task.alpha, task.N) == (512, 1.0, 8)
    n = 400_000
    batch = sample_classes(task, n, seed=20261129)
    hits = (batch.classes[:, :-1] == batch.classes[:, -1:]).any(axis=1)
    se = math.sqrt(predicted * (1 - predicted) / n)
    assert abs(hits.mean() - predicted) < 5 * se
    for key in ("p_query_in_context", "entropy_nats", "expected_distinct", "normaliser"):
        assert isinstance(payload[key], float)


def test_stats_table_is_readable(capsys):
    """The default table names each quantity once and prints finite numbers."""
    assert main(["stats"]) == 0
    text = capsys.readouterr().out
    for key in ("normaliser", "entropy_nats", "p_query_in_context", "expected_distinct", "p_trigger_repeat"):
        assert key in text
    numbers = [float(line.split()[-1]) for line in text.splitlines() if line.startswith("  ")]
    assert numbers and all(np.isfinite(numbers))


def test_hyphenated_aliases_and_methods_agree(capsys):
    """--p-B is --p_B; the exact and asymptotic methods print the same numbers to 1e-10."""
    main(["stats", "--p-B", "0.25", "--alpha", "1.3", "--json"])
    exact = json.loads(capsys.readouterr().out)
    main(["stats", "--p_B", "0.25", "--alpha", "1.3", "--json", "--method", "asymptotic"])
    asym = json.loads(capsys.readouterr().out)
    assert exact["classification_task"]["p_B"] == 0.25
    for key in ("p_query_in_context", "expected_distinct", "unmemorised_mass", "p_trigger_repeat"):
        assert asym[key] == pytest.approx(exact[key], rel=1e-10)


def test_symbolic_and_latex(capsys):
    """--symbolic prints sympy expressions; --latex prints LaTeX."""
    assert main(["stats", "--symbolic"]) == 0
    assert "Sum(" in capsys.readouterr().out
    assert main(["stats", "--latex"]) == 0
    assert "\\sum" in capsys.readouterr().out


BAD_INPUT = [
    (["stats", "--K", "0"], "K = 0"),
    (["stats", "--alpha", "-1"], "alpha = -1.0"),
    (["stats", "--alpha", "nan"], "alpha = nan"),
    (["stats", "--B", "3"], "B = 3"),
    (["stats", "--p_B", "1.5"], "p_B = 1.5"),
    (["stats", "--L", "1"], "L = 1"),
    (["stats", "--T", "1"], "T = 1"),
    (["stats", "--K", "ten"], "--K"),
    (["stats", "--c", "0"], "c = 0.0"),
    (["nonsense"], "nonsense"),
]


def _one_error_line(stderr: str, needle: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("zipfhead: error:") and needle in lines[0]
    assert "Traceback" not in stderr


@pytest.mark.parametrize(("args", "needle"), BAD_INPUT)
def test_bad_input_is_one_line_and_status_2(args, needle, capsys):
    """Bad input: exit status 2, one line on stderr naming the parameter, no traceback (in-process: the
    subprocess test below runs two of them as a user would)."""
    try:
        status = main(args)
    except SystemExit as exc:  # argparse's own errors
        status = exc.code
    assert status == 2
    _one_error_line(capsys.readouterr().err, needle)


@pytest.mark.parametrize(("args", "needle"), [BAD_INPUT[0], BAD_INPUT[7]])
def test_bad_input_from_the_command_line(args, needle):
    """The same from a real process: a value error and a parser error."""
    out = run(*args)
    assert out.returncode == 2
    _one_error_line(out.stderr, needle)


def test_bench_quick_runs(capsys):
    """The benchmark's code path (tiny sizes): every sampler and statistic is reported with positive rates."""
    assert main(["bench", "--quick", "--json", "--part", "data"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert len(payload["samplers"]) == 3 and len(payload["statistics"]) == 10
    assert all(r["numba_positions_per_s"] > 0 and r["speedup_vs_numpy"] > 0 for r in payload["samplers"])
    assert all(r["exact_ms"] > 0 and r["asymptotic_ms"] > 0 for r in payload["statistics"])


REEXEC_SCRIPT = """
import os, sys
print("start", os.environ.get("GLIBC_TUNABLES"), flush=True)
sys.argv = ["zipfhead", "train", "--steps", "-1"]
from zipfhead.cli import main
sys.exit(main())
"""


@pytest.mark.parametrize("disabled", [False, True])
def test_train_restarts_once_with_allocator_tunables(disabled):
    """`zipfhead train` restarts itself once with glibc's allocator tuned (unless ZIPFHEAD_NO_REEXEC=1); bad
    input still gives one line and exit status 2."""
    import os
    import platform

    from zipfhead.cli.main import ALLOCATOR_TUNABLES

    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "ZIPFHEAD_NO_REEXEC")}
    if disabled:
        env["ZIPFHEAD_NO_REEXEC"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", REEXEC_SCRIPT], capture_output=True, text=True, timeout=300, check=False, env=env
    )
    assert out.returncode == 2
    starts = out.stdout.split()
    if disabled or platform.libc_ver()[0] != "glibc":
        assert starts == ["start", "None"]
    else:
        assert starts == ["start", "None", "start", ALLOCATOR_TUNABLES]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zipfhead: error: steps") and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ("stats", "--K", "512", "--json"),
        ("predict", "--K", "512", "--p_B", "1", "--json"),
        ("calibrate", "--help"),
    ],
)
def test_theory_commands_never_import_jax(argv):
    """``zipfhead stats``, ``predict`` and ``calibrate`` run without loading JAX (nor the toys' engine): a fresh
    interpreter runs the command and then reports which of those modules it holds."""
    code = (
        "from zipfhead.cli import main\n"
        "try:\n"
        f"    code = main({list(argv)!r})\n"
        "except SystemExit as stop:\n"
        "    code = stop.code\n"
        "print('CODE', code, file=sys.stderr)\n"
    )
    err = _held_after(code)
    assert "CODE 0" in err and "HELD []" in err, err[-2000:]


def _held_after(code: str) -> str:
    """Run ``code`` in a fresh interpreter (``sys`` imported), then print which of jax, optax and the toys' engine
    and sweep modules it loaded (``HELD [...]``); returns its stderr."""
    probe = (
        "import sys\n"
        f"{code}"
        "toys = ('zipfhead.toy_models.train', 'zipfhead.toy_models.sweep')\n"
        "print('HELD', [m for m in ('jax', 'optax', *toys) if m in sys.modules], file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=False)
    return out.stderr


def test_the_command_line_offers_every_experiment():
    """The JAX-free list the parser offers (toy_models.presets) is the experiments module's, in order."""
    from zipfhead.toy_models.experiments import EXPERIMENTS
    from zipfhead.toy_models.presets import EXPERIMENT_NAMES

    assert tuple(EXPERIMENTS) == EXPERIMENT_NAMES


def _help_of(command: str) -> dict[str, str]:
    """Each option's help text in ``zipfhead COMMAND``'s parser, by destination."""
    from zipfhead.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    return {a.dest: a.help or "" for a in sub._actions if a.option_strings}


def test_flags_are_generated_from_the_configs_fields():
    """Every field of the three distributions, the model and the training config is a flag of ``train``, with a
    description from its class's docstring (no field lacks one) and the class's default in brackets: the
    defaults below are the configs' documented ones, written out here, not read from the classes."""
    import dataclasses

    from zipfhead.cli.flags import field_docs
    from zipfhead.theory.distributions import ClassificationTask, MarkovTask, TokenStreamTask
    from zipfhead.theory.schedule import Schedule
    from zipfhead.toy_models.config import ModelConfig, TrainConfig

    helps = _help_of("train")
    for cls in (ClassificationTask, TokenStreamTask, MarkovTask, ModelConfig, TrainConfig, Schedule):
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            assert f.name in docs, f"{cls.__name__}.{f.name} has no description in its docstring"
            if cls is not Schedule and f.name not in ("n_ctx", "d_vocab", "d_vocab_out", "dense_factor"):
                assert f.name in helps, f"zipfhead train has no flag for {cls.__name__}.{f.name}"
    assert helps["K"].endswith("[512]") and helps["p_B"].endswith("[0.9]") and helps["eps"].endswith("[0.1]")
    assert helps["T"].endswith("[token streams 256, Markov chains 64]")
    assert helps["alpha"].endswith("[classification 1, token streams 1, Markov chains 0]")
    assert helps["lr"].endswith("[0.003]") and helps["steps"].endswith("[2000]")
    assert helps["eval_size"].endswith("[512]")
    assert helps["n_layers"].endswith("[2]") and helps["init_scale"].endswith("[0.8]")
    for text in helps.values():  # plain text: no docstring markup
        assert "``" not in text and ":class:" not in text and ":data:" not in text, text


def test_predict_takes_only_what_the_theory_reads():
    """``predict``'s flags are the distributions', the theory's schedule and n_layers, and its own."""
    from zipfhead.cli.flags import THEORY_FLAGS

    helps = _help_of("predict")
    own = {"help", "json", "calibration", "grid", "out"}
    distribution = set(_help_of("stats")) - {"help", "c", "t", "method", "json", "symbolic", "latex"}
    assert set(helps) == own | distribution | THEORY_FLAGS
    assert {"seeds", "n_heads", "d_model", "momentum", "eval_every", "sampler"}.isdisjoint(helps)


@pytest.mark.parametrize(
    ("flags", "field", "value"),
    [
        (["--lr", "0.01"], "lr", 0.01),
        (["--beta2", "0.99"], "beta2", 0.99),
        (["--decay-on", "attention"], "decay_on", "attention"),
        (["--eval_size", "64"], "eval_size", 64),
        ([], "eval_every", 100),
    ],
)
def test_train_flags_reach_the_config(flags, field, value):
    """A given flag sets its field; an unset one leaves the config's default (TrainConfig's eval_every is 100)."""
    from zipfhead.cli import build_parser
    from zipfhead.cli.toy_commands import run_config_from_args

    run = run_config_from_args(build_parser().parse_args(["train", *flags]))
    assert getattr(run.train, field) == value


def test_presets_and_configs_import_no_jax(tmp_path):
    """Every preset, its groups' run configs and a grid file are built without loading JAX or the toys' engine
    (toy_models.presets and toy_models.config are the JAX-free face of the toys)."""
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"axes": {"K": [64, 256]}, "seeds": [0]}))
    code = (
        "from zipfhead.toy_models.presets import PRESETS, load_grid_file, preset\n"
        "for name in PRESETS:\n"
        "    cfg = preset(name)\n"
        "    runs = [cfg.group_run(g) for g in cfg.groups()]\n"
        f"cfg = load_grid_file({str(grid)!r}, preset('demo'))\n"
        "runs = [cfg.group_run(g) for g in cfg.groups()]\n"
    )
    err = _held_after(code)
    assert "HELD []" in err, err[-2000:]
