# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # What repetition across sequences teaches the induction circuit
#
# On the demo's phase diagram the reduced model v1 ranked the transitions backwards: the toys formed their
# induction head *later* at K = 4096 than at K = 512-1024, and v1 could not, because in it repetition only
# competes (memorisation takes the loss the circuit would have learned from). This notebook records the control
# experiments that found the missing mechanism, asserts each finding on the measured numbers, and sets the
# reduced model v2 (`theory.reduced_v2`) beside them.
#
# The numbers come from `zipfhead experiment repetition --out runs/repetition` (four sweeps of the demo's toy:
# N = 8, D = 16, L = 16, B = 2, p_B = 1, alpha = 0, eps = 0.1, Adam 3e-3, batch 64; about 20 minutes on this
# 2-core machine), whose `findings.json` is kept, with the sweeps' full configs, as
# `proofs_notebooks/data/repetition.json`. The fast versions of the findings train in
# `tests/acceptance/test_repetition.py`.
#
# | sweep | what varies | models |
# |---|---|---|
# | `K` | K from 256 (the memorisation edge) to 16384, 3000 steps | 9 cells x 3 seeds |
# | `relabel` | K = 512, 1024, 4096 with each sequence's labels redrawn (`label_map = per_sequence`) | 3 x 3 |
# | `novel` | novel classes only (p_C = 1) and half (p_C = 0.5), K = 1024 | 2 x 3 |
# | `features` | K = 512 to 16384, 1000 steps, with the embedding's norms recorded | 4 x 2 |
#
# Transition steps follow the one rule of `theory.transition` on the in-context accuracy (novel classes) at the
# evaluations every 100 steps; a seed counts as forming a head when its smoothed accuracy reaches the phase
# threshold (half way from the copy plateau B/N to 1).

# %%
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
from scipy import stats

from zipfhead.theory.distributions import ClassificationTask, Zipf
from zipfhead.theory.phases import FORMED
from zipfhead.theory.predict import Calibration, load_calibration, measured_phase, predict_many
from zipfhead.theory.statistics import rank_sum
from zipfhead.toy_models.scores import score_predictions

START = time.perf_counter()
CHECKS: dict[str, int] = {}


def check(section: str, condition: bool, message: str = "") -> None:
    assert condition, f"{section}: {message}"
    CHECKS[section] = CHECKS.get(section, 0) + 1


HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
F = json.loads((HERE / "data" / "repetition.json").read_text())
STEPS = np.asarray(F["K"]["steps"])


def transitions(sweep: str) -> dict[float, list[float | None]]:
    """{first axis value: [transition step per seed]} of one sweep."""
    out = {}
    for cell in F[sweep]["cells"]:
        key = next(iter(cell["cell"].values()))
        out[key] = [r["transition_step"] for r in cell["seeds"]]
    return out


def seed_mean(v: list[float | None]) -> float:
    return float(np.mean(v)) if all(x is not None for x in v) else float("nan")


# %% [markdown]
# ## 1. The in-context window: fastest just above the memorisation edge, slower as K grows
#
# Above the edge every seed forms a head, and the step grows with K: about K^0.4 from K = 1024 on. At K = 256
# (the edge) the toys partly memorise and the head is late or absent.

# %%
K_TR = transitions("K")
Ks = sorted(K_TR)
means = {k: seed_mean(K_TR[k]) for k in Ks}
for k in Ks:
    seeds = [None if x is None else round(x) for x in K_TR[k]]
    print(f"K = {int(k):6d}: transition steps {seeds}, mean {means[k]:.0f}")
above = [k for k in Ks if k >= 512]
check("window", all(np.isfinite(means[k]) for k in above), "a seed above the edge formed no head")
rho = stats.spearmanr(above, [means[k] for k in above]).statistic
check("window", rho >= 0.9, f"Spearman(K, step) above the edge = {rho:.2f}")
check("window", means[16384] / means[1024] > 2.5, "16x more classes should be > 2.5x slower")
slope = np.polyfit(np.log([1024, 2048, 4096, 8192, 16384]), np.log([means[k] for k in Ks if k >= 1024]), 1)[0]
print(f"log-log slope of the step against K from K = 1024: {slope:.2f}")
check("window", 0.3 < slope < 0.55, f"slope {slope:.2f}")
edge = K_TR[256]
check("window", any(x is None for x in edge) or np.nanmin([x for x in edge if x]) > 1.4 * means[512], "edge")
fastest = min(above, key=lambda k: means[k])
check("window", fastest <= 1024, f"fastest K = {fastest}")

# %% [markdown]
# ## 2. The help comes from the fixed labels, not from the recurring items
#
# With the labels redrawn for every sequence the same items still recur across sequences, at the same rates; only
# the class -> label map stops carrying over. No head forms in 3000 steps at any K, as with novel classes only.
# With half the sequences novel (p_C = 0.5) the head forms, 2.3x later than with none.

# %%
R_TR = transitions("relabel")
N_TR = transitions("novel")
print("relabelled:", R_TR)
print("novel:", N_TR)
check("labels", all(x is None for v in R_TR.values() for x in v), "a relabelled toy formed a head")
check("labels", all(x is None for x in N_TR[1.0]), "a novel-only toy formed a head")
for cell in F["relabel"]["cells"] + F["novel"]["cells"][1:]:
    for r in cell["seeds"]:
        check("labels", r["icl_max"] < 0.4, f"in-context accuracy {r['icl_max']:.2f} on a control")
half = seed_mean(N_TR[0.5])
check("labels", half > 1.5 * means[1024], f"p_C = 0.5 at {half:.0f} against {means[1024]:.0f}")


# %% [markdown]
# ## 3. The trace of the fixed labels: the item features grow, the faster the more often a class recurs
#
# The RMS norm of the embedding's item rows (the scale of the item features, which both the in-weights read-out
# and the induction match multiply) grows before any head forms when the labels can be learned in weights, at a
# rate that falls with K; with redrawn labels or novel classes it barely moves and then shrinks.


# %%
def curve(sweep: str, name: str) -> dict[float, np.ndarray]:
    out = {}
    for cell in F[sweep]["cells"]:
        key = next(iter(cell["cell"].values()))
        out[key] = np.mean([r["curves"][name] for r in cell["seeds"]], axis=0)
    return out


feat = curve("features", "item_embed_norm")
i400 = int(np.flatnonzero(np.asarray(F["features"]["steps"]) == 400)[0])
growth = {k: feat[k][i400] / feat[k][0] for k in feat}
print("item-row norm at step 400 / at init:", {int(k): round(g, 2) for k, g in growth.items()})
ordered = [growth[k] for k in sorted(feat)]
check("features", all(np.diff(ordered) < 0), "the growth should fall with K")
check("features", growth[512.0] > 3.0, f"K = 512 grew x{growth[512.0]:.2f}")
for sweep in ("relabel", "novel"):
    c = curve(sweep, "item_embed_norm")
    steps = np.asarray(F[sweep]["steps"])
    j400 = int(np.flatnonzero(steps == 400)[0])
    for key, v in c.items():
        if sweep == "novel" and key != 1.0:
            continue
        check("features", v[j400] < 1.3 * v[0], f"{sweep} {key}: x{v[j400] / v[0]:.2f} at step 400")
        check("features", v[-1] < v[0], f"{sweep} {key}: the rows should end shorter than they began")

