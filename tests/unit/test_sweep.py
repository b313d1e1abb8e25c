"""zipfhead sweep: resumable, shardable, mergeable phase-diagram sweeps (issue 5).

A tiny classification sweep (2 x 2 cells x 2 seeds, a 1-layer d_model 32 toy, 48 steps) keeps these fast; the
equalities are exact because every run here uses the same group composition and a forced vmap width.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from zipfhead.cli import main
from zipfhead.toy_models import presets
from zipfhead.toy_models import sweep as sw

GRID = {"axes": {"K": [32, 512], "p_B": [0.5, 1.0]}, "seeds": [0, 1], "train": {"steps": 48, "eval_every": 16}}
ENV = {
    **os.environ,
    "ZIPFHEAD_VMAP_WIDTH": "1",
    "ZIPFHEAD_NO_REEXEC": "1",
    "JAX_PLATFORMS": "cpu",
    "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
}


def _grid_file(tmp_path: Path, **extra) -> Path:
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(GRID | extra))
    return path


def _cli(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "zipfhead.cli", *args], env=ENV, capture_output=True, text=True, timeout=600, **kw
    )


def _small(monkeypatch) -> None:
    # one cell per group (4 groups), so that resuming and sharding have groups to skip and split
    monkeypatch.setattr(presets, "MAX_MODELS_PER_GROUP", 2)


def _read(out: Path) -> tuple[np.ndarray, list[list[str]]]:
    with np.load(out / "arrays.npz") as z:
        values = z["values"].copy()
    with open(out / "summary.csv") as f:
        rows = list(csv.reader(f))
    return values, rows


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run through the CLI (subprocess: 2 host devices, the model axis split over them)."""
    tmp = tmp_path_factory.mktemp("ref")
    grid = _grid_file(tmp)
    out = tmp / "run"
    proc = _cli(["sweep", "--grid", str(grid), "--out", str(out), "--no-progress", "--json"])
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(proc.stdout.strip().splitlines()[-1]), grid


def test_sweep_writes_results_theory_and_report(reference):
    out, printed, _ = reference
    values, rows = _read(out)
    cfg = sw.SweepConfig.from_dict(json.loads((out / "config.json").read_text()))
    assert values.shape[:2] == (4, 2) and values.shape[3] >= 3  # cell x seed x measure x step
    assert len(rows) == 1 + 4 * 2 and rows[0][:4] == ["cell", "K", "p_B", "seed"]
    theory = json.loads((out / "theory.json").read_text())
    made = [all(r[5] != "" for r in rows[1:] if int(r[0]) == c) for c in range(4)]
    assert len(theory["predictions"]) == 4 and theory["calibration_cells"] == cfg.calibration_cells(made)
    assert sorted(theory["calibration_cells"] + theory["held_out_cells"]) == [0, 1, 2, 3]
    assert set(printed["scores"]) >= {"median_relative_error", "spearman", "phase_agreement_percent"}
    assert {"spearman_seed_means", "noise_ceiling"} <= set(theory["scores"])
    for key in ("spearman", "median_relative_difference"):
        assert set(theory["scores"]["noise_ceiling"][key]) == {"median", "lo", "hi"}
    assert (out / "report.html").exists()
    for name in ("theory.json", "report.html", "config.json", "summary.csv"):  # issue 15: relative paths only
        assert str(out.parent) not in (out / name).read_text(), name


def test_zipfhead_report_rerenders_the_report_the_sweep_wrote(reference, tmp_path):
    """finish renders report.html from its records in memory; zipfhead report renders it again from the run's files
    (toy_models.sweep_result.load_sweep): the two are equal byte for byte."""
    import shutil

    out, _, _ = reference
    copy = tmp_path / "run"  # the same directory name: the report shows it
    shutil.copytree(out, copy)
    (copy / "report.html").unlink()
    assert main(["report", str(copy)]) == 0
    assert (copy / "report.html").read_bytes() == (out / "report.html").read_bytes()


