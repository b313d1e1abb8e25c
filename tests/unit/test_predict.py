"""zipfhead predict / calibrate: the theory's commands (issue 4, items 3 and 4)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from zipfhead.cli import main
from zipfhead.theory.distributions import ClassificationTask, TokenStreamTask
from zipfhead.theory.phases import PHASES
from zipfhead.theory.predict import (
    FULL_FIT_DISTRIBUTIONS,
    Calibration,
    load_calibration,
    phase_grid,
    predict,
    predict_many,
)
from zipfhead.toy_models.runs import calibrate_runs

TASK = ClassificationTask(K=4096, N=8, D=16, L=16, B=2, p_B=1.0, alpha=0.0)


#: constants of the order of the packaged fit (reduced model v2 on the demo's toy)
CAL = Calibration(time_scale=2.8, iw_speed=100.0, kappa=8.0, leak=0.2)


def test_predict_both_families():
    cal = CAL
    res = predict(TASK, lr=3e-3, steps=3000, calibration=cal)
    assert res["phase"] in PHASES and res["transition_step"] > 0 and res["inputs"]["K"] == 4096
    # steps scale as 1 / lr at fixed flow time
    slow = predict(TASK, lr=1e-3, steps=9000, calibration=cal)
    assert slow["transition_step"] == pytest.approx(3 * res["transition_step"], rel=1e-3)
    tok = predict(
        TokenStreamTask(V=16, T=64, n_triggers=2, trigger_dist="uniform"), lr=1e-2, steps=3000, calibration=cal
    )
    # token streams: the single-head mixture, whose closed form (one quadrature) is its integrated transition (to the
    # integrators' rtol 1e-4 and the crossing's interpolation); there is no closed-form phase
    assert tok["phase"] == "icl" and tok["phase_closed_form"] is None
    assert tok["transition_step_closed_form"] == pytest.approx(tok["transition_step"], rel=1e-2)


@pytest.mark.parametrize("decay_on", ["all", "attention"])
def test_weight_decay_is_lr_free_in_flow_time(decay_on):
    """AdamW shrinks weights by lr x wd per step and a step is lr x tau of flow time, so the flow's decay rate is
    wd / tau: at 3x the lr and 1/3 of the steps everything happens at 1/3 of the steps. Decay also changes the
    prediction (it slows the circuit's escape), so the check is not vacuous. wd = 0.01: at 0.1 the decay holds the
    circuit at the saddle and no head forms at all (v2's noise scales with the data, so its escape is slow)."""
    cal = CAL
    kw = {"weight_decay": 0.01, "decay_on": decay_on, "calibration": cal, "closed_form": False}
    task = TASK
    slow = predict(task, lr=1e-3, steps=9000, **kw)
    fast = predict(task, lr=3e-3, steps=3000, **kw)
    bare = predict(task, lr=3e-3, steps=3000, calibration=cal, closed_form=False)
    assert slow["transition_step"] is not None and fast["transition_step"] is not None
    # the integrator's rtol (1e-4) leaves transition times good to ~1e-3
    assert slow["transition_step"] == pytest.approx(3 * fast["transition_step"], rel=1e-3)
    assert slow["phase"] == fast["phase"]
    assert bare["transition_step"] < fast["transition_step"] * (1 - 1e-2)


def test_phase_grid_labels_and_shapes():
    g = phase_grid(
        TASK,
        ("K", np.array([32, 4096])),
        ("p_B", np.array([0.0, 0.9, 1.0])),
        lr=3e-3,
        steps=3000,
        calibration=CAL,
    )
    assert g["phase"].shape == (3, 2) and g["x_name"] == "K"
    assert PHASES[g["phase"][2, 1]] == "icl"  # bursty, many classes
    assert PHASES[g["phase"][0, 0]] == "iwl"  # i.i.d., few classes


def _fake_run(tmp_path, name, task, lr, step, steps=3000):
    d = tmp_path / name
    d.mkdir()
    (d / "config.json").write_text(
        json.dumps({"task": task.to_dict(), "train": {"optimizer": "adam", "batch_size": 64, "steps": steps}})
    )
    final = {"icl_acc": 0.99 if step is not None else 0.2}
    (d / "summary.json").write_text(
        json.dumps(
            {
                "headline": "icl_acc",
                "steps_trained": steps,
                "models": [{"lr": lr, "transition_step": step, "final": final, "diverged": False}],
            }
        )
    )
    return d


def test_calibrate_recovers_constants_it_generated(tmp_path):
    """Toys synthesised from the model with known constants (on the fit's grid) give those constants back."""
    truth = Calibration(time_scale=2.0, iw_speed=30.0, kappa=4.0, leak=0.2)
    # 8 distributions: enough for every constant to be fitted (FULL_FIT_DISTRIBUTIONS)
    Ks = (512, 1024, 2048, 4096)
    tasks = [ClassificationTask(K=K, N=8, D=16, L=16, B=2, p_B=p, alpha=0.0) for K in Ks for p in (1.0, 0.8)]
    runs = []
    for i, (task, res) in enumerate(
        zip(tasks, predict_many(tasks, lr=3e-3, steps=3000, calibration=truth), strict=True)
    ):
        runs.append(_fake_run(tmp_path, f"r{i}", task, 3e-3, res["transition_step"]))
    fit = calibrate_runs(runs, kappas=np.array([1.0, 4.0, 16.0]), iw_speeds=np.array([3.0, 30.0, 300.0]))
    assert FULL_FIT_DISTRIBUTIONS <= len(tasks)
    # both sides integrate with rtol 1e-4 on different output grids: transition times agree to ~1%
    assert fit.time_scale == pytest.approx(2.0, rel=0.03)
    assert (fit.kappa, fit.iw_speed, fit.leak) == (4.0, 30.0, 0.2)
    assert np.max(np.abs(fit.residuals)) < 0.03


def test_calibration_file_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"time_scale": 1.0, "tau": 2}))
    with pytest.raises(ValueError, match="unknown keys"):
        load_calibration(bad)
    with pytest.raises(ValueError, match="does not exist"):
        load_calibration(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="time_scale"):
        Calibration(time_scale=-1.0)