# %% [markdown]
# ## 4. The sub-circuits' clocks: the circuit forms as one, and no label shortcut precedes it
#
# Above the memorisation edge the layer-1 label -> item (previous-token) score and the layer-2 query ->
# matching-label score reach half their final values within one evaluation (100 steps) of each other at every K:
# neither sub-circuit is the slow one when repetition is scarce; the whole product is slower. At the edge
# (K = 256) the previous-token score leads by 100-200 steps. And before the head forms, layer 2 attends to the matching
# label no more on the training classes (whose labels the in-weights path knows) than on novel ones: the fixed
# labels do not help through an attention shortcut to the remembered label.

# %%
for cell in F["K"]["cells"]:
    for r in cell["seeds"]:
        if r["transition_step"] is None:
            continue
        lead = r["induction_score_l1_half_step"] - r["prev_score_l0_half_step"]
        if cell["cell"]["K"] >= 384:
            check("clocks", abs(lead) <= 100.0, f"K = {cell['cell']['K']}: the sub-circuits' half-steps {lead} apart")
        else:  # at the memorisation edge the previous-token step leads
            check("clocks", 0 <= lead <= 300.0, f"K = {cell['cell']['K']}: matching lags by {lead}")
mix = curve("features", "mix_induction_score_l1")
novel_att = curve("features", "induction_score_l1")
for k in feat:
    before = slice(1, 5)  # steps 100-400: before any head forms
    diff = np.abs(mix[k][before] - novel_att[k][before]).max()
    check("clocks", diff < 0.05, f"K = {k}: matching-label attention differs by {diff:.3f} between known and novel")

# %% [markdown]
# ## 5. The reduced model v2 beside the toys
#
# `theory.reduced_v2` adds the item-feature gain e to v1's state: the match is x = s a b e^2, the in-weights logit
# e w, and an untrained read-out leaks noise of variance e^2 leak on every label (the Jensen margin q). The leak
# first pulls e down; with a fixed label map memorisation rebuilds it (sooner for smaller K: a class recurs more
# often, so its read-out grows sooner), and the escape of (a, b) from the saddle, which goes as e^2, completes as
# it does; with nothing to memorise e goes to 0 and the escape stalls. (The toys' item rows grow from the start
# instead of dipping first: v2 reproduces the order and timing of the head, not the early feature trajectory.)
# Its constants, fitted to these toys (time scale, in-weights clock, capacity and leak, by
# `theory.predict.calibrate_rows` on the K, relabel and novel sweeps' 42 models, with the circuit's noise spread held
# at 100: these toys share one burstiness and do not pin it, section 9), reproduce the window within the seeds'
# spread, and the two controls.

# %%
FIT = load_calibration()  # the packaged calibration is this fit
print(f"fitted: time_scale {FIT.time_scale:.3g}, iw_speed {FIT.iw_speed:.3g}, kappa {FIT.kappa:.3g}, leak {FIT.leak}")
tasks = [ClassificationTask(K=int(k), N=8, D=16, L=16, B=2, p_B=1.0, eps=0.1, alpha=0.0) for k in above]
controls = [
    ClassificationTask(K=1024, N=8, D=16, L=16, B=2, p_B=1.0, eps=0.1, alpha=0.0, p_C=1.0),
    ClassificationTask(K=1024, N=8, D=16, L=16, B=2, p_B=1.0, eps=0.1, alpha=0.0, label_map="per_sequence"),
]
pred = predict_many(tasks + controls, lr=3e-3, steps=3000, calibration=FIT, closed_form=False)
rel = []
for k, p in zip(above, pred[: len(above)], strict=True):
    rel.append(abs(p["transition_step"] / means[k] - 1))
    print(f"K = {int(k):6d}: toys {means[k]:.0f}, v2 {p['transition_step']:.0f}")
seed_spread = np.median(
    [abs(a - b) / a for k in above for i, a in enumerate(K_TR[k]) for j, b in enumerate(K_TR[k]) if i != j]
)
print(f"median relative error {np.median(rel):.3f}; between seeds {seed_spread:.3f}")
check("v2", np.median(rel) <= seed_spread, "v2 should match the seed means as well as one seed matches another")
check("v2", stats.spearmanr(above, [p["transition_step"] for p in pred[: len(above)]]).statistic >= 0.9, "rank")
check("v2", all(p["transition_step"] is None for p in pred[len(above) :]), "a control predicted to form a head")

# %% [markdown]
# ## 6. What the presets add: K sets the clock; B and p_B barely do, and v2 cannot say so
#
# The `demo`, `reddy2024` (K x B) and `chan2022` (alpha x p_B at K = 8192) presets train the same toy with the
# same optimiser (Adam 6e-3, batch 64, 1500 steps, 2 seeds). Their findings (the one rule on the 100-step grid,
# read by `toy_models.experiments.collect`) are kept with full configs, and the demo's fitted calibration, as
# `proofs_notebooks/data/presets.json` (commands: `make demo`, then `zipfhead sweep --preset reddy2024
# --calibration runs/demo/theory.json`, and the same for `chan2022`; about 22 minutes in all here).
#
# * Above the memorisation edge the step grows with K (about K^0.37 from K = 1024 to 16384 on the demo).
# * At a fixed K, the burstiness B in {1, 2, 4} moves it by at most ~15%, no more than the seeds differ; and p_B
#   0.75 against 1 moves it by at most ~15% everywhere (demo, K >= 384; chan2022, alpha <= 1). Only p_B = 0.5 is
#   clearly slower (1.2-1.5x at K = 8192).
# * The Zipf exponent opens the same window as K: at K = 8192 the head forms sooner as alpha rises to 0.75
#   (727 -> 303 steps at p_B = 1), later again at alpha = 1, and memorisation wins from alpha = 1.25.
#
# Until this stop v2's circuit moved against a constant Adam noise floor (1 / batch), so the drive of the in-context
# signal, proportional to the bursty fraction and to B (N - B) / N^2, set its clock: it predicted B = 1 2-3x slower
# than B = 2 and p_B = 0.75 1.3-1.7x slower than p_B = 1, the main source of its misses on these presets. v2 now
# takes the circuit's noise from the data (section 9): the variance of one sample's gradient on a circuit strength
# scales with the cases' sensitivity to the match, E[(dl/dx)^2], which B and p_B move as they move the signal, so
# they largely cancel, while the item gain e^2 (the K clock) multiplies the signal only. With the demo's fitted
# constants (`demo_calibration` below, fitted by the demo's sweep rule on its 4 calibration cells) v2 now puts
# p_B = 0.75 and B = 1 within the toys' band of p_B = 1 and B = 2, and keeps the K clock. With the noise removed (a
# batch of 64000: every strength moves at Adam's unit speed) the K clock goes too: the noise is what lets the item
# gain set the speed.

