"""Control experiments on the toys, each a set of sweeps whose numbers are collected into one findings file.

``repetition`` (issue: theory v2) asks what repetition across training sequences teaches the induction circuit.
Its sweeps share the demo's toy (N = 8, D = 16, L = 16, B = 2, alpha = 0, eps = 0.1, Adam 3e-3, batch 64) and
differ in the data only:

* ``K``: the transition step against the number of classes K, from the memorisation edge to K = 16384
  (p_B = 1, 3 seeds, 3000 steps);
* ``relabel``: the same classes with their labels redrawn for every sequence (``label_map = per_sequence``): the
  items still recur across sequences but their labels carry nothing from one sequence to the next;
* ``novel``: novel classes only (p_C = 1, the K -> infinity limit) and half novel (p_C = 0.5);
* ``features``: K in {512, 2048, 8192, 16384} for 1000 steps, 2 seeds: the item features' growth before the head
  forms (``item_embed_norm``, the RMS norm of the embedding's item rows; ``unembed_norm``, of the unembedding).

``recruitment`` asks why no head forms where memorisation wins (K = 64 in ``reddy2024``, alpha >= 1.25 in
``chan2022``), on those presets' toys and schedule:

* ``K``: K in {64, 256, 1024} at B = 2; ``alpha``: alpha in {0.75, 1, 1.25, 1.5} at p_B = 0.75 (K = 8192);
* ``K_beta2``, ``alpha_beta2``: K = 64 and alpha = 1.25 with Adam's second-moment memory cut from 1000 steps to
  100 (beta2 = 0.99): the control for the hypothesis that Adam's memory of the early, large gradients stalls the
  circuit.

``recruitment_edge`` tests, on cells no fit has seen, v2's rule for who holds the heads (memorisation recruits them
where its in-weights proxy is at least the copy plateau B / N when the circuit would escape;
:func:`theory.reduced_v2.integrate_v2`), on the same presets' toys and schedule:

* ``K``: K in {96, 128, 192} at B = 2 (between reddy2024's K = 64, no head, and K = 256, heads);
* ``alpha``: alpha in {1.05, 1.1, 1.15} x p_B in {0.75, 1} at K = 8192 (between chan2022's alpha = 1, heads, and
  1.25, none).

``narrow`` asks whether the in-weights capacity follows the toy's width: reddy2024's toy and schedule with
d_model = d_head = 25, so that its one-hot positions leave 8 content dimensions for the D = 16 items (the direct
path's rank drops from 16 to 8), on four cells (K, B) = (64, 2), (256, 1), (1024, 2), (4096, 2), one sweep each.

Every sweep records the sub-circuits' clocks beside the in-context accuracy: the layer-1 label -> item
(previous-token) score ``prev_score_l0`` and the layer-2 query -> matching-label score ``induction_score_l1``,
both on novel-class sequences, and each layer's query -> itself score on the training mixture
(``mix_self_score_l0``, ``mix_self_score_l1``: :func:`toy_models.measures.query_self_score`). :func:`collect`
reads the finished sweeps into one JSON-ready dict (with the full configs), which
``proofs_notebooks/04_repetition.py`` reads back and asserts on.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from zipfhead.theory.predict import icl_threshold
from zipfhead.theory.transition import curve_phase_flags, half_rise, smoothed_curve
from zipfhead.toy_models.sweep import SweepConfig, preset
from zipfhead.toy_models.train import headline_chance, headline_measure, task_kind

__all__ = [
    "EXPERIMENTS",
    "collect",
    "narrow_sweeps",
    "recruitment_edge_sweeps",
    "recruitment_sweeps",
    "repetition_sweeps",
    "run_experiment",
]

REPETITION_STEPS = 3000
REPETITION_SEEDS = (0, 1, 2)
#: the curves kept per model in the findings (regular evaluation grid)
CURVES = (
    "icl_acc",
    "bigram_progress",
    "unigram_progress",
    "mix_acc",
    "item_embed_norm",
    "unembed_norm",
    "prev_score_l0",
    "induction_score_l0",
    "induction_score_l1",
    "mix_induction_score_l0",
    "mix_induction_score_l1",
    "mix_self_score_l0",
    "mix_self_score_l1",
)
REPETITION_KS = (256.0, 384.0, 512.0, 768.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0)


def repetition_sweeps(
    steps: int = REPETITION_STEPS, seeds: tuple[int, ...] = REPETITION_SEEDS
) -> dict[str, SweepConfig]:
    """The sweeps of the ``repetition`` experiment (see the module docstring), by name."""
    demo = preset("demo")
    train = dataclasses.replace(demo.train, steps=steps, lr=3e-3)  # the reproductions' rate
    base = dataclasses.replace(demo, train=train, seeds=seeds)
    task = dataclasses.replace(demo.task, p_B=1.0)
    return {
        "K": dataclasses.replace(base, name="repetition_K", axes=(("K", REPETITION_KS), ("p_B", (1.0,)))),
        "features": dataclasses.replace(
            base,
            name="repetition_features",
            train=dataclasses.replace(train, steps=1000),
            seeds=seeds[:2],
            axes=(("K", (512.0, 2048.0, 8192.0, 16384.0)), ("p_B", (1.0,))),
        ),
        "relabel": dataclasses.replace(
            base,
            name="repetition_relabel",
            task=dataclasses.replace(task, label_map="per_sequence"),
            axes=(("K", (512.0, 1024.0, 4096.0)),),
        ),
        "novel": dataclasses.replace(
            base, name="repetition_novel", task=dataclasses.replace(task, K=1024), axes=(("p_C", (0.5, 1.0)),)
        ),
    }


def recruitment_sweeps() -> dict[str, SweepConfig]:
    """The sweeps of the ``recruitment`` experiment (see the module docstring), by name: the presets' own toys and
    schedule (Adam 6e-3, 1500 steps, 2 seeds)."""
    reddy, chan = preset("reddy2024"), preset("chan2022")
    return {
        "K": dataclasses.replace(reddy, name="recruitment_K", axes=(("K", (64.0, 256.0, 1024.0)), ("B", (2.0,)))),
        "alpha": dataclasses.replace(
            chan, name="recruitment_alpha", axes=(("alpha", (0.75, 1.0, 1.25, 1.5)), ("p_B", (0.75,)))
        ),
        "K_beta2": dataclasses.replace(
            reddy,
            name="recruitment_K_beta2",
            train=dataclasses.replace(reddy.train, beta2=0.99),
            axes=(("K", (64.0,)), ("B", (2.0,))),
        ),
        "alpha_beta2": dataclasses.replace(
            chan,
            name="recruitment_alpha_beta2",
            train=dataclasses.replace(chan.train, beta2=0.99),
            axes=(("alpha", (1.25,)), ("p_B", (0.75,))),
        ),
    }


def recruitment_edge_sweeps() -> dict[str, SweepConfig]:
    """The sweeps of the ``recruitment_edge`` experiment (see the module docstring), by name: the presets' own toys
    and schedule (Adam 6e-3, 1500 steps, 2 seeds), on the cells between a preset's heads and its memorisers."""
    reddy, chan = preset("reddy2024"), preset("chan2022")
    return {
        "K": dataclasses.replace(reddy, name="recruitment_edge_K", axes=(("K", (96.0, 128.0, 192.0)), ("B", (2.0,)))),
        "alpha": dataclasses.replace(
            chan, name="recruitment_edge_alpha", axes=(("alpha", (1.05, 1.1, 1.15)), ("p_B", (0.75, 1.0)))
        ),
    }


