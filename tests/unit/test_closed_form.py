"""Closed forms of the reduced model against numerical integration of the same model (issue 4, item 2).

Ranges and tolerances are the documented validity of each formula (theory/closed_form.py):
* gradient flow, nothing memorisable (p_B = 1, K >= 2048, alpha <= 0.5, L <= 32, init <= 1e-2): t* within 25%
  (the linearisation ignores the nonlinear last stretch of the escape; measured 0.82-1.05 of the integration);
* Adam's normalised flow, same range: t* within a factor 2.5 below the integration (the sign-regime leg assumes
  c grows at unit speed from the start; measured 0.45-0.83).
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zipfhead.theory import closed_form as cf
from zipfhead.theory.distributions import ClassificationTask
from zipfhead.theory.reduced import ReducedParams, classification_cases, integrate

T_OUT = np.concatenate([[0.0], np.geomspace(1e-3, 5000.0, 200)])


@given(st.floats(0, 1e200))
@settings(max_examples=200, deadline=None)
def test_lambert_w_matches_mpmath(z):
    """Halley's iteration against mpmath's principal branch, to 1e-13 relative (float64 rounding)."""
    expected = float(mpmath.lambertw(z).real)
    assert float(cf.lambert_w(z)) == pytest.approx(expected, rel=1e-13, abs=1e-300)


unmemorised = st.builds(
    ClassificationTask,
    K=st.sampled_from([2048, 4096, 16384]),
    N=st.just(8),
    D=st.just(16),
    L=st.sampled_from([16, 32]),
    B=st.sampled_from([1, 2, 4]),
    p_B=st.just(1.0),
    eps=st.floats(0, 0.5),
    alpha=st.floats(0, 0.5),
)


@given(unmemorised, st.floats(1e-4, 1e-2))
@settings(max_examples=8, deadline=None)  # each example integrates a flow (~1 s)
def test_gradient_flow_transition_time_matches_integration(task, init):
    prm = ReducedParams(D=task.D, init=init, iw_speed=10.0)
    tr = integrate(classification_cases(task), prm, T_OUT)
    closed = cf.transition_time(task, prm, 5000.0)
    assert tr.transition is not None and closed is not None
    assert closed == pytest.approx(tr.transition, rel=0.25), (closed, tr.transition)


@given(unmemorised, st.floats(1e-3, 0.1), st.sampled_from([16, 64, 256]))
@settings(max_examples=15, deadline=None)
def test_adam_transition_time_is_within_its_stated_factor(task, init, batch):
    prm = ReducedParams(D=task.D, init=init, iw_speed=10.0, optimizer="adam", batch=batch)
    tr = integrate(classification_cases(task), prm, T_OUT)
    closed = cf.transition_time(task, prm, 5000.0)
    assert tr.transition is not None and closed is not None
    assert 0.4 <= closed / tr.transition <= 1.0, (closed, tr.transition)


def test_escape_rate_identity_numerically():
    """lambda = s c B (N - B) / N^2 p_b: the growth rate of a + b at the origin equals the closed form."""
    task = ClassificationTask(K=4096, N=8, L=16, B=2, p_B=1.0, eps=0.3, alpha=0.0)
    cs = classification_cases(task)
    from zipfhead.theory._reduced_kernel import case_terms

    c, h = 2.0, 1e-7
    # d loss / d b at a = h, b = 0 is s a dl/dx = -lambda a / ... : compare with the formula
    grad_b = sum(
        w * case_terms(h, 0.0, c, 0.0, cs.s, *row[1:6])[2] for w, row in zip(cs.weight, cs.table(), strict=True)
    )
    lam = cs.s * c * task.B * (task.N - task.B) / task.N**2
    assert -grad_b / h == pytest.approx(lam, rel=1e-6)


def test_closed_form_phases():
    """The boundary as an equation in U: small K memorises first (iwl), large K does not (icl)."""
    tasks = [ClassificationTask(K=K, N=8, D=16, L=32, B=2, p_B=0.9, alpha=0.0) for K in (32, 4096)]
    prm = ReducedParams(D=16, init=0.1, iw_speed=30.0, kappa=4.0, optimizer="adam")
    times, phases = cf.phases_closed_form(tasks, [prm, prm], 1000.0)
    assert phases == ["iwl", "icl"] and math.isnan(times[0]) and times[1] > 0


def test_unmemorised_mass_limits():
    task = ClassificationTask(K=64, N=8, D=16, L=32, B=2, alpha=1.0)
    prm = ReducedParams(D=16, kappa=1000.0, iw_speed=10.0)
    assert float(cf.unmemorised_mass(task, prm, 0.0)) == pytest.approx(1.0, rel=1e-12)
    assert float(cf.unmemorised_mass(task, prm, 1e9)) == pytest.approx(0.0, abs=1e-12)
    tiny = ReducedParams(D=16, kappa=1e-6)
    assert float(cf.unmemorised_mass(task, tiny, 1e9)) == pytest.approx(1.0, rel=1e-12)