# %%
P = json.loads((HERE / "data" / "presets.json").read_text())


def preset_means(name: str) -> dict[tuple, float]:
    """{(axis values...): seed-mean transition step, NaN where a seed formed no head}, axes in sorted order."""
    out = {}
    for cell in P[name]["cells"]:
        key = tuple(v for _, v in sorted(cell["cell"].items()))
        out[key] = seed_mean([r["transition_step"] for r in cell["seeds"]])
    return out


demo, reddy, chan = preset_means("demo"), preset_means("reddy2024"), preset_means("chan2022")
# The bounds below are read against the seeds' own noise: the median relative difference between the two seeds of
# a cell. A ratio of two cells' 2-seed means has a relative spread of about that much again (each mean halves a
# seed's variance, the ratio doubles it), so a ratio inside [0.85, 1.2] is within about 1.5 of these spreads.
SEED_BAND = float(
    np.median(
        [
            abs(t[0] - t[1]) / np.mean(t)
            for name in ("demo", "reddy2024", "chan2022")
            for cell in P[name]["cells"]
            if None not in (t := [r["transition_step"] for r in cell["seeds"]])
        ]
    )
)
print(f"median relative difference between seeds: {SEED_BAND:.3f}")
check("presets", 1.2 <= 1 + 2 * SEED_BAND, "the bound 1.2 must lie within two of the seeds' spreads")
ratio_pb = {int(k): demo[(k, 0.75)] / demo[(k, 1.0)] for k, pb in demo if pb == 1.0 and k >= 384}
print("demo, step at p_B 0.75 over p_B 1:", {k: round(v, 2) for k, v in ratio_pb.items()})
check("presets", all(0.85 <= v <= 1.2 for v in ratio_pb.values()), "p_B 0.75 against 1 on the demo")
chan_pb = {a: chan[(a, 0.75)] / chan[(a, 1.0)] for a in (0.0, 0.5, 0.75, 1.0)}
chan_half = {a: chan[(a, 0.5)] / chan[(a, 1.0)] for a in (0.0, 0.5, 0.75)}
print("chan2022, p_B 0.75 over 1:", {a: round(v, 2) for a, v in chan_pb.items()})
print("chan2022, p_B 0.5 over 1:", {a: round(v, 2) for a, v in chan_half.items()})
check("presets", all(0.85 <= v <= 1.2 for v in chan_pb.values()), "p_B 0.75 against 1 on chan2022")
# slower by more than the seeds differ (1 + SEED_BAND = 1.13); 1.6 caps the observed 1.21-1.52
check("presets", all(1.15 <= v <= 1.6 for v in chan_half.values()), "p_B 0.5 is slower at K = 8192")
spread_b = {K: max(reddy[(B, K)] for B in (1, 2, 4)) / min(reddy[(B, K)] for B in (1, 2, 4)) for K in (1024, 4096)}
spread_b[16384] = reddy[(2, 16384)] / reddy[(1, 16384)]  # B = 4 formed its head in one seed of two there
print("reddy2024, largest over smallest step across B:", {k: round(v, 2) for k, v in spread_b.items()})
check("presets", all(v <= 1.2 for v in spread_b.values()), "B moves the step by more than the seeds do")
demo_Ks = [1024, 2048, 4096, 8192, 16384]
law = np.polyfit(np.log(demo_Ks), np.log([demo[(k, 1.0)] for k in demo_Ks]), 1)[0]
print(f"demo, log-log slope of the step against K from 1024: {law:.2f}")
# brackets the repetition sweep's 0.42 at lr 3e-3 (section 1) and the presets' 0.37
check("presets", 0.25 <= law <= 0.5, f"slope {law:.2f}")
alpha_steps = [chan[(a, 1.0)] for a in (0.0, 0.5, 0.75)]
print("chan2022, p_B 1, alpha 0, 0.5, 0.75, 1:", [round(chan[(a, 1.0)]) for a in (0.0, 0.5, 0.75, 1.0)])
check("presets", alpha_steps[0] > alpha_steps[1] > alpha_steps[2] < chan[(1.0, 1.0)], "alpha's window")
check("presets", all(np.isnan(chan[(a, pb)]) for a in (1.25, 1.5) for pb in (0.5, 0.75)), "memorisation wins")

# v2 beside them, with the demo's fitted constants; then the same model without Adam's noise floor
FIT_DEMO = Calibration(**P["demo_calibration"])
base = dict(N=8, D=16, L=16, eps=0.1, alpha=0.0)
probe = [
    ClassificationTask(K=4096, B=2, p_B=1.0, **base),
    ClassificationTask(K=4096, B=2, p_B=0.75, **base),
    ClassificationTask(K=4096, B=1, p_B=1.0, **base),
    ClassificationTask(K=512, B=2, p_B=1.0, **base),
    ClassificationTask(K=16384, B=2, p_B=1.0, **base),
]
for batch, label in ((64, "batch 64 (the toys')"), (64000, "batch 64000 (no noise floor)")):
    pr = predict_many(probe, lr=6e-3, steps=20000, batch_size=batch, calibration=FIT_DEMO, closed_form=False)
    t = [p["transition_step"] for p in pr]
    r_pb, r_b, r_k = t[1] / t[0], t[2] / t[0], t[4] / t[3]
    print(f"v2, {label}: p_B 0.75 / 1 = {r_pb:.2f}, B 1 / 2 = {r_b:.2f}, K 16384 / 512 = {r_k:.2f}")
    # the toys' batch: p_B and B inside the toys' band (1.2), the K ratio near the toys' own 945 / 280 = 3.4;
    # without the noise: p_B and B inside the band, and the K ratio far below the toys'
    if batch == 64:
        check("presets", r_pb <= 1.2 and r_b <= 1.2 and r_k >= 2.5, "v2 with the data's noise: K sets the clock")
    else:
        check("presets", abs(r_pb - 1) < 0.1 and r_b < 1.25 and r_k < 1.3, "v2 at unit speed: no K clock")

