"""The sweep report: a hand-made finished sweep directory (no training) rendered to one self-contained HTML file,
from the run's files or from its records (toy_models.sweep_result) in memory."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from tests.unit.test_cli import _held_after
from zipfhead.theory.phases import FORMED
from zipfhead.toy_models.report import curves_figure, phase_figure, render_report, transition_figure, write_report
from zipfhead.toy_models.sweep import SweepConfig, preset, write_arrays, write_summary_csv
from zipfhead.toy_models.sweep_result import load_sweep, read_group_times, summary_rows

SECTIONS = (
    "Sweep",
    "Held-out prediction errors, beside the noise ceiling",
    "Phase diagram",
    "Measured vs predicted transition step",
    "Per-cell curves",
    "Summary table",
)


def _fake_sweep(out: Path, cfg: SweepConfig, headline: str = "icl_acc") -> None:
    """Write config.json, arrays.npz, summary.csv, theory.json and group timings consistent with cfg."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    cells = cfg.cells()
    C, S = len(cells), len(cfg.seeds)
    measures = [headline, "iwl_acc", "loss"]
    steps = np.arange(0, cfg.train.steps + 1, cfg.train.eval_every)
    rng = np.random.default_rng(0)
    calib = cfg.calibration_cells()
    phases = ("icl", "iwl", "both", "neither", "transient")
    values = np.zeros((C, S, len(measures), steps.size))
    rows, preds = [], []
    measured = np.full((C, S), np.nan)
    for c in range(C):
        pred_phase = phases[c % len(phases)]
        pred_step = None if pred_phase in ("iwl", "neither") else float(200 + 150 * c)
        if c == 1:
            pred_step = float(10 * cfg.train.steps)  # beyond the horizon
        preds.append(
            {
                "transition_step": pred_step,
                "transition_step_closed_form": pred_step,
                "phase": pred_phase,
                "phase_closed_form": phases[(c + 1) % len(phases)],
            }
        )
        for s in range(S):
            tr = 180.0 + 150 * c + 40 * s
            icl = 1 / (1 + np.exp(-(steps - tr) / 60))
            values[c, s, 0] = icl
            values[c, s, 1] = rng.uniform(0, 1) * np.linspace(0, 1, steps.size)
            values[c, s, 2] = np.exp(-steps / 500)
            meas_phase = pred_phase if s == 0 else phases[(c + s) % len(phases)]
            has = meas_phase in FORMED
            measured[c, s] = tr if has else math.nan
            rows.append(
                [
                    c,
                    *[cells[c][n] for n in cfg.axis_names],
                    cfg.seeds[s],
                    int(c in calib),
                    f"{tr:.1f}" if has else "",
                    meas_phase,
                    f"{icl[-1]:.4f}",
                    f"{values[c, s, 1, -1]:.4f}",
                    "" if pred_step is None else f"{pred_step:.1f}",
                    pred_phase,
                ]
            )
    np.savez(
        out / "arrays.npz",
        values=values,
        measures=np.asarray(measures),
        steps=steps,
        seeds=np.asarray(cfg.seeds),
        axis_names=np.asarray(cfg.axis_names),
        axis_values=np.array([[cell[n] for n in cfg.axis_names] for cell in cells], dtype=np.float64),
    )
    with open(out / "summary.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "cell",
                *cfg.axis_names,
                "seed",
                "calibration_cell",
                "measured_transition_step",
                "measured_phase",
                f"final_{headline}",
                "final_iwl_acc",
                "predicted_transition_step",
                "predicted_phase",
            ]
        )
        w.writerows(rows)
    held = [c for c in range(C) if c not in calib]
    theory = {
        "calibration": {
            "time_scale": 1.3,
            "iw_speed": 9.0,
            "kappa": 0.8,
            "init": 0.1,
            "residuals": [0.1, -0.2, 0.05],
            "source": f"{out}: cells {calib}",
        },
        "calibration_note": "fitted on the calibration cells",
        "calibration_cells": calib,
        "held_out_cells": held,
        "scores": {
            "held_out_cells": len(held),
            "pairs_per_seed": [3] * S,
            "median_relative_error": {"median": 0.25, "min": 0.2, "max": 0.3},
            "spearman": {"median": math.nan, "min": math.nan, "max": math.nan},
            "phase_agreement_percent": {"median": 60.0, "min": 50.0, "max": 70.0},
            "ranked_cells": 3,
            "spearman_seed_means": {"value": 0.5, "median": 0.5, "lo": -0.5, "hi": 1.0, "cells": 3},
            "median_relative_error_seed_means": {"value": 0.2, "median": 0.2, "lo": 0.1, "hi": 0.3, "cells": 3},
            "noise_ceiling": {
                "cells": 3,
                "spearman": {"median": 0.875, "lo": 0.5, "hi": 1.0},
                "spearman_value": 0.875,
                "median_relative_difference": {"median": 0.125, "lo": 0.05, "hi": 0.2},
                "median_relative_difference_value": 0.125,
            },
        },
        "predictions": preds,
    }
    (out / "theory.json").write_text(json.dumps(theory, indent=2))
    for g, group in enumerate(cfg.groups()):
        d = out / "groups" / f"g{g:03d}"
        d.mkdir(parents=True)
        (d / "result.json").write_text(json.dumps({"cells": group, "seconds": 12.5 + g, "summary": {}}))


