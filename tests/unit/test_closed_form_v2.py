"""v2's closed-form escape (theory/closed_form_v2.py): its separable clock against a direct quadrature, against v2's
integration, against the stored toys, and its limits.

Bands are the documented validity (theory/closed_form_v2.py, notebook 02 section 12): within a factor 0.6-1.6 of the
integration for uniform classes at K = 384-4096 (measured 0.71-1.48 at p_B = 0.75, 0.65-1.52 at p_B = 1).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from zipfhead.theory.closed_form_v2 import effective_classes, escape_v2
from zipfhead.theory.distributions import ClassificationTask, Zipf
from zipfhead.theory.predict import Calibration, predict_many, reduced_params
from zipfhead.theory.reduced_v2 import ParamsV2
from zipfhead.theory.schedule import Schedule

PRESETS = json.loads((Path(__file__).resolve().parents[2] / "proofs_notebooks" / "data" / "presets.json").read_text())
DEMO = Calibration(**PRESETS["demo_calibration"])
ADAM = reduced_params(ClassificationTask(K=1024, N=8, D=16, L=16, B=2), DEMO, Schedule(lr=6e-3))


def task(K: int, **kw) -> ClassificationTask:
    return ClassificationTask(**({"K": K, "N": 8, "D": 16, "L": 16, "B": 2, "eps": 0.1, "alpha": 0.0} | kw))


@given(
    K=st.integers(256, 1 << 16),
    leak=st.floats(0.02, 2.0),
    kappa=st.floats(0.5, 32.0),
    iw_speed=st.floats(0.2, 50.0),
)
@settings(max_examples=40, deadline=None)
def test_rebuild_clock_against_quadrature(K, leak, kappa, iw_speed):
    """The stage-2 clock t(w) (explicit) equals 1 + int dw / (dw/dt) of the flow it solves, dw/dt = k w lambda /
    (2 (lambda + beta w^2)^2), by adaptive quadrature (scipy.integrate.quad, relative 1e-9: its error target)."""
    params = ParamsV2(
        D=16, kappa=kappa, iw_speed=iw_speed, init=0.1, leak=leak, spread=30.0, optimizer="adam", batch=64
    )
    esc = escape_v2(task(K), params)
    assert math.isfinite(esc.time)
    k, beta, lam = esc.rate, esc.beta, leak
    w1 = 0.5 * k

    def seconds_per_w(w):
        return 2.0 * (lam + beta * w * w) ** 2 / (k * w * lam)

    quad, _ = integrate.quad(seconds_per_w, w1, esc.read_out, epsrel=1e-10, limit=200)
    assert esc.time == pytest.approx(1.0 + quad, rel=1e-9)
    # and e* is the item gain's fixed point there
    assert esc.gain == pytest.approx(esc.read_out / (2 * (lam + beta * esc.read_out**2)), rel=1e-12)


@given(
    K=st.integers(8, 1 << 15),  # >= N / B for every B drawn
    B=st.sampled_from([1, 2, 4, 8]),
    p_B=st.floats(0.0, 1.0),
    p_C=st.floats(0.0, 1.0),
    alpha=st.floats(0.0, 2.5),
    L=st.sampled_from([8, 16, 32]),
)
@settings(max_examples=60, deadline=None)
def test_any_valid_task_gives_a_time_or_none(K, B, p_B, p_C, alpha, L):
    """Every valid distribution gives a positive time (flow units) or inf, never an error: p_B = p_C = 0 leaves no
    bursty drive, N = B no distractor, p_C = 1 nothing to memorise."""
    t = ClassificationTask(K=K, N=8, D=16, L=L, B=B, p_B=p_B, p_C=p_C, eps=0.1, alpha=alpha)
    esc = escape_v2(t, ADAM)
    assert esc.time == math.inf or esc.time >= 1.0  # the collapse alone takes COLLAPSE_TIME = 1


def test_effective_classes_of_a_zipf_law():
    """K_eff = (sum_k p_k^(3/2))^-2 against a direct sum over mpmath-free float64 probabilities (1e-12: rounding)."""
    for K, alpha in ((1000, 0.0), (8192, 0.5), (8192, 1.25)):
        p = Zipf(K, alpha, 0.0).probs()
        direct = 1.0 / sum(float(v) ** 1.5 for v in p) ** 2
        assert effective_classes(task(K, alpha=alpha)) == pytest.approx(direct, rel=1e-12)
    assert effective_classes(task(1000)) == pytest.approx(1000, rel=1e-12)
    assert effective_classes(task(8192, alpha=1.25)) < effective_classes(task(8192, alpha=0.5)) < 8192


def test_against_integration_and_limits():
    """Within the documented band of v2's integration at K = 384-4096, both slower as K grows; no transition with
    novel classes only or labels redrawn per sequence; slower without bound as K grows (the K -> infinity limit)."""
    Ks = [384, 1024, 4096]
    for p_B in (0.75, 1.0):
        tasks = [task(K, p_B=p_B) for K in Ks]
        per_step = DEMO.time_scale * 6e-3
        long = predict_many(tasks, lr=6e-3, steps=20000, calibration=DEMO, closed_form=False)
        integrated = np.array([p["transition_step"] * per_step for p in long])
        closed = np.array([escape_v2(t, ADAM).time for t in tasks])
        assert np.all((closed / integrated >= 0.6) & (closed / integrated <= 1.6)), closed / integrated
        assert np.all(np.diff(closed) > 0) and np.all(np.diff(integrated) > 0)
    assert escape_v2(task(1024, p_C=1.0), ADAM).time == math.inf
    assert escape_v2(task(1024, label_map="per_sequence"), ADAM).time == math.inf
    far = [escape_v2(task(K), ADAM).time for K in (1 << 16, 1 << 18, 1 << 20)]
    assert far[0] < far[1] < far[2]


def test_ranks_the_demo_toys():
    """Against the stored demo toys (``make demo``; proofs_notebooks/data/presets.json), seed means of the cells where
    both seeds formed a head: Spearman >= 0.85 (measured 0.93; the issue's target for the demo; the seeds' own
    Spearman on the held-out cells, one seed against the other, is 0.88-0.90), with the demo's constants and no
    other fit."""
    fields = {k: v for k, v in PRESETS["demo"]["config"]["task"].items() if k != "kind"}
    closed, measured = [], []
    for cell in PRESETS["demo"]["cells"]:
        steps = [s["transition_step"] for s in cell["seeds"]]
        if any(v is None for v in steps):
            continue
        t = ClassificationTask(**(fields | {k: (int(v) if k == "K" else float(v)) for k, v in cell["cell"].items()}))
        closed.append(escape_v2(t, ADAM).time)
        measured.append(float(np.mean(steps)))
    assert len(closed) >= 12
    assert stats.spearmanr(closed, measured).statistic >= 0.85


@pytest.mark.parametrize(
    "change, match",
    [({"optimizer": "gd"}, "params.optimizer = 'gd'")],
)
def test_errors_name_the_parameter(change, match):
    params = ParamsV2(**({"D": 16, "optimizer": "adam", "batch": 64} | change))
    with pytest.raises(ValueError, match=match):
        escape_v2(task(1024), params)
    with pytest.raises(ValueError, match="task must be a ClassificationTask"):
        escape_v2("not a task", ADAM)  # type: ignore[arg-type]