#: the narrow experiment's width: 8 content dimensions beside reddy2024's 17 one-hot positions
NARROW_D_MODEL = 25


def narrow_sweeps() -> dict[str, SweepConfig]:
    """The sweeps of the ``narrow`` experiment (see the module docstring), by name: reddy2024's toys and schedule at
    d_model = d_head = :data:`NARROW_D_MODEL`."""
    reddy = preset("reddy2024")
    model = dataclasses.replace(reddy.model, d_model=NARROW_D_MODEL, d_head=NARROW_D_MODEL)
    cells = {"K64B2": (64.0, 2.0), "K256B1": (256.0, 1.0), "K1024B2": (1024.0, 2.0), "K4096B2": (4096.0, 2.0)}
    return {
        name: dataclasses.replace(reddy, name=f"narrow_{name}", model=model, axes=(("K", (K,)), ("B", (B,))))
        for name, (K, B) in cells.items()
    }


#: the experiments by name, in the order of :data:`toy_models.presets.EXPERIMENT_NAMES` (the command line's list;
#: tests/unit/test_cli.py checks that the two agree)
EXPERIMENTS = {
    "repetition": repetition_sweeps,
    "recruitment": recruitment_sweeps,
    "recruitment_edge": recruitment_edge_sweeps,
    "narrow": narrow_sweeps,
}
#: experiments whose sweeps predict with the packaged calibration instead of fitting one (too few cells that
#: transition to fit on)
PACKAGED_CALIBRATION = ("recruitment", "recruitment_edge", "narrow")