def _check(path: Path, out: Path) -> str:
    assert path == out / "report.html"
    assert path.is_file()
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("report")) == ["report.html"]  # no temp left
    text = path.read_text()
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in text
    assert "<th>noise ceiling</th>" in text
    assert text.count("data:image/png;base64,") >= 3
    assert 'src="http' not in text and "href=" not in text  # self-contained
    return text


def test_report_two_axes(tmp_path: Path) -> None:
    cfg = dataclasses.replace(preset("demo"), axes=(("K", (64, 256, 1024)), ("p_B", (0.5, 1.0))))
    out = tmp_path / "run"
    _fake_sweep(out, cfg)
    text = _check(write_report(out), out)
    assert "demo" in text and "p_B" in text and "fitted on the calibration cells" in text
    assert "time_scale" in text and "g000" in text
    assert text.count("<tr") >= 3 * 2 * 2  # the summary rows at least


def test_report_three_axes_tokens_headline(tmp_path: Path) -> None:
    base = preset("reddy2024")
    cfg = dataclasses.replace(base, axes=(("K", (64, 256)), ("B", (1, 2)), ("eps", (0.0, 0.5))), seeds=(0,))
    out = tmp_path / "run3"
    _fake_sweep(out, cfg, headline="induction_acc")
    text = _check(write_report(out), out)
    assert "induction_acc" in text and "eps=0.5" in text


def test_report_one_axis(tmp_path: Path) -> None:
    cfg = dataclasses.replace(preset("demo"), axes=(("K", (64, 256, 1024, 4096)),))
    out = tmp_path / "run1"
    _fake_sweep(out, cfg)
    text = _check(write_report(out), out)
    assert "K (4): 64, 256, 1024, 4096" in text


def test_report_missing_file(tmp_path: Path) -> None:
    cfg = dataclasses.replace(preset("demo"), axes=(("K", (64, 256)), ("p_B", (0.5, 1.0))))
    out = tmp_path / "run"
    _fake_sweep(out, cfg)
    (out / "theory.json").unlink()
    with pytest.raises(ValueError, match=r"theory\.json"):
        write_report(out)
    assert not (out / "report.html").exists()
    with pytest.raises(ValueError, match="does not exist"):
        write_report(tmp_path / "nowhere")


def _configs() -> dict[str, tuple[SweepConfig, str]]:
    """The sweeps of the tests above (two axes, three with a token headline, one), with their headline."""
    two = dataclasses.replace(preset("demo"), axes=(("K", (64, 256, 1024)), ("p_B", (0.5, 1.0))))
    base = preset("reddy2024")
    three = dataclasses.replace(base, axes=(("K", (64, 256)), ("B", (1, 2)), ("eps", (0.0, 0.5))), seeds=(0,))
    one = dataclasses.replace(preset("demo"), axes=(("K", (64, 256, 1024, 4096)),))
    return {"two": (two, "icl_acc"), "three": (three, "induction_acc"), "one": (one, "icl_acc")}