# %% [markdown]
# ## 7. What set v2's clock wrong: the in-context drive, not the class statistics
#
# Two measurements narrowed down what the model had to change.
#
# *The item features grow at a rate set by K alone.* In the `features` sweep (section 3) the RMS norm of the
# embedding's item rows grows by step 400 about 3x less for each 4x more classes from K = 2048 on: a power of
# K near -0.7, steeper than the K^-0.5 that batch sampling alone would give (a class's memorisation gradient is
# coherent across batches only as often as it recurs). At K = 512 the head forms as the norm passes about 1.2
# (4.5 times its initial 0.27). Every sequence trains the query's class -> label map once, whatever B and p_B,
# which is why this clock can ignore the burstiness.
#
# *v2 predicted the toys' order when its drive was held fixed.* With the constant noise floor, v2 evaluated on every
# preset cell with the burstiness set to the demo's reference (B = 2, p_B = 1) but K and alpha as they are ranked
# the toys' transitions far better than with the real B and p_B (reddy2024 0.81 against 0.58, chan2022 0.78 against
# 0.42, Spearman on seed means): its dependence on K and alpha was the toys' clock, and its dependence on B and p_B
# (the drive of the in-context gradient against a fixed Adam noise floor) its error. Earlier tries that did not
# mend it with one set of constants fitted on the demo: a floor scaled by the in-context data factor alone
# (reddy2024 0.72, chan2022 0.2-0.55, demo 0.76-0.85), the exact Gaussian expectation of the interference, and a
# coherence-limited speed for the features. With the noise taken from the data's sensitivity (section 9) the real
# burstiness now ranks as well as the reference one: the check below asserts it.

# %%
feat = {c["cell"]["K"]: c["seeds"] for c in F["features"]["cells"]}
growth = {
    K: float(np.mean([s["curves"]["item_embed_norm"][4] / s["curves"]["item_embed_norm"][0] - 1 for s in v]))
    for K, v in feat.items()
}
print(
    "item-row norm growth by step 400 (fraction of the initial norm):", {int(k): round(g, 2) for k, g in growth.items()}
)
big = [k for k in sorted(growth) if k >= 2048]
slope = np.polyfit(np.log(big), np.log([growth[k] for k in big]), 1)[0]
print(f"log-log slope of that growth against K from 2048: {slope:.2f}")
check("features clock", slope <= -0.5, f"slope {slope:.2f}: the growth falls faster than K^-0.5")
steps_f = np.asarray(F["features"]["steps"])
at = [float(np.interp(s["transition_step"], steps_f, s["curves"]["item_embed_norm"])) for s in feat[512.0]]
print("K = 512: item-row norm at the transition, per seed:", [round(v, 2) for v in at])
check("features clock", all(1.0 <= v <= 1.4 for v in at), "the head forms as the norm passes ~1.2")


def cell_task(sweep: dict, cell: dict, **override: float) -> ClassificationTask:
    """One cell of a stored sweep (a preset of presets.json, or a sweep of an experiment's findings) as its task:
    the sweep's task with the cell's values, then ``override``."""
    fields = {k: v for k, v in sweep["config"]["task"].items() if k != "kind"}
    values = {k: (int(v) if k in ("K", "B") else float(v)) for k, v in cell["cell"].items()}
    return ClassificationTask(**(fields | values | override))


def preset_tasks(name: str, reference: bool) -> tuple[list[ClassificationTask], np.ndarray]:
    """A preset's cells as tasks (at the reference drive B = 2, p_B = 1 if ``reference``), and their seed means."""
    override = {"B": 2, "p_B": 1.0} if reference else {}
    tasks = [cell_task(P[name], cell, **override) for cell in P[name]["cells"]]
    means = [seed_mean([r["transition_step"] for r in cell["seeds"]]) for cell in P[name]["cells"]]
    return tasks, np.asarray(means)


order = {}
blocks = [(n, r, *preset_tasks(n, r)) for n in ("reddy2024", "chan2022") for r in (False, True)]
every = [t for _, _, tasks, _ in blocks for t in tasks]  # one parallel integration for all four sets
pr = predict_many(every, lr=6e-3, steps=1500, calibration=FIT_DEMO, closed_form=False, n_times=40)
pred_all = np.array([np.nan if p["transition_step"] is None else p["transition_step"] for p in pr])
start = 0
for name, reference, tasks, means in blocks:
    pred = pred_all[start : start + len(tasks)]
    start += len(tasks)
    ok = np.isfinite(pred) & np.isfinite(means)
    order[(name, reference)] = float(stats.spearmanr(pred[ok], means[ok]).statistic)
print({f"{n} {'reference drive' if r else 'real drive'}": round(v, 2) for (n, r), v in order.items()})
for name in ("reddy2024", "chan2022"):
    # 0.7: the target for these presets; 0.05: about five adjacent rank swaps among ~11 cells
    check("drive", order[(name, False)] >= 0.7, f"{name}: v2 with the real burstiness ranks below 0.7")
    check("drive", order[(name, False)] >= order[(name, True)] - 0.05, f"{name}: the real drive still costs v2")

# %% [markdown]
# ## 8. One statistic of the class distribution sets the clock: the participation number 1 / sum_k p_k^2
#
# The uniform K axis (the demo) and the Zipf alpha axis (chan2022, K = 8192) fall on one curve when each cell is
# placed at its participation number K_eff = 1 / sum_k p_k^2, the inverse of the chance that two draws share a class
# (how often a class recurs across sequences). Above the memorisation edge and below alpha = 1 (where
# memorisation starts to compete), the step ranks with K_eff at Spearman 0.95 over 11 cells at p_B = 1, against
# 0.85 with K itself: alpha = 0.5 at K = 8192 (K_eff = 3363) forms its head at 591 steps, where uniform toys with
# K = 2048 and 4096 take 442 and 668. A feature clock driven by the coherent part of the memorisation gradient
# (its squared norm is proportional to sum_k p_k^2 for random class means) carries exactly this statistic; v2's
# per-class read-outs carry (sum_k p_k^1.5)^-2 instead (4832 at alpha = 0.5).


# %%
def participation(K: int, alpha: float) -> float:
    """1 / sum_k p_k^2 of Zipf(alpha) over K classes (the collision probability's inverse)."""
    return 1.0 / rank_sum("collision", Zipf(K=K, alpha=alpha))


rows = [(k, k, m) for (k, pb), m in demo.items() if pb == 1.0 and k >= 384 and np.isfinite(m)]
rows += [(8192, participation(8192, a), m) for (a, pb), m in chan.items() if pb == 1.0 and a <= 0.75 and np.isfinite(m)]
k_raw, k_eff, step = (np.array(c) for c in zip(*rows, strict=True))
rho_eff = stats.spearmanr(k_eff, step).statistic
rho_raw = stats.spearmanr(k_raw, step).statistic
print(f"{len(rows)} cells: Spearman(step, K_eff) = {rho_eff:.2f}, Spearman(step, K) = {rho_raw:.2f}")
check("participation", len(rows) >= 10, f"only {len(rows)} cells")
# 0.9: the seeds' own Spearman ceiling on the demo's held-out cells is 0.89; 0.05: K_eff must rank better than K
# by more than five adjacent swaps among 11 cells (each moves a Spearman by 6 x 2 / (11 x 120) = 0.009)
check("participation", rho_eff >= 0.9 and rho_eff - rho_raw >= 0.05, f"{rho_eff:.2f} against {rho_raw:.2f}")
# alpha = 0.5: its K_eff lies between 2048 and 4096, and so does its step (between those uniform cells' steps)
k_half = participation(8192, 0.5)
check("participation", 2048 < k_half < 4096, f"K_eff = {k_half:.0f}")
check("participation", demo[(2048, 1.0)] < chan[(0.5, 1.0)] < demo[(4096, 1.0)], "alpha 0.5 off the uniform curve")

