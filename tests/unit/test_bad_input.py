"""Bad input to the CLI ends in one line naming what is wrong, exit status 2, and no traceback (issue 15).

The table covers the cases that used to end in a traceback or to be accepted: files where directories belong,
grid files of the wrong shape or types, values that cannot be an axis, and calibration files with a wrong field.
Each runs in-process through :func:`zipfhead.cli.main`; ``tests/unit/test_cli.py`` runs such errors from a real
process too.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zipfhead.cli import main

GRIDS = {
    "axis_not_a_list.json": {"axes": {"K": "abc"}},
    "axes_not_a_table.json": {"axes": "K"},
    "seeds_not_a_list.json": {"axes": {"K": [64]}, "seeds": 3},
    "unknown_task_key.json": {"axes": {"K": [64]}, "task": {"bogus": 1}},
    "unknown_train_key.json": {"axes": {"K": [64]}, "train": {"bogus": 1}},
}

CASES = [
    (["sweep", "--out", "{file}", "--steps", "1"], "is a file, not a directory"),
    (["sweep", "--out", "", "--steps", "1"], "--out = ''"),
    (["train", "--out", "", "--steps", "1"], "--out = ''"),
    (["train", "--out", "{file}", "--steps", "1"], "is a file, not a directory"),
    (["sweep", "--grid", "{dir}/axis_not_a_list.json", "--out", "{dir}/o"], "axis 'K' = 'abc'"),
    (["sweep", "--grid", "{dir}/axes_not_a_table.json", "--out", "{dir}/o"], "axes = 'K'"),
    (["sweep", "--grid", "{dir}/seeds_not_a_list.json", "--out", "{dir}/o"], "seeds = 3"),
    (["sweep", "--grid", "{dir}/unknown_task_key.json", "--out", "{dir}/o"], "unknown keys ['bogus'] under [task]"),
    (["sweep", "--grid", "{dir}/unknown_train_key.json", "--out", "{dir}/o"], "unknown keys ['bogus'] under [train]"),
    (["sweep", "--axis", "K=inf", "--out", "{dir}/o"], "axis 'K' has the value inf"),
    (["sweep", "--axis", "K=64.7", "--out", "{dir}/o"], "K is an integer parameter"),
    (["sweep", "--axis", "K=64", "--axis", "K=128", "--out", "{dir}/o"], "axis 'K' is given twice"),
    (["predict", "--calibration", "{dir}/residuals.json"], "residuals = 5"),
]


@pytest.mark.parametrize(("args", "needle"), CASES, ids=[" ".join(a[:3]) for a, _ in CASES])
def test_bad_input_is_one_line_naming_it(args, needle, tmp_path: Path, capsys) -> None:
    (tmp_path / "afile").write_text("")
    for name, grid in GRIDS.items():
        (tmp_path / name).write_text(json.dumps(grid))
    (tmp_path / "residuals.json").write_text(json.dumps({"time_scale": 1.0, "residuals": 5}))
    argv = [a.format(file=tmp_path / "afile", dir=tmp_path) for a in args]
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse's own errors
        status = exc.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert status == 2, err
    assert len(lines) == 1 and lines[0].startswith("zipfhead: error:") and needle in lines[0], err
    assert not (tmp_path / "o").exists()  # nothing was trained or written


def test_a_sweep_on_its_own_axes_is_named_after_them() -> None:
    """`zipfhead sweep --axis ...` is not the demo: its name (and so its default directory) says its axes."""
    from zipfhead.cli import build_parser
    from zipfhead.cli.sweep_commands import sweep_config_from_args

    args = build_parser().parse_args(["sweep", "--axis", "K=64,256", "--axis", "eps=0,0.5"])
    assert sweep_config_from_args(args).name == "demo-K-eps"
    assert sweep_config_from_args(build_parser().parse_args(["sweep"])).name == "demo"
