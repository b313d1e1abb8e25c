"""The CLI's bad-input fuzz (issue 15, item 6): every value flag of every command, and every kind of file a command
reads, given something wrong. Each case must end in exit status 2 and one line ``zipfhead: error: ...`` that names
the flag or the file, with no traceback, and must never start training.

The table is generated from the parser itself (every flag that takes an int, a float or a string gets values no
parameter accepts), so a flag added later is fuzzed without editing this file; the file cases are written out.
Training is replaced by a sentinel that fails the case: an invalid input that got as far as training was accepted.
"""

from __future__ import annotations

import argparse
import json
import zipfile
from pathlib import Path

import pytest

from zipfhead.cli import build_parser, main
from zipfhead.toy_models import train as train_mod

#: values that no int, float or string parameter of zipfhead accepts
BAD_NUMBERS = ("abc", "nan", "inf", "-1e9")
BAD_STRING = "bogus-value"
#: flags whose every string is a valid value (paths, free-form specs, or a choice argparse already checks)
FREE_FLAGS = {"out", "grid", "calibration", "axis", "shard"}
#: commands that take flags only (the others are fuzzed through their files below)
FLAG_COMMANDS = ("stats", "predict", "train", "sweep")


class _Accepted(BaseException):
    """Raised instead of training: the input got past every check."""