# %% [markdown]
# ## 9. The circuit's noise comes from the data: the three presets with the demo's constants
#
# Adam divides each coordinate's mean gradient by the root mean square of its minibatch gradients. In v2 the
# circuit strengths (a, b, c) now take that noise from the data: one sample's gradient on a or b varies as the
# cases' sensitivity to the match, so the floor is spread x E_case[(dl/dx)^2] / batch (E_case[(dl/dc)^2] for c;
# `theory._reduced_v2_flow.drift`, derived in notebook 02, section 11). The burstiness moves that floor as it moves the
# signal (the i.i.d. and memorised cases carry neither), so B and p_B enter the speed only as the square root of
# the fraction of sequences that teach the circuit; the item gain e^2 multiplies the signal only, so the K clock
# stays. The spread is fitted by the demo's own rule (`calibrate_rows` on its 4 calibration cells, with the time
# scale and the in-weights clock): the repetition toys, which all share p_B = 1 and B = 2, do not pin it (their
# best fits at spread 10, 30, 100 and 300 differ by 0.017 in rms log residual).
#
# Scored as a sweep scores (`toy_models.scores.score_predictions`, the one transition rule, the same phase rule),
# every cell of `reddy2024` and `chan2022` and the demo's held-out cells, with the demo's constants unchanged:

# %%
DEMO_CAL_CELLS = [int(c) for c in P["demo_calibration"]["source"].split("[")[1].rstrip("]").split(",")]


def sweep_measured(sweep: dict) -> tuple[list[ClassificationTask], np.ndarray, list[list[str]]]:
    """A stored sweep's tasks, its (C, S) measured transition steps (NaN where no head formed) and (C, S) phases, by
    the sweep's rules (:func:`theory.predict.measured_phase`)."""
    tasks, steps, phases = [], [], []
    for cell in sweep["cells"]:
        task = cell_task(sweep, cell)
        row_p = [measured_phase(task, r["curves"]["icl_acc"], r["iwl_final"]) for r in cell["seeds"]]
        row_s = [
            float(r["transition_step"]) if r["transition_step"] is not None and ph in FORMED else float("nan")
            for r, ph in zip(cell["seeds"], row_p, strict=True)
        ]
        tasks.append(task)
        steps.append(row_s)
        phases.append(row_p)
    return tasks, np.asarray(steps), phases


names = ("demo", "reddy2024", "chan2022")
measured = {n: sweep_measured(P[n]) for n in names}
every = [t for n in names for t in measured[n][0]]
pr = predict_many(every, lr=6e-3, steps=1500, calibration=FIT_DEMO, closed_form=False)
SCORES, PRED, start = {}, {}, 0
for n in names:
    tasks, steps, phases = measured[n]
    part = PRED[n] = pr[start : start + len(tasks)]
    start += len(tasks)
    held = [c for c in range(len(tasks)) if n != "demo" or c not in DEMO_CAL_CELLS]
    sc = score_predictions(held, steps, phases, [p["transition_step"] for p in part], [p["phase"] for p in part])
    SCORES[n] = sc
    print(
        f"{n:10s} Spearman on seed means {sc['spearman_seed_means']['value']:+.2f} "
        f"(ceiling {sc['noise_ceiling']['spearman']['median']:+.2f}), median relative error "
        f"{sc['median_relative_error_seed_means']['value']:.2f} (ceiling "
        f"{sc['noise_ceiling']['median_relative_difference']['median']:.2f}), phases "
        f"{sc['phase_agreement_percent']['median']:.0f}%"
    )
    if n != "demo":
        missed = [
            (P[n]["cells"][c]["cell"], phases[c], part[c]["phase"]) for c in held if part[c]["phase"] not in phases[c]
        ]
        print("   phases missed (cell, toys, v2):", missed)
# the targets: demo Spearman >= 0.85 and within 0.05 of its ceiling, error <= 0.15, phases >= 90%;
# reddy2024 and chan2022 Spearman >= 0.7 with the demo's constants
d = SCORES["demo"]
check("noise", d["spearman_seed_means"]["value"] >= max(0.85, d["noise_ceiling"]["spearman"]["median"] - 0.05), "demo")
check("noise", d["median_relative_error_seed_means"]["value"] <= 0.15, "demo error")
check("noise", d["phase_agreement_percent"]["median"] >= 90, "demo phases")
for n in ("reddy2024", "chan2022"):
    check("noise", SCORES[n]["spearman_seed_means"]["value"] >= 0.7, f"{n} Spearman")
# the phase targets (>= 85% on reddy2024 and chan2022), met since v2 carries the recruitment rule of section 12
for n in ("reddy2024", "chan2022"):
    check("noise", SCORES[n]["phase_agreement_percent"]["median"] >= 85, f"{n} phases")
# Where memorisation wins in the toys (K = 64; alpha >= 1.25 at K = 8192) the toys form no head, by the mechanism of
# section 11 (the heads recruited by memorisation); v2 now predicts those cells as memorisers (section 12):
ch = measured["chan2022"]
lost = [c for c in range(len(ch[0])) if ch[0][c].alpha >= 1.25 and all(p == "iwl" for p in ch[2][c])]
check("noise", len(lost) >= 4 and all(PRED["chan2022"][c]["phase"] == "iwl" for c in lost), "alpha")

# %% [markdown]
# ## 10. The closed form of v2's escape against the toys
#
# `theory.closed_form_v2.escape_v2` solves v2's three stages in closed form (notebook 02, section 12): the leak
# collapses the item gain, memorisation rebuilds it at a rate k ~ sqrt(batch / K_eff), and the circuit escapes
# noise-limited at a rate ~ e^2. Its step is scored here on the same cells as section 9, with the demo's constants
# and the integration's phase (the closed form does not carry memorisation taking the loss, so it has no phase of
# its own), beside the same noise ceilings. Measured: it ranks the cells as well as a second seed does on all three
# presets (Spearman on seed means 0.99, 0.90, 0.80 against ceilings 0.88, 0.91, 0.80), but its steps are off by
# more than the seeds' spread (median relative error 0.19, 0.29, 0.74 against 0.15, 0.10, 0.15): it is too fast
# at small K_eff, where memorisation (not in the closed form) slows the toys, most of all at alpha = 1 in chan2022
# (K_eff = (sum_k p_k^1.5)^-2 = 131: ~130 steps where the toys take ~500), and too slow at K >= 8192, where it
# leaves out the copy strength's speed-up of the circuit (notebook 02, section 12).