def _first_crossing(steps: np.ndarray, curve: np.ndarray, level: float) -> float | None:
    """First evaluation step at which the 3-point smoothed curve reaches ``level`` (None if never)."""
    above = np.flatnonzero(smoothed_curve(curve, 3) >= level)
    return float(steps[above[0]]) if above.size else None


def collect(run_dir: str | Path) -> dict[str, Any]:
    """The numbers of one finished sweep: per cell and seed the transition step (the one rule on the headline
    measure: in-context accuracy, or a Markov toy's bigram progress), the headline's final and peak values
    (``icl_final``, ``icl_max``), the final in-weights accuracy where the toy has one, and the sub-circuits' clocks
    (first step each score reaches half its final value, and its value at the transition), with the sweep's full
    config. Token-stream sweeps are not collected (their chance level is each toy's own step-0 value)."""
    out = Path(run_dir)
    cfg = SweepConfig.from_dict(json.loads((out / "config.json").read_text()))
    with np.load(out / "arrays.npz") as z:
        values, measures, steps = z["values"], [str(m) for m in z["measures"]], z["steps"].astype(np.float64)
    kind = task_kind(cfg.task)
    if kind == "tokens":
        raise ValueError(f"{out} is a token-stream sweep: collect reads classification and Markov sweeps")
    headline = headline_measure(kind)
    cells = []
    for c, cell in enumerate(cfg.cells()):
        task = cfg.cell_task(cell)
        chance = headline_chance(task)
        rows = []
        for s, seed in enumerate(cfg.seeds):
            v = {m: values[c, s, measures.index(m)] for m in measures}
            tr = half_rise(steps, v[headline], chance).time
            if not curve_phase_flags(v[headline], icl_threshold(task))[0]:
                tr = None  # rose, but not to the phase threshold: not a formed head
            row: dict[str, Any] = {
                "seed": seed,
                "transition_step": tr,
                "icl_final": float(v[headline][-3:].mean()),
                "icl_max": float(v[headline].max()),
            }
            if "iwl_acc" in v:
                row["iwl_final"] = float(v["iwl_acc"][-3:].mean())
            row["curves"] = {name: v[name].tolist() for name in CURVES if name in v}
            for name in ("prev_score_l0", "induction_score_l1", "mix_self_score_l1"):
                if name in v:
                    curve = v[name]
                    row[f"{name}_final"] = float(curve[-3:].mean())
                    row[f"{name}_half_step"] = _first_crossing(steps, curve, 0.5 * float(curve[-3:].mean()))
                    if tr is not None:
                        row[f"{name}_at_transition"] = float(np.interp(tr, steps, curve))
            rows.append(row)
        cells.append({"cell": cell, "seeds": rows})
    return {"config": cfg.to_dict(), "steps": steps.tolist(), "cells": cells}


def run_experiment(name: str, out_dir: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) every sweep of experiment ``name`` under ``out_dir``/<sweep>, then write
    ``out_dir``/findings.json (write, then rename) with each sweep's :func:`collect`; returns it."""
    from zipfhead.theory._io import atomic_write
    from zipfhead.theory.predict import load_calibration
    from zipfhead.toy_models.sweep import run_sweep

    if name not in EXPERIMENTS:
        raise ValueError(f"experiment = {name!r} is not allowed: one of {', '.join(EXPERIMENTS)}")
    out = Path(out_dir)
    findings: dict[str, Any] = {"experiment": name}
    for sweep_name, cfg in EXPERIMENTS[name]().items():
        calibration = load_calibration() if name in PACKAGED_CALIBRATION else None
        run_sweep(cfg, out / sweep_name, progress=progress, calibration=calibration)
        findings[sweep_name] = collect(out / sweep_name)
    atomic_write(out / "findings.json", lambda f: json.dump(findings, f, indent=1), mode="w")
    return findings