def test_a_given_calibration_is_used_unchanged_and_scores_every_cell(reference, tmp_path, capsys):
    """sweep --calibration FILE on a finished sweep: nothing is fitted, the file's constants predict, every cell
    is scored; a sweep's theory.json is accepted as the file (its fitted constants). In-process: the groups are
    done, so only the aggregation runs."""
    import shutil

    out, _, grid = reference
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    given = Path(__file__).resolve().parents[2] / "theory" / "calibration.json"
    args = ["sweep", "--grid", str(grid), "--out", str(copy), "--no-progress", "--calibration"]
    assert main([*args, str(given)]) == 0
    theory = json.loads((copy / "theory.json").read_text())
    assert theory["calibration_note"].startswith("given") and theory["calibration_cells"] == []
    assert theory["held_out_cells"] == [0, 1, 2, 3]
    packaged = json.loads(given.read_text())
    assert all(theory["calibration"][k] == packaged[k] for k in ("time_scale", "iw_speed", "kappa", "leak"))
    for name in ("theory.json", "report.html"):  # the given file is named relative to the run directory
        text = (copy / name).read_text()
        assert str(tmp_path) not in text and str(given.parent) not in text, name
    assert main([*args, str(out / "theory.json")]) == 0
    again = json.loads((copy / "theory.json").read_text())
    fitted = json.loads((out / "theory.json").read_text())["calibration"]
    assert again["calibration"]["time_scale"] == fitted["time_scale"]
    assert main([*args, str(tmp_path / "missing.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_kill_9_then_rerun_equals_the_uninterrupted_run(reference, tmp_path):
    ref_out, _, grid = reference
    out = tmp_path / "run"
    args = ["sweep", "--grid", str(grid), "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "zipfhead.cli", *args], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while time.time() < deadline and not list(out.glob("groups/*/checkpoint*")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "arrays.npz").exists()
    assert _cli(args).returncode == 0
    ref_values, ref_rows = _read(ref_out)
    values, rows = _read(out)
    np.testing.assert_array_equal(values, ref_values)
    assert rows == ref_rows


def test_finished_groups_are_not_recomputed(monkeypatch, tmp_path):
    _small(monkeypatch)
    cfg = sw.load_grid_file(_grid_file(tmp_path), sw.preset("demo"))
    out = tmp_path / "run"
    assert sw.run_sweep(cfg, out, progress=False, stop_after_groups=2) is None
    done = sorted(p.parent.name for p in out.glob("groups/*/result.json"))
    stamps = {d: (out / "groups" / d / "result.npz").stat().st_mtime_ns for d in done}
    scores = sw.run_sweep(cfg, out, progress=False)
    assert scores is not None and len(done) == 2
    assert all((out / "groups" / d / "result.npz").stat().st_mtime_ns == stamps[d] for d in done)


def test_shards_merge_into_the_unsharded_result(monkeypatch, tmp_path):
    _small(monkeypatch)
    monkeypatch.setenv("ZIPFHEAD_VMAP_WIDTH", "1")
    cfg = sw.load_grid_file(_grid_file(tmp_path), sw.preset("demo"))
    whole = tmp_path / "whole"
    sw.run_sweep(cfg, whole, progress=False)
    parts = [tmp_path / f"part{i}" for i in range(2)]
    for i, p in enumerate(parts):
        assert sw.run_sweep(cfg, p, shard=(i, 2), progress=False) is None
    merged = tmp_path / "merged"
    sw.merge(parts, merged)
    a, ra = _read(whole)
    b, rb = _read(merged)
    np.testing.assert_array_equal(a, b)
    assert ra == rb


@pytest.mark.parametrize(
    ("extra", "args", "match"),
    [
        ({"axes": {"Q": [1, 2]}}, [], "axis 'Q'"),
        ({"axes": {}}, [], "empty grid"),
        ({"bogus": 1}, [], "unknown keys"),
        ({}, ["--shard", "2/2"], "--shard"),
        ({"axes": {"K": [32], "weight_decay": [0.0, -1.0]}}, [], "weight_decay = -1.0"),
        ({"axes": {"K": [32], "lr": [0.0]}}, [], "lr = 0.0"),
    ],
)
def test_bad_grids_and_shards_give_one_line_errors(tmp_path, capsys, extra, args, match):
    grid = tmp_path / "g.json"
    grid.write_text(json.dumps(GRID | extra))
    assert main(["sweep", "--grid", str(grid), "--out", str(tmp_path / "o"), "--no-progress", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and match in err


def test_a_directory_of_another_config_is_refused_unless_overwrite(tmp_path, capsys):
    cfg = sw.load_grid_file(_grid_file(tmp_path), sw.preset("demo"))
    out = tmp_path / "run"
    sw._check_config(out, cfg, overwrite=False)
    other = tmp_path / "g2.json"
    other.write_text(json.dumps(GRID | {"seeds": [5]}))
    assert main(["sweep", "--grid", str(other), "--out", str(out), "--no-progress"]) == 2
    assert "different config" in capsys.readouterr().err
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file").write_text("x")
    assert main(["sweep", "--grid", str(other), "--out", str(tmp_path / "junk"), "--no-progress"]) == 2
    assert "not a sweep directory" in capsys.readouterr().err


def test_a_kill_while_writing_the_config_does_not_block_the_rerun(tmp_path):
    """A kill during config.json's write leaves only config.json.tmp: the rerun removes it and starts."""
    cfg = sw.load_grid_file(_grid_file(tmp_path), sw.preset("demo"))
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json.tmp").write_text('{"name": "half-writ')
    sw._check_config(out, cfg, overwrite=False)
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]
    sw._check_config(out, cfg, overwrite=False)  # and it is recognised as the same sweep


def test_a_diverging_cell_is_marked_and_the_report_is_still_written(tmp_path, monkeypatch):
    """lr = 50 sends the loss past the divergence bound (it stays finite): those models are marked diverged in
    summary.csv and the report, are neither calibrated on nor scored, and the sweep finishes."""
    monkeypatch.setenv("ZIPFHEAD_VMAP_WIDTH", "1")
    grid = tmp_path / "lr.json"
    grid.write_text(json.dumps(GRID | {"axes": {"K": [512], "lr": [0.003, 50.0]}}))
    out = tmp_path / "run"
    assert main(["sweep", "--grid", str(grid), "--out", str(out), "--no-progress"]) == 0
    with open(out / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    by_lr = {float(r["lr"]): r for r in rows if r["seed"] == "0"}
    assert by_lr[50.0]["diverged"] == "1" and by_lr[50.0]["measured_phase"] == sw.DIVERGED
    assert by_lr[0.003]["diverged"] == "0" and by_lr[0.003]["measured_phase"] != sw.DIVERGED
    theory = json.loads((out / "theory.json").read_text())
    diverging_cell = int(by_lr[50.0]["cell"])
    assert diverging_cell not in theory["held_out_cells"] and by_lr[50.0]["predicted_phase"] == ""
    assert ">diverged<" in (out / "report.html").read_text()  # its row of the summary table


def test_weight_decay_axis_gives_each_cell_its_decay():
    cfg = sw.preset("transience")
    assert "weight_decay" in cfg.axis_names and cfg.train.decay_on == "attention"
    run = cfg.group_run(list(range(len(cfg.cells()))))
    want = [c["weight_decay"] for c in cfg.cells() for _ in cfg.seeds]
    assert run.model_weight_decays == want and len(set(want)) > 1


def test_presets_are_valid_and_the_default_is_large_enough():
    for name in sw.PRESETS:
        for scale in ("fast", "full"):
            cfg = sw.preset(name, scale)
            assert cfg.cells() and cfg.groups()
    demo = sw.preset("demo")
    assert len(demo.seeds) >= 2 and len(demo.groups()) == 1
    # a ranking can be scored: at least 12 held-out cells, K from the memorisation edge to at least 8192
    Ks = dict(demo.axes)["K"]
    assert len(demo.cells()) - len(demo.calibration_cells(np.ones(len(demo.cells()), bool))) >= 12
    assert min(Ks) <= 256 and max(Ks) >= 8192
    # the reproduction presets train as the demo does, so that the demo's calibration carries over unchanged
    for name in ("chan2022", "reddy2024"):
        assert sw.preset(name).train == demo.train


def test_experiment_findings_read_a_finished_sweep(reference):
    """collect() gives every cell and seed of a sweep with its config, its transition by the one rule on the
    regular grid (None where the phase never formed), and the kept curves; an unknown experiment is refused."""
    from zipfhead.toy_models.experiments import collect, run_experiment

    out, _, _ = reference
    found = collect(out)
    cfg = sw.SweepConfig.from_dict(json.loads((out / "config.json").read_text()))
    assert found["config"] == json.loads(json.dumps(cfg.to_dict()))
    assert [c["cell"] for c in found["cells"]] == cfg.cells()
    for cell in found["cells"]:
        assert [r["seed"] for r in cell["seeds"]] == list(cfg.seeds)
        for r in cell["seeds"]:
            assert len(r["curves"]["icl_acc"]) == len(found["steps"])
            assert r["transition_step"] is None or found["steps"][0] <= r["transition_step"] <= found["steps"][-1]
    with pytest.raises(ValueError, match="experiment = 'bogus'"):
        run_experiment("bogus", out)


def test_axis_values_take_their_parameter_type():
    """K written as 256.0 (a grid file, --axis) is the integer 256 and p_B written as 1 is the float 1.0, so the
    CSV and config.json spell each parameter one way (issue 15: summary.csv showed 256.0 or 64 by origin)."""
    cfg = dataclasses.replace(sw.preset("demo"), axes=(("K", (256.0, 512)), ("p_B", (1, 0.5)), ("lr", (1, 0.01))))
    for cell in cfg.cells():
        assert type(cell["K"]) is int and type(cell["p_B"]) is float and type(cell["lr"]) is float
    assert sw.SweepConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


class _Kill(BaseException):
    """Stands for kill -9 at one write: a BaseException, so that no handler in the code under test catches it."""


def _final_files(out: Path) -> dict[str, bytes]:
    """The sweep's results, byte for byte, and the names of every file in the directory (a leftover would show
    here). Wall times are left out: each group's result.json and the report's table of training times hold them
    (profile.json, all wall times, is compared by name only)."""
    files = {name: (out / name).read_bytes() for name in ("arrays.npz", "summary.csv", "theory.json")}
    report = (out / "report.html").read_text()
    files["report.html"] = re.sub(r"<h3>Training time per group.*?</table>", "", report, flags=re.S).encode()
    assert files["report.html"] != report.encode()  # the timing table was found and taken out
    for info in sorted(out.glob("groups/*/result.json")):
        kept = json.loads(info.read_text())
        for timed in (kept, kept["summary"]):
            for key in ("seconds", "data_seconds", "timings"):
                timed.pop(key, None)
        files[str(info.relative_to(out))] = json.dumps(kept).encode()
    files["listing"] = "\n".join(sorted(str(p.relative_to(out)) for p in out.rglob("*"))).encode()
    return files


def test_a_kill_between_any_two_writes_then_a_rerun_gives_the_uninterrupted_files(monkeypatch, tmp_path):
    """Issue 15: the sweep is stopped at chosen writes (theory._io.WRITE_HOOK), as a kill there would stop it,
    and rerun; the final files must equal an uninterrupted run's, bit for bit. The points cover every kind of
    write: the config's temporary file before its rename; a checkpoint payload in place before its manifest; a
    manifest's temporary file; a superseded payload's removal; a group's result.npz before its result.json; a
    result.json before the checkpoint's removal; theory.json before summary.csv and the report. Random moments
    are covered by the kill -9 test above."""
    import zipfhead.theory._io as io_

    _small(monkeypatch)  # two groups of one cell: every kind of write happens, each trial stays short
    cfg = sw.load_grid_file(_grid_file(tmp_path, axes={"K": [32, 512]}), sw.preset("demo"))
    events: list[tuple[str, str]] = []
    monkeypatch.setattr(io_, "WRITE_HOOK", lambda path, event: events.append((path.name, event)))
    ref = tmp_path / "ref" / "run"  # every run directory is named run: the report shows the directory's name
    sw.run_sweep(cfg, ref, progress=False)
    monkeypatch.setattr(io_, "WRITE_HOOK", None)
    expected = _final_files(ref)

    def first(name_start: str, event: str, after: int = 0) -> int:
        hits = [k for k, (n, e) in enumerate(events) if n.startswith(name_start) and e == event and k >= after]
        assert hits, (name_start, event)
        return hits[0]

    result_npz = first("result.npz", "renamed")
    points = {
        "config.json written, not renamed": first("config.json", "written"),
        "payload in place, manifest not": first("checkpoint-", "renamed"),
        "manifest written, not renamed": first("checkpoint.json", "written"),
        "superseded payload removed": first("checkpoint-", "removed"),
        "result.npz in place, result.json not": result_npz,
        "result.json in place, checkpoint kept": first("result.json", "renamed", result_npz),
        "theory.json in place, summary and report not": first("theory.json", "renamed"),
    }
    assert len(set(points.values())) == len(points) >= 5
    for what, k in points.items():
        out = tmp_path / f"kill{k}" / "run"
        seen = iter(range(len(events) + 1))

        def hook(path: Path, event: str, k: int = k, seen=seen) -> None:
            if next(seen) == k:
                raise _Kill

        monkeypatch.setattr(io_, "WRITE_HOOK", hook)
        with pytest.raises(_Kill):
            sw.run_sweep(cfg, out, progress=False)
        monkeypatch.setattr(io_, "WRITE_HOOK", None)
        sw.run_sweep(cfg, out, progress=False)
        got = _final_files(out)
        assert got.keys() == expected.keys() and got["listing"] == expected["listing"], what
        for name in expected:
            assert got[name] == expected[name], f"{what}: {name} differs"


def test_a_markov_sweep_measures_the_bigram_stage_and_predicts_it(tmp_path):
    """A Markov sweep (issue 12) trains MarkovStream toys, measures each transition from the unigram rung (bigram
    progress 0, not its step-0 value far below at the uniform rung), predicts every cell with the Markov reduced
    model, and collect() reads it. Sparse rows (beta 0.5) form the head within 300 steps in these toys (the
    preset's measured onset there is ~190 steps)."""
    from zipfhead.theory.distributions import MarkovTask
    from zipfhead.toy_models.experiments import collect
    from zipfhead.toy_models.model import ModelConfig
    from zipfhead.toy_models.train import TrainConfig

    cfg = sw.SweepConfig(
        "markov-test",
        MarkovTask(k=3, T=24, beta=0.5, alpha=0.0),
        ModelConfig(n_ctx=23, d_vocab=3, d_vocab_out=3, n_layers=2, d_model=32, positional="learned"),
        TrainConfig(lr=3e-3, batch_size=32, steps=300, eval_every=52, eval_size=128),
        (("beta", (0.5, 1.5)),),
        seeds=(0, 1),
    )
    sw.run_sweep(cfg, tmp_path / "run", progress=False)
    summary = json.loads((tmp_path / "run" / "groups" / "g000" / "result.json").read_text())["summary"]
    assert summary["headline"] == "bigram_progress" and summary["chance"] == 0.0
    theory = json.loads((tmp_path / "run" / "theory.json").read_text())
    assert all(p["phase"] in ("icl", "neither") for p in theory["predictions"])
    assert theory["predictions"][0]["transition_step"] is not None
    found = collect(tmp_path / "run")
    first = found["cells"][0]["seeds"]
    assert all(r["transition_step"] is not None and "iwl_final" not in r for r in first)
    assert len(first[0]["curves"]["bigram_progress"]) == len(found["steps"])