# %%
from zipfhead.theory.closed_form_v2 import escape_v2
from zipfhead.theory.predict import reduced_params
from zipfhead.theory.schedule import Schedule

CLOSED = {}
for n in names:
    tasks, steps, phases = measured[n]
    per_step = FIT_DEMO.time_scale * 6e-3
    closed_steps = [escape_v2(t, reduced_params(t, FIT_DEMO, Schedule(lr=6e-3))).time / per_step for t in tasks]
    held = [c for c in range(len(tasks)) if n != "demo" or c not in DEMO_CAL_CELLS]
    sc = CLOSED[n] = score_predictions(held, steps, phases, closed_steps, [p["phase"] for p in PRED[n]])
    print(
        f"{n:10s} closed form: Spearman on seed means {sc['spearman_seed_means']['value']:+.2f} "
        f"(ceiling {sc['noise_ceiling']['spearman']['median']:+.2f}), median relative error "
        f"{sc['median_relative_error_seed_means']['value']:.2f} (ceiling "
        f"{sc['noise_ceiling']['median_relative_difference']['median']:.2f})"
    )
# the ranking targets, met by the closed form alone: demo >= 0.85 and within 0.05 of its ceiling, the others
# >= 0.7; and its error on the demo within 0.1 of the ceiling (0.1: the closed form's documented factor-1.6 band)
dc = CLOSED["demo"]
check("closed form", dc["spearman_seed_means"]["value"] >= max(0.85, dc["noise_ceiling"]["spearman"]["median"] - 0.05))
check("closed form", all(CLOSED[n]["spearman_seed_means"]["value"] >= 0.7 for n in ("reddy2024", "chan2022")))
ceiling_rel = dc["noise_ceiling"]["median_relative_difference"]["median"]
check("closed form", dc["median_relative_error_seed_means"]["value"] <= ceiling_rel + 0.1, "demo error")

# %% [markdown]
# ## 11. Where memorisation wins, what stops the head: a control experiment
#
# v2 forms the head where the toys memorise and form none (K = 64 in reddy2024; alpha >= 1.25 in chan2022), the
# phase miss of section 9. Two hypotheses were separable on the toys themselves, by `zipfhead experiment
# recruitment --out runs/recruitment` (the presets' toys and schedule: Adam 6e-3, 1500 steps, 2 seeds; about 4
# minutes here), kept as `proofs_notebooks/data/recruitment.json`:
#
# 1. **Adam's memory.** With beta2 = 0.999 Adam divides each step by the RMS of the last ~1000 steps' gradients,
#    the presets' whole horizon: once memorisation has collapsed the loss, the early, large gradients would still
#    shrink every step of the circuit (v2 with this lag stops the head at K = 64, but not at alpha = 1.25).
#    Control: the same toys with beta2 = 0.99 (a 100-step memory). **Refuted**: no head at K = 64 nor at
#    alpha = 1.25 with either memory, and the same phases.
# 2. **The head is recruited.** Recorded with a new measure, the layer-2 query -> itself attention
#    (`toy_models.measures.query_self_score`, on the training mixture). At K = 64 the head attends from the query to
#    its own item by step 100 (mass ~1.0 at the end): it has become a second in-weights path (the query's item
#    through the head's OV to its memorised label), so its attention on the matching label falls to 0 and no
#    induction head can form. Where the head forms (K = 256, 1024) the self mass ends at 0. **At alpha >= 1.25 the
#    layer-2 head is not recruited** (self mass 0.07-0.33): the toys stay on the copy plateau (in-context accuracy
#    0.22-0.24 against B / N = 0.25), the copy forms and the match never does. What fails there is the first
#    step: the layer-1 previous-token score falls from its initial 0.17 and never rises (0.02-0.16 at the end,
#    against 0.89-0.94 where the head forms), while the *layer-1* head's query -> itself mass is 0.40-0.52 by step
#    200 and stays there (0.06 at initialisation; at alpha = 0.75 it falls to 0.01 by step 200 and rises to
#    0.24-0.26 only after the head has formed; alpha = 1, where heads form late, sits between at 0.19-0.22):
#    memorisation recruits the layer that should have become the previous-token head. At K = 64 both layers are
#    recruited (layer 1: 0.5-0.6).
#
# So the heads are shared sub-circuits that memorisation takes over, layer 2 when a few classes can be memorised
# outright, layer 1 when a Zipf head of classes carries most of the mass. v2 has neither: its attention has no slot
# for the query's own token, so nothing in it can be recruited. A probe of the other candidate, that the learned
# item features serve only the frequent classes' directions at high alpha, found the opposite: after 600 steps the
# embedding's gain on novel random items is 1.78-1.88 at alpha = 1.25-1.5 against 1.37 at alpha = 0.75 (the note of
# this stop gives the script; not kept in the repository).

# %%
R = json.loads((HERE / "data" / "recruitment.json").read_text())


def runs_of(sweep: str, **cell: float) -> list[dict]:
    """The seeds' rows of one cell of a recruitment sweep."""
    for c in R[sweep]["cells"]:
        if all(float(c["cell"][k]) == v for k, v in cell.items()):
            return c["seeds"]
    raise KeyError((sweep, cell))


for sweep, cell in (("K", {"K": 64.0}), ("K_beta2", {"K": 64.0})):
    rows = runs_of(sweep, **cell)
    own = [r["mix_self_score_l1_final"] for r in rows]
    early = [r["curves"]["mix_self_score_l1"][1] for r in rows]  # step 100
    print(
        f"{sweep} {cell}: heads {[r['transition_step'] for r in rows]}, self mass at 100 {np.round(early, 2)}, "
        f"final {np.round(own, 2)}"
    )
    check("recruitment", all(r["transition_step"] is None for r in rows), f"{sweep}: a head formed at K = 64")
    # 0.9: the recruited head keeps ~all of the query's attention (measured 0.98-1.0); 0.5 by step 100: early
    check("recruitment", min(own) >= 0.9 and min(early) >= 0.5, f"{sweep}: the head is not on the query itself")
    check("recruitment", max(r["curves"]["mix_induction_score_l1"][-1] for r in rows) <= 0.05, "matching label")
for K in (256.0, 1024.0):
    rows = runs_of("K", K=K)
    check("recruitment", all(r["transition_step"] is not None for r in rows), f"K = {K}: no head")
    check("recruitment", max(r["mix_self_score_l1_final"] for r in rows) <= 0.05, f"K = {K}: self mass")