def _value_flags(command: str) -> list[tuple[str, str, type]]:
    """(spelling, dest, type) of every flag of ``command`` that takes a value."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    flags = []
    for action in sub.choices[command]._actions:
        if not action.option_strings or action.nargs == 0 or action.dest in FREE_FLAGS or action.choices:
            continue
        flags.append((action.option_strings[-1], action.dest, action.type or str))
    return flags


def _flag_cases() -> list[tuple[list[str], str]]:
    cases = []
    for command in FLAG_COMMANDS:
        for spelling, dest, kind in _value_flags(command):
            values = BAD_NUMBERS if kind in (int, float) else (BAD_STRING,)
            for value in values:
                cases.append(([command, spelling, value], dest))
    return cases


FLAG_CASES = _flag_cases()


def _run(argv: list[str], capsys) -> tuple[int, list[str]]:
    try:
        status = main(argv)
    except SystemExit as exc:
        status = exc.code
    return status, capsys.readouterr().err.strip().splitlines()


@pytest.fixture(autouse=True)
def _no_training(monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise _Accepted

    monkeypatch.setattr(train_mod, "train", refuse)
    monkeypatch.chdir(tmp_path)  # default output directories land in the test's own folder


def _names(line: str, dest: str) -> bool:
    """Whether an error line names the parameter ``dest`` (as the flag, or the config field it sets)."""
    spellings = {dest, dest.replace("_", "-"), f"--{dest}", f"--{dest.replace('_', '-')}"}
    return any(s in line for s in spellings)


@pytest.mark.parametrize(("argv", "dest"), FLAG_CASES, ids=[" ".join(a) for a, _ in FLAG_CASES])
def test_a_bad_flag_value_is_one_line_naming_the_flag(argv, dest, capsys, tmp_path) -> None:
    try:
        status, lines = _run([*argv, *(["--out", str(tmp_path / "o")] if argv[0] != "stats" else [])], capsys)
    except _Accepted:
        pytest.fail(f"{argv} was accepted: training started")
    assert status == 2, lines
    assert len(lines) == 1 and lines[0].startswith("zipfhead: error:"), lines
    assert _names(lines[0], dest), lines


def _files(tmp_path: Path) -> dict[str, Path]:
    """One file of every wrong kind a command can be handed."""
    f = {
        "missing": tmp_path / "missing.json",
        "directory": tmp_path / "adir",
        "empty": tmp_path / "empty.json",
        "not_json": tmp_path / "garbage.json",
        "json_list": tmp_path / "list.json",
        "truncated_npz": tmp_path / "run" / "arrays.npz",
    }
    f["directory"].mkdir()
    f["empty"].write_text("")
    f["not_json"].write_bytes(b"\x00\x01 not json {")
    f["json_list"].write_text("[1, 2, 3]")
    run = tmp_path / "run"
    run.mkdir()
    buf = tmp_path / "full.npz"
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("values.npy", b"\x93NUMPY" + b"\x00" * 200)
    f["truncated_npz"].write_bytes(buf.read_bytes()[:60])
    (run / "config.json").write_text("[1]")
    (run / "theory.json").write_text('{"scores": 3}')
    (run / "summary.json").write_text('{"no_models": true}')
    return f


FILE_CASES = [
    (["predict", "--calibration", "{missing}"], "missing.json"),
    (["predict", "--calibration", "{directory}"], "adir"),
    (["predict", "--calibration", "{empty}"], "empty.json"),
    (["predict", "--calibration", "{not_json}"], "garbage.json"),
    (["predict", "--calibration", "{json_list}"], "list.json"),
    (["sweep", "--grid", "{missing}", "--out", "{tmp}/o"], "missing.json"),
    (["sweep", "--grid", "{directory}", "--out", "{tmp}/o"], "adir"),
    (["sweep", "--grid", "{empty}", "--out", "{tmp}/o"], "empty.json"),
    (["sweep", "--grid", "{not_json}", "--out", "{tmp}/o"], "garbage.json"),
    (["sweep", "--grid", "{json_list}", "--out", "{tmp}/o"], "list.json"),
    (["sweep", "--calibration", "{not_json}", "--out", "{tmp}/o"], "garbage.json"),
    (["sweep", "--out", "{empty}"], "empty.json"),
    (["train", "--out", "{empty}"], "empty.json"),
    (["merge", "{missing}", "--out", "{tmp}/o"], "missing.json"),
    (["merge", "{empty}", "--out", "{tmp}/o"], "empty.json"),
    (["report", "{missing}"], "missing.json"),
    (["report", "{empty}"], "empty.json"),
    (["report", "{tmp}/run"], "run"),
    (["export", "{missing}", "--to", "lens"], "missing.json"),
    (["export", "{tmp}/run", "--to", "lens"], "run"),
    (["calibrate", "{missing}", "--out", "{tmp}/c.json"], "missing.json"),
    (["calibrate", "{tmp}/run", "--out", "{tmp}/c.json"], "run"),
    (["calibrate", "{directory}", "--out", "{tmp}/c.json"], "adir"),
    (["calibrate", "{directory}", "--out", "{packaged}"], "packaged calibration"),
    (["experiment", "no-such-experiment", "--out", "{tmp}/o"], "no-such-experiment"),
    (["sweep", "--shard", "1/0", "--out", "{tmp}/o"], "shard"),
    (["sweep", "--axis", "K", "--out", "{tmp}/o"], "K"),
    (["predict", "--grid", "K=1:2", "p_B=0:1:5"], "K=1:2"),
    (["predict", "--grid", "K=64:128:5", "K=64:128:5"], "K"),
]


@pytest.mark.parametrize(("argv", "needle"), FILE_CASES, ids=[" ".join(a[:3]) for a, _ in FILE_CASES])
def test_a_bad_file_is_one_line_naming_it(argv, needle, capsys, tmp_path) -> None:
    files = _files(tmp_path)
    packaged = Path(__file__).resolve().parents[2] / "theory" / "calibration.json"
    filled = [a.format(tmp=tmp_path, packaged=packaged, **files) for a in argv]
    try:
        status, lines = _run(filled, capsys)
    except _Accepted:
        pytest.fail(f"{filled} was accepted: training started")
    assert status == 2, lines
    assert len(lines) == 1 and lines[0].startswith("zipfhead: error:"), lines
    assert needle in lines[0], lines


def test_the_table_covers_every_value_flag() -> None:
    """The generated table is not empty by accident: every command's value flags are in it (the count is the
    issue's 'cases tried')."""
    for command in FLAG_COMMANDS:
        assert _value_flags(command), command
    assert len(FLAG_CASES) + len(FILE_CASES) >= 300
    print(json.dumps({"flag_cases": len(FLAG_CASES), "file_cases": len(FILE_CASES)}))
