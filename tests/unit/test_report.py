"""The sweep report: a hand-made finished sweep directory (no training) rendered to one self-contained HTML file."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from zipfhead.theory.phases import FORMED
from zipfhead.toy_models.report import write_report
from zipfhead.toy_models.sweep import SweepConfig, preset

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