for sweep, alpha in (("alpha", 1.25), ("alpha", 1.5), ("alpha_beta2", 1.25)):
    rows = runs_of(sweep, alpha=alpha)
    own = [r["mix_self_score_l1_final"] for r in rows]
    icl = [r["icl_final"] for r in rows]
    print(
        f"{sweep} alpha = {alpha}: heads {[r['transition_step'] for r in rows]}, self mass {np.round(own, 2)}, "
        f"in-context accuracy {np.round(icl, 2)} (copy plateau B / N = 0.25)"
    )
    check("recruitment", all(r["transition_step"] is None for r in rows), f"{sweep} {alpha}: a head formed")
    # not recruited: the self mass stays below half (measured at most 0.33); on the copy plateau within 0.05
    check("recruitment", max(own) < 0.5, f"{sweep} {alpha}: recruited")
    check("recruitment", all(abs(v - 0.25) <= 0.05 for v in icl), f"{sweep} {alpha}: off the copy plateau")
rows = runs_of("alpha", alpha=1.0)
check("recruitment", all(r["transition_step"] is not None for r in rows), "alpha = 1: the edge moved")
# the first step at alpha >= 1.25: no previous-token head (its score ends at or below its initial value), and the
# layer-1 head's query -> itself mass at step 200 (index 2) at least three times alpha = 0.75's (measured 33-43x)
base_l0 = max(r["curves"]["mix_self_score_l0"][2] for r in runs_of("alpha", alpha=0.75))
for alpha in (1.25, 1.5):
    rows = runs_of("alpha", alpha=alpha)
    prev = [r["curves"]["prev_score_l0"] for r in rows]
    own0 = [r["curves"]["mix_self_score_l0"][2] for r in rows]
    print(
        f"alpha = {alpha}: previous-token score {[round(p[-1], 2) for p in prev]} (initial {prev[0][0]:.2f}), "
        f"layer-1 self mass at step 200 {np.round(own0, 2)} (alpha = 0.75: {base_l0:.2f})"
    )
    check("recruitment", all(p[-1] <= p[0] for p in prev), f"alpha = {alpha}: a previous-token head grew")
    check("recruitment", min(own0) >= 3 * base_l0, f"alpha = {alpha}: layer 1 not recruited")
done = [r["curves"]["prev_score_l0"][-1] for K in (256.0, 1024.0) for r in runs_of("K", K=K)]
check("recruitment", min(done) >= 0.85, "where the head forms, the previous-token head does")

# %% [markdown]
# ## 12. Who holds the heads: a race at the escape, tested on cells no fit has seen
#
# Section 11 showed the heads are shared: where memorisation wins, it takes them over before the induction circuit
# escapes. v2 now carries this as one rule (`theory.reduced_v2.integrate_v2`, on by default; `predict_many(...,
# recruitment=False)` is the ablation). When the circuit would escape (v2's transition), compare what the two uses
# of a head are worth: copying a label of the context is right B / N of the time (the copy plateau), and the
# in-weights read-out is right with v2's in-weights proxy (the probability of the correct label on known classes
# absent from the context). If the in-weights proxy is at least B / N, memorisation holds the heads: no induction
# head forms, and v2 goes on from that state with the previous-token and match strengths at 0, the copy and
# memorisation free. The rule has no constant of its own: B / N is the task's, the rest is v2 with the demo's
# constants.
#
# Where it came from: on the three presets, v2's in-weights proxy at its transition is 0.33-0.71 in every cell
# whose toys form no head for lack of recruitment (K = 64; alpha >= 1.25) and 0.05-0.21 where the toys' heads
# form, with B / N = 0.25 between. It was then tested on 9 new cells between the presets' heads and their
# memorisers, `zipfhead experiment recruitment_edge --out runs/recruitment_edge` (the presets' toys and schedule,
# 2 seeds, about 3 minutes here; kept as `proofs_notebooks/data/recruitment_edge.json`): K = 96, 128, 192 at B = 2
# (reddy2024's toy), and alpha = 1.05, 1.1, 1.15 x p_B = 0.75, 1 (chan2022's toy, K = 8192). The rule's
# prediction for each cell was written down before the toys were read. Measured:
#
# * **Presets** (the demo's constants, scored as section 9): phases 100% / 87% / 92% (demo held out, reddy2024,
#   chan2022) with the rule, 100% / 70% / 64% without it; the steps and rankings are unchanged (no recruited cell
#   forms a head in the toys).
# * **Whether a head forms, on the new cells**: right for 15 of the 18 toys (8 of 9 cells). It gets the p_B
#   dependence at the edge: at alpha = 1.1-1.15 the toys form heads at p_B = 1 in every seed and none at
#   alpha = 1.15, p_B = 0.75 (one of two at 1.1), as predicted: more bursty sequences speed the circuit and slow
#   memorisation. It misses K = 192 (the toys form none, with in-weights accuracy 0.37-0.46; v2's in-weights proxy
#   at its transition is 0.17 there): the toys' edge in K lies between 192 and 256, v2's between 128 and 192.
# * **What it does not carry**: near the edge the toys that do form a head form it late (alpha = 1.05-1.15: 522-
#   1276 steps, against v2's 288-306), as if memorisation held the heads in part; the rule is all or nothing. And
#   after the heads are taken v2 memorises too slowly: in-weights accuracy at 1500 steps 0.40 at K = 128 (toys
#   0.61-0.62) and 0.39-0.45 at alpha = 1.1-1.15, p_B = 0.75 (toys 0.50-0.62), so three recruited cells are
#   predicted `neither` where the toys are `iwl` (the toys' heads, once recruited, add a second in-weights path).

# %%
EDGE = json.loads((HERE / "data" / "recruitment_edge.json").read_text())


edge_k, edge_alpha = sweep_measured(EDGE["K"]), sweep_measured(EDGE["alpha"])
edge_tasks, edge_phases = edge_k[0] + edge_alpha[0], edge_k[2] + edge_alpha[2]
edge_steps = np.concatenate([edge_k[1], edge_alpha[1]])
# the predictions written down before the toys were read: does a head form?
PREDICTED_HEAD = [False, False, True, True, True, False, True, False, True]
with_rule = predict_many(edge_tasks, lr=6e-3, steps=1500, calibration=FIT_DEMO, closed_form=False)
check("edge", [p["phase"] in FORMED for p in with_rule] == PREDICTED_HEAD, "the packaged rule is not the one tested")
right = sum((ph in FORMED) == pred for row, pred in zip(edge_phases, PREDICTED_HEAD, strict=True) for ph in row)
for task, row, st, p in zip(edge_tasks, edge_phases, edge_steps, with_rule, strict=True):
    print(
        f"K = {task.K:5d} alpha = {task.alpha:.2f} p_B = {task.p_B:.2f}: toys {row} {np.round(st)}, "
        f"v2 {p['phase']} {None if p['transition_step'] is None else round(p['transition_step'])}, "
        f"in-weights {p['iwl_accuracy']:.2f}"
    )