def test_cli_predict_json_and_grid(tmp_path, capsys):
    assert main(["predict", "--K", "4096", "--N", "8", "--D", "16", "--L", "16", "--alpha", "0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"transition_step", "phase", "inputs"} <= set(out) and out["phase"] in PHASES
    assert out["transition_step"] is None or math.isfinite(out["transition_step"])
    args = ["predict", "--grid", "alpha=0:2:4", "p_B=0:1:3", "--out", str(tmp_path), "--json"]
    assert main(args) == 0
    assert (tmp_path / "phase_grid.npz").exists() and (tmp_path / "phase_grid.png").exists()
    with np.load(tmp_path / "phase_grid.npz") as z:
        assert z["phase"].shape == (3, 4)


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["predict", "--grid", "alpha=0:2"], "--grid"),
        (["predict", "--grid", "alpha=0:2:4"], "two axes"),
        (["predict", "--grid", "bogus=0:1:3", "p_B=0:1:3"], "bogus"),
        (["predict", "--optimizer", "lion"], "optimizer"),
        (["calibrate", "/nonexistent/run"], "not a finished run"),
    ],
)
def test_cli_errors_are_one_line(argv, match, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and match in err


def test_cli_predicts_and_trains_markov_chains(tmp_path, capsys):
    """--task markov reads k, T, beta, alpha: predict forms the bigram stage with two layers and never with one,
    and train runs a Markov toy whose summary's headline is the bigram progress."""
    flags = ["--task", "markov", "--k", "4", "--T", "24", "--beta", "1", "--alpha", "1", "--lr", "3e-3"]
    for n_layers, formed in (("2", True), ("1", False)):
        assert main(["predict", *flags, "--n_layers", n_layers, "--steps", "2000", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["inputs"]["kind"] == "MarkovTask" and out["inputs"]["beta"] == 1.0
        assert (out["phase"] == "icl") == formed and (out["transition_step"] is not None) == formed
    run = tmp_path / "run"
    argv = ["train", *flags, "--steps", "8", "--eval_every", "4", "--out", str(run), "--no-progress"]
    assert main(argv) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["kind"] == "markov" and summary["headline"] == "bigram_progress"


def test_observations_are_validated():
    """A calibration row is an Observation: a bare tuple, a NaN or negative step, or a schedule that is not a
    Schedule are refused with the parameter named."""
    from zipfhead.theory.predict import calibrate_rows
    from zipfhead.theory.schedule import Observation, Schedule

    task = ClassificationTask(K=512, N=8, D=16, L=16, B=2)
    with pytest.raises(ValueError, match=r"rows\[0\]"):
        calibrate_rows([(task, 3e-3, 500.0, "adam", 64, 2000)])
    for bad in (math.nan, -1.0):
        with pytest.raises(ValueError, match="transition"):
            Observation(task, Schedule(), bad)
    with pytest.raises(ValueError, match="schedule"):
        Observation(task, {"lr": 3e-3}, 500.0)  # type: ignore[arg-type]
