"""The data part of ``zipfhead bench``: sampler throughput and the cost of each statistic.

Speed is measured as ratios taken in one run on one machine: each Numba sampler against a vectorised-numpy
baseline that draws from the same distribution, and against a plain-Python loop. Timings are the median of
``repeats`` runs after one warm-up call (so Numba compilation is excluded).
"""

from __future__ import annotations

import bisect
import random
import statistics as pystats
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from zipfhead.theory import statistics as st
from zipfhead.theory.distributions import ClassificationTask, TokenStreamTask, Zipf
from zipfhead.theory.samplers import class_means, sample_classes, sample_classification, sample_token_streams

__all__ = [
    "bench_samplers",
    "bench_statistics",
    "bench_theory",
    "numpy_classes",
    "numpy_items",
    "numpy_token_streams",
]


def _median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up: compilation and caches
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return pystats.median(times)


# --- baselines -------------------------------------------------------------------------------------------
def numpy_classes(task: ClassificationTask, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised-numpy twin of ``sample_classes(task, n, seed)`` in distribution (not stream).

    Returns (classes, labels), each (n, N+1) int32. Bursty classes are drawn by successive sampling (redraw
    only the rows whose new class repeats an earlier one), as the Numba kernel does.
    """
    N, B, L, m = task.N, task.B, task.L, task.classes_per_burst
    cdf = task.zipf.cdf()
    novel = rng.random(n) < task.p_C
    bursty = novel | (rng.random(n) < task.p_B)
    classes = np.empty((n, N + 1), dtype=np.int32)
    labels = np.empty((n, N + 1), dtype=np.int32)

    iid = np.flatnonzero(~bursty)
    classes[iid] = np.searchsorted(cdf, rng.random((iid.size, N + 1)), side="right")
    labels[iid] = classes[iid] % L

    rows = np.flatnonzero(bursty)
    nb = rows.size
    draw = np.empty((nb, m), dtype=np.int32)
    known = ~novel[rows]
    for j in range(m):
        pending = np.flatnonzero(known)
        while pending.size:
            draw[pending, j] = np.searchsorted(cdf, rng.random(pending.size), side="right")
            pending = pending[(draw[pending, :j] == draw[pending, j : j + 1]).any(axis=1)]
    draw[~known] = -1 - np.arange(m, dtype=np.int32)
    lab = draw % L
    fresh = np.argsort(rng.random((int((~known).sum()), L)), axis=1)[:, :m]
    lab[~known] = fresh
    query = rng.integers(0, m, nb)
    perm = np.argsort(rng.random((nb, N)), axis=1)
    ctx = np.take_along_axis(np.repeat(draw, B, axis=1), perm, axis=1)
    ctx_lab = np.take_along_axis(np.repeat(lab, B, axis=1), perm, axis=1)
    classes[rows, :N] = ctx
    classes[rows, N] = draw[np.arange(nb), query]
    labels[rows, :N] = ctx_lab
    labels[rows, N] = lab[np.arange(nb), query]
    return classes, labels


def numpy_items(task: ClassificationTask, means: np.ndarray, classes: np.ndarray, rng: np.random.Generator):
    """Vectorised-numpy item vectors for known classes: (mu_k + eps eta) / sqrt(1 + eps^2), (n, N+1, D) float32."""
    D = task.D
    noise = rng.standard_normal((*classes.shape, D), dtype=np.float32) * np.float32(task.eps / np.sqrt(D))
    return (means[np.maximum(classes, 0)] + noise) * np.float32(1 / np.sqrt(1 + task.eps**2))


def numpy_token_streams(task: TokenStreamTask, n: int, rng: np.random.Generator) -> np.ndarray:
    """Vectorised-numpy token streams (vectorised over sequences, a loop over the T positions): (n, T) int32."""
    V, T, k = task.V, task.T, task.n_triggers
    cdf = task.zipf.cdf()
    uniform_cdf = Zipf(V, 0.0).cdf()
    trig_cdf = cdf if task.trigger_dist == "zipf" else uniform_cdf
    out_cdf = cdf if task.output_dist == "zipf" else uniform_cdf
    triggers = np.empty((n, k), dtype=np.int32)
    for j in range(k):
        pending = np.arange(n)
        while pending.size:
            triggers[pending, j] = np.searchsorted(trig_cdf, rng.random(pending.size), side="right")
            pending = pending[(triggers[pending, :j] == triggers[pending, j : j + 1]).any(axis=1)]
    outputs = np.empty((n, k), dtype=np.int32)
    for j in range(k):
        pending = np.arange(n)
        while pending.size:
            outputs[pending, j] = np.searchsorted(out_cdf, rng.random(pending.size), side="right")
            pending = pending[(triggers[pending] == outputs[pending, j : j + 1]).any(axis=1)]
    is_trigger = np.zeros((n, V), dtype=bool)
    np.put_along_axis(is_trigger, triggers, True, axis=1)
    output_of = np.zeros((n, V), dtype=np.int32)
    np.put_along_axis(output_of, triggers, outputs, axis=1)
    tokens = np.searchsorted(cdf, rng.random((n, T)), side="right").astype(np.int32)
    rows = np.arange(n)
    for t in range(1, T):
        prev = tokens[:, t - 1]
        forced = is_trigger[rows, prev]
        tokens[forced, t] = output_of[rows[forced], prev[forced]]
    return tokens


def python_loop_classes(task: ClassificationTask, n: int, seed: int) -> list[list[int]]:
    """A plain-Python loop drawing i.i.d. or bursty class ids (the slow baseline of the benchmark)."""
    rnd = random.Random(seed)
    cdf = task.zipf.cdf().tolist()
    N, B, m = task.N, task.B, task.classes_per_burst
    out = []
    for _ in range(n):
        if rnd.random() < task.p_B:
            chosen: list[int] = []
            while len(chosen) < m:
                c = bisect.bisect_right(cdf, rnd.random())
                if c not in chosen:
                    chosen.append(c)
            ctx = [c for c in chosen for _ in range(B)]
            rnd.shuffle(ctx)
            out.append([*ctx, chosen[rnd.randrange(m)]])
        else:
            out.append([bisect.bisect_right(cdf, rnd.random()) for _ in range(N + 1)])
    return out


# --- the benchmarks --------------------------------------------------------------------------------------
def bench_samplers(n_seqs: int = 200_000, repeats: int = 5) -> list[dict[str, Any]]:
    """Throughput of each sampler (positions per second) and its ratios to the numpy and Python baselines."""
    task = ClassificationTask()
    means = class_means(task, 0)
    tok = TokenStreamTask()
    rng = np.random.default_rng(0)
    n_tok = max(1, n_seqs // 32)  # token streams are T = 256 long: similar numbers of positions
    n_py = max(1, n_seqs // 50)  # the Python loop is slow: time a smaller batch and scale per position

    cls_pos = n_seqs * (task.N + 1)
    rows = []

    def add(name: str, positions: int, numba_s: float, numpy_s: float, python_s: float | None, py_pos: int):
        numba_rate, numpy_rate = positions / numba_s, positions / numpy_s
        python_rate = None if python_s is None else py_pos / python_s
        rows.append(
            {
                "sampler": name,
                "numba_positions_per_s": numba_rate,
                "numpy_positions_per_s": numpy_rate,
                "python_positions_per_s": python_rate,
                "speedup_vs_numpy": numba_rate / numpy_rate,
                "speedup_vs_python": None if python_rate is None else numba_rate / python_rate,
            }
        )

    add(
        "classification ids (train mixture)",
        cls_pos,
        _median_seconds(lambda: sample_classes(task, n_seqs, 1), repeats),
        _median_seconds(lambda: numpy_classes(task, n_seqs, rng), repeats),
        _median_seconds(lambda: python_loop_classes(task, n_py, 1), max(3, repeats // 2)),
        n_py * (task.N + 1),
    )
    n_items = max(1, n_seqs // 8)
    classes = numpy_classes(task, n_items, rng)[0]
    add(
        f"classification items (D = {task.D})",
        n_items * (task.N + 1),
        _median_seconds(lambda: sample_classification(task, means, n_items, 1), repeats),
        _median_seconds(
            lambda: (numpy_classes(task, n_items, rng), numpy_items(task, means, classes, rng)),
            repeats,
        ),
        None,
        0,
    )
    add(
        "token streams (1 trigger)",
        n_tok * tok.T,
        _median_seconds(lambda: sample_token_streams(tok, n_tok, 1), repeats),
        _median_seconds(lambda: numpy_token_streams(tok, n_tok, rng), repeats),
        None,
        0,
    )
    return rows


def bench_statistics(K: int = 10**6, repeats: int = 5) -> list[dict[str, Any]]:
    """Milliseconds per statistic at K ranks, for the exact (Numba) and asymptotic (Hurwitz) forms.

    ``exact_ms`` includes computing Z (the normaliser cache is cleared before every call).
    """
    zipf = Zipf(K, 1.0)
    cls = ClassificationTask(K=K, alpha=1.0)
    tok = TokenStreamTask(V=K, alpha=1.0)
    cases: list[tuple[str, Callable[[str], float]]] = [
        ("normaliser", lambda m: st.normaliser(zipf, m)),
        ("entropy_nats", lambda m: st.entropy(zipf, m)),
        ("mean_rank", lambda m: st.mean_rank(zipf, m)),
        ("p_query_in_context", lambda m: st.rank_sum("in_context", zipf, m, N=cls.N)),
        ("expected_distinct", lambda m: st.rank_sum("distinct", zipf, m, N=cls.N)),
        ("expected_query_occurrences", lambda m: st.rank_sum("collision", zipf, m)),
        ("p_seen_before", lambda m: st.rank_sum("in_context", zipf, m, N=tok.T - 1)),
        ("p_trigger_repeat", lambda m: st.rank_sum("trigger_repeat_zipf", zipf, m, T=tok.T)),
        ("unmemorised_mass", lambda m: st.rank_sum("unmemorised", zipf, m, c=1.0, t=1e4)),
        ("unmemorised_integral", lambda m: st.rank_sum("unmemorised_integral", zipf, m, c=1.0, tau=1e4)),
    ]
    rows = []
    for name, fn in cases:

        def exact(fn=fn) -> float:
            st.clear_caches()
            return fn("exact")

        rows.append(
            {
                "statistic": name,
                "K": K,
                "exact_ms": 1e3 * _median_seconds(exact, repeats),
                "asymptotic_ms": 1e3 * _median_seconds(lambda fn=fn: fn("asymptotic"), repeats),
            }
        )
    return rows


# --- theory: the reduced model --------------------------------------------------------------------------------
_TWIN_SCRIPT = """
import json, sys, time
from zipfhead.theory.distributions import ClassificationTask
from zipfhead.theory.predict import load_calibration, predict_many
cells = json.loads(sys.argv[1])
tasks = [ClassificationTask(**c) for c in cells]
t0 = time.perf_counter()
predict_many(tasks, lr=3e-3, steps=3000, calibration=load_calibration(), closed_form=False, rtol=1e-3, n_times=24)
print(json.dumps({"seconds": time.perf_counter() - t0, "cells": len(tasks)}))
"""


def bench_theory(n: int = 100, twin_cells: int = 2, repeats: int = 3) -> dict[str, Any]:
    """The reduced model's speed: an n x n (alpha x p_B) phase diagram by integration (v2, through predict_many)
    and by v1's closed form, and the per-cell ratio of the Numba integrator to its plain-Python twin (the same
    prediction with ``NUMBA_DISABLE_JIT=1``, run in a subprocess on ``twin_cells`` cells).

    Returns:
        {"cells", "integration_s", "closed_form_s", "numba_ms_per_cell", "python_ms_per_cell", "speedup"}.
    """
    import json
    import os
    import subprocess
    import sys

    from zipfhead.theory.closed_form import phases_closed_form
    from zipfhead.theory.predict import load_calibration, predict_many
    from zipfhead.theory.reduced import ReducedParams

    cal = load_calibration()
    alphas, pbs = np.linspace(0.0, 2.0, n), np.linspace(0.0, 1.0, n)
    tasks = [
        ClassificationTask(K=1024, N=8, D=16, L=32, B=2, p_B=float(p), alpha=float(a)) for p in pbs for a in alphas
    ]
    lr, steps = 3e-3, 3000
    predict_many(tasks[:4], lr=lr, steps=steps, calibration=cal)  # warm-up (compilation)
    integration = _median_seconds(
        lambda: predict_many(tasks, lr=lr, steps=steps, calibration=cal, closed_form=False, rtol=1e-3, n_times=24),
        repeats,
    )
    params = [
        ReducedParams(D=16, init=cal.init, iw_speed=cal.iw_speed, kappa=cal.kappa, optimizer="adam") for _ in tasks
    ]
    horizon = cal.time_scale * lr * steps
    closed = _median_seconds(lambda: phases_closed_form(tasks, params, horizon), repeats)
    picks = np.linspace(0, len(tasks) - 1, twin_cells).astype(int)
    cells = [{k: v for k, v in tasks[i].to_dict().items() if k != "kind"} for i in picks]
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    proc = subprocess.run(
        [sys.executable, "-c", _TWIN_SCRIPT, json.dumps(cells)], env=env, capture_output=True, text=True, check=True
    )
    twin = json.loads(proc.stdout.strip().splitlines()[-1])
    numba_ms = 1e3 * integration / len(tasks)
    python_ms = 1e3 * twin["seconds"] / twin["cells"]
    return {
        "cells": len(tasks),
        "integration_s": integration,
        "closed_form_s": closed,
        "numba_ms_per_cell": numba_ms,
        "python_ms_per_cell": python_ms,
        "speedup": python_ms / numba_ms,
    }