@pytest.mark.parametrize("name", ["two", "three", "one"])
def test_records_render_as_the_files_they_are_written_to(tmp_path: Path, name: str) -> None:
    """Records read back from a run (load_sweep), written to another run's files by the sweep's own writers and
    rendered from memory (as finish renders them) give the report zipfhead report renders from those files, byte
    for byte; and they read back unchanged."""
    cfg, headline = _configs()[name]
    first = tmp_path / "a" / "run"
    _fake_sweep(first, cfg, headline=headline)
    result, theory, times = load_sweep(first)
    assert result.headline == headline and times == read_group_times(first) and len(times) == len(cfg.groups())
    out = tmp_path / "b" / "run"
    out.mkdir(parents=True)
    (out / "config.json").write_text(json.dumps(result.config.to_dict(), indent=2))
    (out / "theory.json").write_text(json.dumps(theory.to_dict(), indent=2))
    write_arrays(out, result)
    write_summary_csv(out, result, theory)
    shutil.copytree(first / "groups", out / "groups")
    in_memory = write_report(out, result, theory).read_bytes()
    assert write_report(out).read_bytes() == in_memory
    page = render_report(result, theory, run_name="run", group_times=times)
    assert page.encode() == in_memory
    again, theory_again, _ = load_sweep(out)
    assert json.dumps(theory_again.to_dict()) == json.dumps(theory.to_dict())  # NaN scores: compared as JSON
    assert again.headline == result.headline and again.phases == result.phases
    for field in ("values", "steps", "measured", "finals", "diverged"):
        np.testing.assert_array_equal(getattr(again, field), getattr(result, field), err_msg=field)


def test_figures_are_matplotlib_figures(tmp_path: Path) -> None:
    """Each figure function draws from the records and returns a Figure (nothing encoded)."""
    import matplotlib.pyplot as plt

    for name, (cfg, headline) in _configs().items():
        out = tmp_path / name / "run"
        _fake_sweep(out, cfg, headline=headline)
        result, theory, _ = load_sweep(out)
        for draw in (phase_figure, transition_figure, curves_figure):
            fig = draw(result, theory)
            assert isinstance(fig, Figure) and fig.axes, (name, draw.__name__)
            plt.close(fig)


def test_load_sweep_keeps_missing_rows_empty_and_names_unreadable_files(tmp_path: Path) -> None:
    """Missing rows of summary.csv read as NaN / "" (and the report is still written); a config.json that is not
    a sweep config, or a theory.json whose calibration is not one, is a ValueError naming the file."""
    cfg = dataclasses.replace(preset("demo"), axes=(("K", (64, 256)), ("p_B", (0.5, 1.0))))
    out = tmp_path / "run"
    _fake_sweep(out, cfg)
    with open(out / "summary.csv", newline="") as f:
        rows = list(csv.reader(f))
    with open(out / "summary.csv", "w", newline="") as f:
        csv.writer(f).writerows([rows[0], *rows[3:], ["x", "1", "2", "0"]])  # cell 0's two seeds gone, one bad row
    result, theory, _ = load_sweep(out)
    assert np.isnan(result.measured[0]).all() and np.isnan(result.finals[0]).all() and result.phases[0] == ["", ""]
    assert not np.isnan(result.finals[1:]).any()
    assert len(summary_rows(result, theory)) == 4 * 2 - 2  # the missing rows stay missing
    assert write_report(out).is_file()
    with pytest.raises(TypeError, match="both"):
        write_report(out, result=result)
    cut = json.loads((out / "theory.json").read_text())
    cut["predictions"] = [{"phase": None}]  # one prediction for 4 cells, and that one without a phase
    (out / "theory.json").write_text(json.dumps(cut))
    rows = summary_rows(*load_sweep(out)[:2])
    assert len(rows) == 6 and {r[-2] for r in rows} == {""}  # no prediction reads as empty, as csv writes None
    assert write_report(out).is_file()
    recorded = json.loads((out / "theory.json").read_text())
    recorded["calibration"]["bogus"] = 1.0
    (out / "theory.json").write_text(json.dumps(recorded))
    with pytest.raises(ValueError, match=r"theory\.json does not read"):
        load_sweep(out)
    (out / "config.json").write_text(json.dumps({"name": "broken"}))
    with pytest.raises(ValueError, match=r"config\.json does not read"):
        write_report(out)


def test_zipfhead_report_imports_no_jax(tmp_path: Path) -> None:
    """zipfhead report (toy_models.report and the records of toy_models.sweep_result) rebuilds a report without
    loading JAX or the toys' engine."""
    out = tmp_path / "run"
    _fake_sweep(out, dataclasses.replace(preset("demo"), axes=(("K", (64, 256)),)))
    (out / "report.html").unlink(missing_ok=True)
    code = (
        "from zipfhead.cli import main\n"
        f"code = main(['report', {str(out)!r}])\n"
        "import zipfhead.toy_models.sweep_result\n"
        "print('CODE', code, file=sys.stderr)\n"
    )
    err = _held_after(code)
    assert "CODE 0" in err and "HELD []" in err, err[-2000:]
    assert (out / "report.html").is_file()