print(f"whether a head forms: right for {right} of {sum(len(row) for row in edge_phases)} toys")
check("edge", right >= 15, f"{right} of 18")
# the p_B dependence at the edge, in the toys and in v2: at alpha = 1.1 and 1.15 heads at p_B = 1 in every seed, and
# none at alpha = 1.15, p_B = 0.75
by = {(t.alpha, t.p_B): (row, p) for t, row, p in zip(edge_tasks, edge_phases, with_rule, strict=True)}
for alpha in (1.1, 1.15):
    row, p = by[(alpha, 1.0)]
    check("edge", all(ph in FORMED for ph in row) and p["phase"] in FORMED, f"alpha {alpha}, p_B 1")
row, p = by[(1.15, 0.75)]
check("edge", not any(ph in FORMED for ph in row) and p["phase"] not in FORMED, "alpha 1.15, p_B 0.75")
# the presets with and without the rule (section 9's scoring): the rule lifts reddy2024 and chan2022 by >= 15 points
without = predict_many(every, lr=6e-3, steps=1500, calibration=FIT_DEMO, closed_form=False, recruitment=False)
start = 0
for n in names:
    tasks, steps, phases = measured[n]
    part = without[start : start + len(tasks)]
    start += len(tasks)
    held = [c for c in range(len(tasks)) if n != "demo" or c not in DEMO_CAL_CELLS]
    sc = score_predictions(held, steps, phases, [p["transition_step"] for p in part], [p["phase"] for p in part])
    ph_with, ph_without = SCORES[n]["phase_agreement_percent"]["median"], sc["phase_agreement_percent"]["median"]
    print(f"{n:10s} phases with the rule {ph_with:.0f}%, without {ph_without:.0f}%")
    if n != "demo":
        check("edge", ph_with >= ph_without + 15, f"{n}: the rule does not lift the phases")

# %% [markdown]
# ## 13. Does the in-weights capacity follow the toy's width? Not in the direction the direct path suggests
#
# v2's capacity counts the items' D dimensions (kappa D L s). Under one-hot positions the toy keeps its items in the
# d_model - n_ctx content dimensions, so a toy narrower than D + n_ctx has a direct path (embedding, then
# unembedding) of rank below D, and a capacity that follows the toy's dimensions would count min(D, d_model -
# n_ctx). Tested by `zipfhead experiment narrow --out runs/narrow`: reddy2024's toy and schedule at d_model =
# d_head = 25 (8 content dimensions for D = 16), on four cells, 2 seeds each (87 s here; kept as
# `proofs_notebooks/data/narrow.json`), against the same cells at d_model = 64 (section 9's presets). The
# predictions were written before training: v2 with the capacity's dimension at 8 says K = 64, B = 2 becomes
# `neither` (less capacity, memorisation falls short) and K = 256, B = 1 forms a head (memorisation no longer
# competes). Measured, both the other way:
#
# * K = 64, B = 2: no head, in-weights accuracy 0.86-0.88, *above* the wide toy's 0.74-0.79;
# * K = 256, B = 1: no head, in-weights 0.37-0.38 (`neither`; wide: 0.46-0.53);
# * what the narrow toy loses is the circuit: K = 1024, B = 2 forms its head at 629-821 steps (wide: 320-359), and
#   K = 4096, B = 2 forms none in 1500 steps (wide: 603-701).
#
# So the capacity is not set by the direct path's rank here (the heads' own paths memorise too, section 11), and a
# rule that made it follow the width would have turned two right phases wrong; it is not in v2. Narrowing the
# model slows the circuit (its heads are 25 wide, not 64), which v2, whose circuit has no width, does not carry.

# %%
NARROW = json.loads((HERE / "data" / "narrow.json").read_text())


def narrow_rows(name: str) -> list[dict]:
    """The two seeds of one narrow cell."""
    return NARROW[name]["cells"][0]["seeds"]


def wide_rows(K: int, B: int) -> list[dict]:
    """The two seeds of the same cell in reddy2024 at d_model = 64."""
    return next(c["seeds"] for c in P["reddy2024"]["cells"] if c["cell"] == {"K": K, "B": B})


def narrow_task(name: str) -> ClassificationTask:
    """The task of one narrow cell."""
    return cell_task(NARROW[name], NARROW[name]["cells"][0])


for name, (K, B) in {"K64B2": (64, 2), "K256B1": (256, 1), "K1024B2": (1024, 2), "K4096B2": (4096, 2)}.items():
    narrow, wide = narrow_rows(name), wide_rows(K, B)
    print(
        f"K = {K:4d}, B = {B}: narrow heads {[r['transition_step'] and round(r['transition_step']) for r in narrow]}, "
        f"in-weights {[round(r['iwl_final'], 2) for r in narrow]}; wide heads "
        f"{[r['transition_step'] and round(r['transition_step']) for r in wide]}, in-weights "
        f"{[round(r['iwl_final'], 2) for r in wide]}"
    )
# memorisation does not fall with the width: at K = 64 the narrow toys memorise at least as well as the wide ones
check("narrow", all(r["transition_step"] is None for r in narrow_rows("K64B2")), "a head at K = 64")
check("narrow", min(r["iwl_final"] for r in narrow_rows("K64B2")) >= max(r["iwl_final"] for r in wide_rows(64, 2)))
check("narrow", all(r["transition_step"] is None for r in narrow_rows("K256B1")), "a head at K = 256, B = 1")
# the circuit slows: K = 1024 at least 1.5x later in every seed than the wide toys' slowest, none at K = 4096
slow = min(r["transition_step"] for r in narrow_rows("K1024B2"))
check("narrow", slow >= 1.5 * max(r["transition_step"] for r in wide_rows(1024, 2)), f"K = 1024: {slow}")
check("narrow", all(r["transition_step"] is None for r in narrow_rows("K4096B2")), "a head at K = 4096")
# a capacity of min(D, d_model - n_ctx) = 8 dimensions would turn v2's two right phases wrong
as_wide = predict_many([narrow_task("K64B2"), narrow_task("K256B1")], lr=6e-3, steps=1500, calibration=FIT_DEMO)
as_narrow = predict_many(
    [dataclasses.replace(narrow_task(n), D=8) for n in ("K64B2", "K256B1")], lr=6e-3, steps=1500, calibration=FIT_DEMO
)
print(
    "v2 at D = 16:",
    [p["phase"] for p in as_wide],
    "with the capacity at 8 dimensions:",
    [p["phase"] for p in as_narrow],
)
check("narrow", [p["phase"] for p in as_wide] == ["iwl", "neither"], "v2 as it is")
check("narrow", [p["phase"] for p in as_narrow] == ["neither", "icl"], "the width rule")

# %% [markdown]
# ## Summary

# %%
print({k: v for k, v in CHECKS.items()}, f"{sum(CHECKS.values())} checks in {time.perf_counter() - START:.1f} s")
