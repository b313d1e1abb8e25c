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
# # Language-like data: in-context Markov chains, their stage ladder, and token streams
#
# Edelman et al. (2024) train transformers on sequences that each follow their own Markov chain, the transition
# matrix's rows drawn from a Dirichlet prior. Training passes three stages: predicting uniformly, then by the
# context's unigram counts, then by its bigram counts (the statistical induction head). zipfhead's family
# (`theory.markov`, `MarkovTask`) gives the prior a Zipf(alpha) base measure, so that alpha is the knob of
# non-uniformity (alpha = 0 is Edelman's setting). This notebook asserts the family's exact statistics: the
# Bayes predictor's closed form, the marginal it implies, the predictors' exact expected losses against the
# sampler, and how the Zipf exponent divides the loss between the unigram and the bigram stage.
#
# Section 5 scores a reduced model of the bigram stage (`theory.reduced_markov`) against the `markov` preset's
# trained toys. Section 6 finds, in the token streams' data, the statistic that orders when their heads form;
# section 7 builds the token-stream model on it (the same mixture, with the background's marginal as an in-weights
# channel), gives its transition in closed form, and scores it against the `tokens` preset's toys.

# %%
from __future__ import annotations

import itertools
import json
import math
import time
from pathlib import Path

import numpy as np
import sympy as sp
from scipy import stats

from zipfhead.theory import MarkovTask, exact_losses, predictor_losses, sample_markov
from zipfhead.theory.markov import polya_log_marginal, row_entropy
from zipfhead.theory.predict import calibrate_rows, predict_many
from zipfhead.theory.reduced_markov import case_loss, markov_cases
from zipfhead.theory.schedule import Observation, Schedule

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()

START = time.perf_counter()
CHECKS: dict[str, int] = {}


def check(section: str, condition: bool, message: str = "") -> None:
    assert condition, f"{section}: {message}"
    CHECKS[section] = CHECKS.get(section, 0) + 1


# %% [markdown]
# ## 1. The Bayes predictor is the Polya marginal, factor by factor
#
# With rows P_i ~ Dirichlet(beta p) and counts c_ij of the transitions i -> j seen so far, the posterior predictive
# of the next state after state i is (c_ij + beta p_j) / (c_i + beta). Multiplying these over a sequence must
# give the Dirichlet-multinomial (Polya) marginal of its transitions,
# prod_i Gamma(beta) / Gamma(c_i + beta) prod_j Gamma(c_ij + beta p_j) / Gamma(beta p_j).
# Checked symbolically (beta and p free) for every sequence of two states and length 5.

# %%
beta_, p0_ = sp.symbols("beta p0", positive=True)
P2 = (p0_, 1 - p0_)


def predictive_product(seq: tuple[int, ...]) -> sp.Expr:
    c = {}
    out = sp.Integer(1)
    for i, j in itertools.pairwise(seq):
        ci = sum(v for (a, _), v in c.items() if a == i)
        out *= (c.get((i, j), 0) + beta_ * P2[j]) / (ci + beta_)
        c[(i, j)] = c.get((i, j), 0) + 1
    return out


def polya(seq: tuple[int, ...]) -> sp.Expr:
    c = {(i, j): 0 for i in range(2) for j in range(2)}
    for i, j in itertools.pairwise(seq):
        c[(i, j)] += 1
    out = sp.Integer(1)
    for i in range(2):
        ci = c[(i, 0)] + c[(i, 1)]
        out *= sp.gamma(beta_) / sp.gamma(ci + beta_)
        for j in range(2):
            out *= sp.gamma(c[(i, j)] + beta_ * P2[j]) / sp.gamma(beta_ * P2[j])
    return out


for seq in itertools.product(range(2), repeat=5):
    check("polya", sp.simplify(sp.gammasimp(polya(seq) / predictive_product(seq)) - 1) == 0, f"{seq}")
print(f"{CHECKS['polya']} sequences: the predictive product is the Polya marginal")

# %% [markdown]
# ## 2. The marginal is a distribution, and the code's closed form agrees with it
#
# Summed over all sequences (with the first state drawn from p) the marginal is 1, exactly, with rational beta and
# p. `theory.markov.polya_log_marginal` (float, scipy's log-gamma) matches the exact rational value.

# %%
k3, T3 = 3, 4
beta_r = sp.Rational(3, 2)
p_r = [sp.Rational(1, 2), sp.Rational(1, 3), sp.Rational(1, 6)]


def rational_marginal(seq: tuple[int, ...], p: list[sp.Rational]) -> sp.Rational:
    """The Polya marginal of ``seq`` (first state from p) in exact rationals."""
    c = np.zeros((k3, k3), dtype=int)
    for i, j in itertools.pairwise(seq):
        c[i, j] += 1
    out = p[seq[0]]
    for i in range(k3):
        out *= sp.gamma(beta_r) / sp.gamma(int(c[i].sum()) + beta_r)
        for j in range(k3):
            out *= sp.gamma(int(c[i, j]) + beta_r * p[j]) / sp.gamma(beta_r * p[j])
    return sp.nsimplify(sp.gammasimp(out))


seqs = list(itertools.product(range(k3), repeat=T3))
check("marginal", sp.nsimplify(sum(rational_marginal(s, p_r) for s in seqs)) == 1, "the marginal sums to 1")
task_r = MarkovTask(k=3, T=T3, beta=1.5, alpha=0.0)  # its base is uniform: p_j = 1/3
exact_u = [rational_marginal(s, [sp.Rational(1, 3)] * 3) for s in seqs]
worst = max(
    abs(math.exp(polya_log_marginal(np.array(s), task_r)) - float(e)) for s, e in zip(seqs, exact_u, strict=True)
)
print(f"largest |float - exact| over {len(seqs)} sequences: {worst:.2e}")
check("marginal", worst < 1e-13, "float64 log-gamma against exact rationals (values below 1: 1e-13 is ~500 ulp)")

# %% [markdown]
# ## 3. The three predictors' exact losses against the sampler
#
# `exact_losses` enumerates every sequence of a small chain with its marginal probability. Sampled sequences
# (`sample_markov`, whose Numba kernel is checked draw for draw against a plain-Python twin in
# `tests/unit/test_markov.py`) must give the same mean losses, within their standard errors. Two further identities:
# the first bigram loss is H(p) (no transition seen: the prediction is p, and x_2 averaged over P is p), and the
# expected entropy of one Dirichlet(beta p) row is psi(beta + 1) - sum_j p_j psi(beta p_j + 1) (the loss of an
# oracle that knows P, at the first step, whose state is independent of P).

# %%
task = MarkovTask(k=3, T=7, beta=2.0, alpha=1.0)
ex = exact_losses(task)
mc = predictor_losses(sample_markov(task, 30_000, seed=1), task)
mean, se = mc.mean(axis=0), mc.std(axis=0) / math.sqrt(mc.shape[0])
z = np.abs(mean - ex)[1:] / se[1:]  # the uniform predictor's loss is the constant log k: no spread to scale by
print("largest |Monte Carlo - exact| in standard errors:", round(float(z.max()), 2))
check("exact", float(z.max()) < 5.0, "5 standard errors over 12 comparisons: a false alarm has p < 1e-5")
# its expectation sums the marginal's probabilities, which make 1 up to float64 rounding
check("exact", np.allclose(ex[0], math.log(task.k), rtol=1e-12, atol=0), "the uniform predictor's loss is log k")
p = task.base.probs()
check("exact", abs(ex[2, 0] + np.sum(p * np.log(p))) < 1e-12, "first bigram loss = H(p)")
rows = np.random.default_rng(2).dirichlet(task.beta * p, size=100_000)
h = -np.sum(rows * np.log(np.clip(rows, 1e-300, None)), axis=1)
check("exact", abs(h.mean() - row_entropy(task)) < 5 * h.std() / math.sqrt(h.size), "expected row entropy")

# %% [markdown]
# ## 4. How the Zipf exponent divides the loss between the stages
#
# At the end of a 9-step chain over 3 states, the loss the unigram stage removes (uniform minus unigram) grows
# with alpha, and the loss left for the bigram stage (unigram minus bigram) shrinks. A skewed base measure
# rewards the in-context unigram sooner and leaves the induction (bigram) head less to gain: the quantity a
# reduced model of the stage durations must carry. Section 5 shows that the toys' bigram stage comes later for
# larger alpha, as that smaller gain predicts.

# %%
gains = {}
for alpha in (0.0, 0.5, 1.0, 1.5, 2.0):
    e = exact_losses(MarkovTask(k=3, T=9, beta=1.0, alpha=alpha))[:, -1]
    gains[alpha] = (float(e[0] - e[1]), float(e[1] - e[2]))
print({a: (round(u, 3), round(b, 3)) for a, (u, b) in gains.items()})
alphas = sorted(gains)
check("zipf", all(gains[a][0] < gains[b][0] for a, b in itertools.pairwise(alphas)), "unigram gain grows")
check("zipf", all(gains[a][1] > gains[b][1] for a, b in itertools.pairwise(alphas)), "bigram gain shrinks")
check("zipf", all(u > 0 and b > 0 for u, b in gains.values()), "each stage removes loss: the ladder")

# %% [markdown]
# ## 5. The bigram stage: a reduced model, scored against trained toys
#
# `theory.reduced_markov` keeps one circuit: a previous-token strength a and a match strength b, whose product x
# is the extra attention logit of earlier positions whose predecessor is the current state. The prediction mixes
# the context's counts, (e^x c_ij + u_j - c_ij + beta p_j) / (e^x c_i + t - c_i + beta), which is the unigram
# predictor at x = 0. Its expected loss L(x) is tabulated from 4000 sampled chains as weighted cases, and Adam's
# normalised flow (the noise floor 1 / batch of the classification model) moves (a, b). The data enter through
# S = -L'(0), the gain per unit match of the bigram counts over the unigram counts, and the shape of L(x).
#
# The `markov` preset trains 9 cells (alpha in {0, 1, 2} x beta in {0.5, 1.5, 4}, k = 5, T = 32) x 3 seeds;
# `proofs_notebooks/data/markov.json` keeps its findings (the one rule on the 100-step evaluation grid, with the
# full config; command in the file). Checks: L(0) is the unigram predictor's loss; S falls as beta and as alpha
# grow, and the toys' onset rises with them; calibrated on the preset's 2 calibration cells (time_scale only),
# the model predicts the 7 held-out onsets within the median relative error of 0.25, set beside the
# seeds' own spread; one layer never leaves the unigram rung.

# %%
M = json.loads((HERE / "data" / "markov.json").read_text())
mcfg = M["config"]
mtasks = [MarkovTask(**({k: v for k, v in mcfg["task"].items() if k != "kind"} | c["cell"])) for c in M["cells"]]
onsets = np.array([[r["transition_step"] for r in c["seeds"]] for c in M["cells"]], dtype=float)  # (cell, seed)
check("bigram stage", bool(np.isfinite(onsets).all()), "every toy of the preset forms its head")
toy_mean = onsets.mean(axis=1)

slope, plateau = [], []
for task in mtasks:
    cs = markov_cases(task)
    check("bigram stage", abs(case_loss(cs, 0.0) - cs.unigram_loss) < 1e-12 * cs.unigram_loss, "L(0) = unigram")
    h = 1e-4  # central difference: L is smooth, its error ~h^2 x (third derivative) ~ 1e-9 against S ~ 0.05-0.3
    slope.append(-(case_loss(cs, h) - case_loss(cs, -h)) / (2 * h))
    best = min(case_loss(cs, x) for x in np.linspace(0.0, 8.0, 161))
    plateau.append((cs.unigram_loss - best) / (cs.unigram_loss - cs.bigram_loss))
slope, plateau = np.array(slope).reshape(3, 3), np.array(plateau).reshape(3, 3)  # (alpha, beta)
print("S = -L'(0), rows alpha 0, 1, 2; columns beta 0.5, 1.5, 4:\n", np.round(slope, 3))
print("model plateau (share of the unigram-to-Bayes gap):\n", np.round(plateau, 2))
print("toys' onset, seed means:\n", np.round(toy_mean.reshape(3, 3)))
check("bigram stage", bool(np.all(np.diff(slope, axis=1) < 0)), "S falls with beta at every alpha")
check("bigram stage", bool(np.all(np.diff(slope, axis=0) < 0)), "S falls with alpha at every beta")
check("bigram stage", bool(np.all((plateau > 0) & (plateau < 1))), "a single head stops short of Bayes")
rho_s = stats.spearmanr(slope.ravel(), toy_mean).statistic
print(f"Spearman(S, toys' onset) over the 9 cells: {rho_s:+.2f}")
# a larger gain per unit match, an earlier head: over 9 cells, -0.8 allows about one swap of neighbours and still
# rejects "no relation" at p < 0.01
check("bigram stage", rho_s < -0.8, "the toys' onset falls as S grows")

# %% [markdown]
# The score. The time scale is fitted on the preset's calibration cells as `zipfhead sweep` fits it
# (`calibrate_rows`: the log mean of measured over predicted steps), and the other 7 cells are held out. The
# ceiling is how well one seed predicts another: per pair of seeds, the Spearman of their onsets and the median
# of |a - b| / b over the held-out cells.

# %%
cal_cells = M["calibration_cells"]
held = [c for c in range(len(mtasks)) if c not in cal_cells]
tcfg = mcfg["train"]
schedule = Schedule(lr=tcfg["lr"], steps=tcfg["steps"], batch_size=tcfg["batch_size"])
rows = [
    Observation(mtasks[c], schedule, None if np.isnan(onsets[c, s]) else float(onsets[c, s]))
    for c in cal_cells
    for s in range(onsets.shape[1])
]
mcal = calibrate_rows(rows, source="notebook 05: the markov preset's calibration cells")
run = {"lr": tcfg["lr"], "steps": tcfg["steps"], "batch_size": tcfg["batch_size"], "calibration": mcal}
pred = predict_many(mtasks, closed_form=False, **run)
pred_step = np.array([np.nan if p["transition_step"] is None else p["transition_step"] for p in pred])
check("bigram stage", all(p["phase"] == "icl" for p in pred), "the model forms the head in every cell, as the toys")
rel = np.abs(pred_step[held] - toy_mean[held]) / toy_mean[held]
rho_theory = stats.spearmanr(pred_step[held], toy_mean[held]).statistic
seeds = range(onsets.shape[1])
by_seed = onsets[held]  # (held-out cell, seed)
pairs = list(itertools.combinations(seeds, 2))
ceil_rho = np.median([stats.spearmanr(by_seed[:, i], by_seed[:, j]).statistic for i, j in pairs])
ceil_rel = np.median(
    [np.median(np.abs(by_seed[:, i] - by_seed[:, j]) / by_seed[:, j]) for i, j in itertools.permutations(seeds, 2)]
)
print(f"time_scale {mcal.time_scale:.2f}; held-out cells {held}")
print(f"theory vs toys' seed means: Spearman {rho_theory:+.2f}, median relative error {np.median(rel):.3f}")
print(f"seed vs seed (ceiling):     Spearman {ceil_rho:+.2f}, median relative difference {ceil_rel:.3f}")
check("bigram stage", float(np.median(rel)) <= 0.25, "issue 12's target: median relative error <= 0.25")
# 7 cells: a Spearman of 0.75 rejects "no relation" at p < 0.05 (one-sided); the ceiling is what seeds reach
check("bigram stage", rho_theory >= 0.75, "the held-out ranking")
one = predict_many(mtasks[:1], n_layers=1, **run)[0]
check("bigram stage", one["transition_step"] is None and one["phase"] == "neither", "one layer: no bigram stage")

# %% [markdown]
# What the numbers say. The gain per unit match S spans about 6x over the grid and the toys' onset about 3.5x, in
# the same order (Spearman -0.95). The model, carrying S and the shape of L(x) through Adam's normalised flow with
# one fitted time scale, ranks the held-out onsets nearly as well as one seed ranks another (+0.89 against +0.93
# on this 100-step grid) with a median error of 0.14, against the seeds' 0.08. Why a skewed base measure delays
# the head: at alpha = 2 the unigram counts already predict much of what the bigram counts would, so the match
# earns less per unit (S is smaller) and the noise-limited flow grows it more slowly. What the model misses: k. It
# puts k = 8 about 1.5x ahead of k = 3 (S grows with k), while the toys' onsets do not move with k (427, 387, 431
# steps at k = 3, 5, 8; alpha 0, beta 3, 1500 steps, 3 seeds each), which is why k is not an axis of the preset.
# And a single head plateaus lower than the toys do (the table above against the toys' 0.5-0.8).

# %% [markdown]
# ## 6. Token streams: why a skewed background forms the head sooner
#
# The `tokens` preset (trigger streams, `TokenStreamTask`: V tokens, T = 64, 2 uniform triggers per stream, each
# always followed by its own output) forms induction heads sooner for a more skewed background. The single-head
# mixture of section 5 cannot say why: with one match strength shared by every token, its gain per unit match S
# *falls* with alpha at V = 32, because copying the followers of an ordinary background token is a worse guess
# than the unigram counts, and a skewed background makes those positions more costly. A toy need not match every
# token alike: its query-key circuit can give each token i its own match strength x_i, and Adam moves each at a
# rate set by its own gradient. Token i's gain S_i = -dL/dx_i at 0 sums only over positions whose current token is
# i. When a frequent token happens to be a trigger, it occurs many times in the stream, each time followed by the
# output, so every occurrence after the first is an induction position: S_i of the frequent tokens grows with
# alpha. The fastest circuit then forms first, at a rate set by max_i S_i.
#
# Computed below on 10000 sampled streams per cell (the largest gain moves by ~10% between samples of that size),
# with the in-weights unigram as one pseudo-observation (prior
# weight 1; with 4 the ordering is the same) and S_i from the mixture's derivative at x = 0,
# d/dx [-log p_x(j)] = N / (N + M) - C / (C + R) per position.

# %%
from zipfhead.theory.distributions import TokenStreamTask
from zipfhead.theory.reduced_markov import position_cases
from zipfhead.theory.samplers import sample_token_streams

TOKEN_GRID = [(V, alpha) for V in (16, 32) for alpha in (0.0, 1.0, 2.0)]
gains = {}
for V, alpha in TOKEN_GRID:
    ttask = TokenStreamTask(V=V, T=64, alpha=alpha, n_triggers=2, trigger_dist="uniform", output_dist="uniform")
    tokens = sample_token_streams(ttask, 10_000, seed=5).tokens
    cases = position_cases(tokens, V, 1.0, ttask.zipf.probs())
    C, R, N, Mc = cases.T
    dldx = N / (N + Mc) - C / (C + R)  # (positions,)
    current = tokens[:, :-1].reshape(-1)
    per_token = -np.bincount(current, weights=dldx, minlength=V) / dldx.size  # S_i
    total, top, rank = float(per_token.sum()), float(per_token.max()), int(per_token.argmax())
    gains[(V, alpha)] = (total, top, rank)
    print(f"V {V:2d} alpha {alpha}: shared S {total:+.4f}, max_i S_i {top:.4f} (token of rank {rank})")
check("tokens", gains[(32, 2.0)][0] < gains[(32, 1.0)][0] < gains[(32, 0.0)][0], "shared S falls with alpha (V 32)")
for V in (16, 32):
    best = [gains[(V, a)][1] for a in (0.0, 1.0, 2.0)]
    check("tokens", best[0] < best[1] < best[2], f"max_i S_i rises with alpha (V {V})")
    check("tokens", gains[(V, 2.0)][2] < 3, f"at alpha 2 the largest gain is a frequent token's (V {V})")

# %% [markdown]
# The toys. `proofs_notebooks/data/tokens_wide.json` keeps the first `tokens` preset's measured transitions
# (alpha in {0, 1, 2} x V in {16, 32}, 2 seeds per cell, 3000 steps; command in the file). A head forms at
# (alpha 1, V 16), (alpha 2, V 16) and (alpha 2, V 32), and in no seed of the other three cells. The largest
# per-token gain separates the two groups, the shared gain does not (it is even negative for a cell that forms its
# head), and the cell with the largest gain forms its head first. What it does not give is the order inside the
# forming group: (alpha 2, V 32) forms its head before (alpha 1, V 16) in the toys (626 against 793 steps, seed
# means) with a smaller max_i S_i. Section 7 reads the data through the in-weights channel instead.

# %%
T_DATA = json.loads((HERE / "data" / "tokens_wide.json").read_text())
formed = {}
onset = {}
for cell in T_DATA["cells"]:
    key = (cell["cell"]["V"], cell["cell"]["alpha"])
    steps = [r["transition_step"] for r in cell["seeds"]]
    formed[key] = all(s is not None for s in steps)
    check("tokens", formed[key] or all(s is None for s in steps), "the seeds of a cell agree on forming")
    onset[key] = float(np.mean(steps)) if formed[key] else math.inf
best_gain = {k: g[1] for k, g in gains.items()}
lowest_formed = min(best_gain[k] for k in TOKEN_GRID if formed[k])
highest_not = max(best_gain[k] for k in TOKEN_GRID if not formed[k])
print(f"max_i S_i: formed cells >= {lowest_formed:.4f}, cells without a head <= {highest_not:.4f}")
check("tokens", lowest_formed > highest_not, "the largest per-token gain separates forming from not forming")
shared = {k: g[0] for k, g in gains.items()}
check(
    "tokens",
    min(shared[k] for k in TOKEN_GRID if formed[k]) < max(shared[k] for k in TOKEN_GRID if not formed[k]),
    "the shared gain does not separate them",
)
fastest = min(TOKEN_GRID, key=lambda k: onset[k])
check("tokens", fastest == max(TOKEN_GRID, key=lambda k: best_gain[k]), "the largest gain forms its head first")

# %% [markdown]
# A second reading, through the in-weights channel. The prior weight above made the in-weights unigram worth one
# attended position. Once a toy has learned the background's unigram in its weights (Bietti et al.'s first stage)
# that channel is worth far more: with a prior weight of T = 64 (as much as a whole context) copying costs little
# on background positions, the shared gain S grows with alpha, and it too separates the cells that form a head
# from those that do not. Both readings put the lever in the same place: a skewed background is cheap to predict
# without the head, so what the head adds at the triggers' repeats is not eaten by what it costs elsewhere. Which
# one the toys use (per-token matching, or a strong in-weights prior with one shared match) is for the
# token-stream v2 model to decide; neither ranks (alpha 1, V 16) after (alpha 2, V 32) as the toys do.

# %%
strong = {}
for V, alpha in TOKEN_GRID:
    ttask = TokenStreamTask(V=V, T=64, alpha=alpha, n_triggers=2, trigger_dist="uniform", output_dist="uniform")
    tokens = sample_token_streams(ttask, 10_000, seed=5).tokens
    C, R, N, Mc = position_cases(tokens, V, float(ttask.T), ttask.zipf.probs()).T
    strong[(V, alpha)] = float(-np.mean(N / (N + Mc) - C / (C + R)))
print("shared S with prior weight T:", {k: round(v, 4) for k, v in strong.items()})
check("tokens", all(strong[(V, 0.0)] < strong[(V, 1.0)] < strong[(V, 2.0)] for V in (16, 32)), "S rises with alpha")
low = min(strong[k] for k in TOKEN_GRID if formed[k])
high = max(strong[k] for k in TOKEN_GRID if not formed[k])
print(f"formed cells >= {low:.4f}, cells without a head <= {high:.4f}")
check("tokens", low > high, "with a strong in-weights prior the shared gain separates them too")


# %% [markdown]
# ## 7. The token-stream model: the mixture with an in-weights channel, scored against the `tokens` preset
#
# The model (`theory.reduced_markov.stream_cases`) is section 5's single-head mixture on token streams: the
# match x = a b shared by every token, and the background's marginal p as the in-weights channel with prior
# weight beta = 4 T (`STREAM_PRIOR_CONTEXTS`: a toy learns the unigram in its weights from far more tokens than a
# context holds, Bietti et al.'s first stage). It tracks the loss progress (L(0) - L(x)) / (L(0) - L_ref), where
# L_ref is the predictor that knows p and copies each trigger's output at its repeats; the head counts as formed
# at progress 0.25, as for the chains. Adam's normalised flow and the calibrated time scale are section 5's.
#
# **The prior weight was chosen on an earlier sweep, not on the one it is scored on.** On the 1500-step sweep of
# `data/tokens_v16v32.json` (alpha 1-2.5 x V 16, 32) the integrated model ranks the toys' transitions as below
# for beta = T, 4 T, 16 T and 64 T: T leaves forming cells without a transition, 4 T and 16 T tie, 64 T is worse;
# the smallest weight with the best ranking, 4 T, was kept. The `tokens` preset (`data/tokens.json`: alpha 1-2.5 x
# V 12, 16, 1200 steps, every cell forming its head) is then scored with it unchanged.

# %%
from zipfhead.theory.reduced_markov import (
    STREAM_PRIOR_CONTEXTS,
    case_slope,
    closed_form,
    integrate_markov,
    stream_cases,
)


def token_cells(data: dict) -> tuple[list[TokenStreamTask], np.ndarray, list[bool]]:
    """The cells' tasks, their toys' transition steps (cell, seed; NaN: none) and calibration flags."""
    base = {k: v for k, v in data["config"]["task"].items() if k != "kind"}
    tasks = [TokenStreamTask(**(base | c["cell"])) for c in data["cells"]]
    steps = np.array(
        [[np.nan if r["transition_step"] is None else r["transition_step"] for r in c["seeds"]] for c in data["cells"]]
    )
    return tasks, steps, [c["seeds"][0]["calibration_cell"] for c in data["cells"]]


# the choice of the prior weight, on the earlier sweep: the ranking of the cells where both seeds formed a head
old_tasks, old_steps, _ = token_cells(json.loads((HERE / "data" / "tokens_v16v32.json").read_text()))
old_formed = ~np.isnan(old_steps).any(axis=1)
flow_t = np.concatenate([[0.0], np.geomspace(1e-3, 400.0, 200)])  # transitions at < 100 flow units
choice = {}
for contexts in (1.0, 4.0, 16.0, 64.0):
    # 1000 streams: S to ~5% (2000 give ~3%, measured over 8 seeds); neighbouring cells differ in S by ~15% or more
    tables = [stream_cases(t, 1000, prior_contexts=contexts) for t in old_tasks]
    trs = integrate_markov([(cs, 0.1, 1 / 32, 0.0, flow_t) for cs in tables])
    flow = np.array([np.nan if tr.transition is None else tr.transition for tr in trs])
    both = old_formed & np.isfinite(flow)
    choice[contexts] = (stats.spearmanr(flow[both], old_steps[both].mean(axis=1)).statistic, int(both.sum()))
    print(f"beta = {contexts:g} T: Spearman {choice[contexts][0]:+.2f} on {choice[contexts][1]} cells")
check("token model", STREAM_PRIOR_CONTEXTS == 4.0, "the packaged prior weight is the one chosen here")
complete = {c: rho for c, (rho, n) in choice.items() if n == int(old_formed.sum())}  # every forming cell predicted
best_rho = max(complete.values())
kept = min(c for c, rho in complete.items() if rho >= best_rho - 1e-9)
check("token model", kept == STREAM_PRIOR_CONTEXTS, "the smallest prior weight that ranks the earlier sweep best")
check("token model", choice[64.0][0] < best_rho, "a far stronger channel ranks it worse")
check("token model", choice[1.0][1] < int(old_formed.sum()), "T alone leaves forming cells without a transition")

# %% [markdown]
# **Why the in-weights channel is a fixed prior, not a state that grows beside the head.** In the toys it is
# learned first: by step 100 (their first evaluation after step 0) every toy's held-out loss is already at or
# below the loss of the background's marginal used as a predictor, E[-log p(next)], while their heads form at
# 100-760 steps (`data/tokens.json` keeps each toy's loss curve). A prototype (not kept) that grew the channel's
# weight by the same flow as the head (a third state, prior weight e^c from c = 0) ranked the `tokens` preset's
# held-out cells at only +0.42 and put every alpha at the same step: growing together, the channel does not yet
# make copying cheap when the head starts.

# %%
T_JSON = json.loads((HERE / "data" / "tokens.json").read_text())
at_100 = T_JSON["steps"].index(100)
for cell in T_JSON["cells"]:
    task = TokenStreamTask(**({k: v for k, v in T_JSON["config"]["task"].items() if k != "kind"} | cell["cell"]))
    batch = sample_token_streams(task, 2000, 11)
    marginal_loss = float(np.mean(-np.log(task.zipf.probs()[batch.tokens[:, 1:]])))  # Monte Carlo, s.e. < 0.01
    for r in cell["seeds"]:
        # 0.03 nats: the toy's loss is a 256-stream estimate (s.e. ~0.01) and the marginal's a 2000-stream one
        check("token model", r["loss_curve"][at_100] <= marginal_loss + 0.03, f"unigram learned by step 100 {cell}")
print("every toy is at or below the in-weights unigram's loss by step 100")

# %% [markdown]
# Asserted identities of the model: at x = 0 with this prior weight the table is the mixture of the context's
# unigram counts and the in-weights marginal, position by position; the flow never leaves a = b (equal starts and
# a symmetric drift), so its transition is one quadrature (`closed_form`), which must agree with the integrated
# flow; and one layer never forms a head.

# %%
ttasks, tsteps, tcal = token_cells(json.loads((HERE / "data" / "tokens.json").read_text()))
probe_task = ttasks[0]
small = sample_token_streams(probe_task, 3, 7)
rows = position_cases(small.tokens, probe_task.V, STREAM_PRIOR_CONTEXTS * probe_task.T, probe_task.zipf.probs())
pz = probe_task.zipf.probs()
for r, (s_, t_) in enumerate((s_, t_) for s_ in range(3) for t_ in range(1, probe_task.T)):
    seq = small.tokens[s_]
    mix = np.bincount(seq[:t_], minlength=probe_task.V)[seq[t_]] + STREAM_PRIOR_CONTEXTS * probe_task.T * pz[seq[t_]]
    mix /= t_ + STREAM_PRIOR_CONTEXTS * probe_task.T
    assert abs((rows[r, 0] + rows[r, 1]) / (rows[r, 2] + rows[r, 3]) - mix) < 1e-12
check("token model", True, "at x = 0 every position's prediction is (u_j + beta p_j) / (t + beta)")
for task in ttasks[:: len(ttasks) - 1]:
    cs = stream_cases(task)
    tr = integrate_markov([(cs, 0.1, 1 / 32, 0.0, np.concatenate([[0.0], np.geomspace(1e-3, 400.0, 300)]))])[0]
    cf = closed_form(cs, 0.1, 1 / 32)
    print(
        f"alpha {task.alpha}, V {task.V}: S {cf.gain:.4f}, closed form {cf.time:.3f}, integrated {tr.transition:.3f},"
        f" leading order {cf.leading:.3f}"
    )
    check("token model", abs(cf.time / tr.transition - 1) < 1e-3, "closed form = integrated flow (1e-3, its rtol)")
    check("token model", np.allclose(tr.state[:, 0], tr.state[:, 1]), "the flow stays on a = b")

# %% [markdown]
# The score on the `tokens` preset, as `zipfhead sweep --preset tokens` computes it: the time scale fitted on the
# sweep's calibration cells, every other cell held out, beside the seed-vs-seed ceiling.

# %%
tcfg = json.loads((HERE / "data" / "tokens.json").read_text())["config"]["train"]
cal_idx = [i for i, c in enumerate(tcal) if c]
held = [i for i, c in enumerate(tcal) if not c]
schedule = Schedule(lr=tcfg["lr"], steps=tcfg["steps"], batch_size=tcfg["batch_size"])
rows = [
    Observation(ttasks[c], schedule, None if np.isnan(tsteps[c, s]) else float(tsteps[c, s]))
    for c in cal_idx
    for s in range(tsteps.shape[1])
]
tcal_fit = calibrate_rows(rows, source="notebook 05: the tokens preset's calibration cells")
trun = {"lr": tcfg["lr"], "steps": tcfg["steps"], "batch_size": tcfg["batch_size"], "calibration": tcal_fit}
tpred = predict_many(ttasks, **trun)
tstep = np.array([np.nan if p["transition_step"] is None else p["transition_step"] for p in tpred])
tmean = tsteps.mean(axis=1)
check("token model", all(p["phase"] == "icl" for p in tpred), "the model forms the head in every cell, as the toys")
trho = stats.spearmanr(tstep[held], tmean[held]).statistic
trel = float(np.median(np.abs(tstep[held] - tmean[held]) / tmean[held]))
tpairs = [(0, 1), (1, 0)]
tceil_rho = stats.spearmanr(tsteps[held, 0], tsteps[held, 1]).statistic
tceil_rel = float(
    np.median([np.median(np.abs(tsteps[held, i] - tsteps[held, j]) / tsteps[held, j]) for i, j in tpairs])
)
print(
    f"time_scale {tcal_fit.time_scale:.2f}; {len(held)} held-out cells, toys {np.nanmin(tmean[held]):.0f}-"
    f"{np.nanmax(tmean[held]):.0f} steps"
)
print(f"theory vs toys' seed means: Spearman {trho:+.2f}, median relative error {trel:.2f}")
print(f"seed vs seed (ceiling):     Spearman {tceil_rho:+.2f}, median relative difference {tceil_rel:.2f}")
check(
    "token model", len(held) >= 8 and np.nanmax(tmean[held]) >= 3 * np.nanmin(tmean[held]), "the design: >= 8 cells, 3x"
)
check(
    "token model", trho >= 0.8 and trho >= tceil_rho - 0.1, "issue 12's targets: Spearman >= 0.8 and the ceiling - 0.1"
)
span_model = np.nanmax(tstep[held]) / np.nanmin(tstep[held])
span_toys = np.nanmax(tmean[held]) / np.nanmin(tmean[held])
print(f"spread of the held-out transitions: model {span_model:.1f}x, toys {span_toys:.1f}x")
one_layer = predict_many(ttasks[:1], n_layers=1, **trun)[0]
check("token model", one_layer["phase"] == "neither" and one_layer["transition_step"] is None, "one layer: no head")

# %% [markdown]
# **Why a skewed background forms the head sooner.** The model's gain per unit match S is earned almost only at
# the triggers' repeats; split it there and at the other positions:

# %%
split = {}
for task in ttasks:
    batch = sample_token_streams(task, 2000, 20261204)
    C, R, N, Mc = position_cases(batch.tokens, task.V, STREAM_PRIOR_CONTEXTS * task.T, task.zipf.probs()).T
    gain = -(N / (N + Mc) - C / (C + R))
    ind = batch.induction[:, 1:].reshape(-1)
    split[(task.alpha, task.V)] = (gain.mean(), ind.mean(), gain[ind].mean(), -gain[~ind].mean())
    print(
        f"alpha {task.alpha:4}, V {task.V}: S {gain.mean():.4f} = repeats {ind.mean():.3f} x {gain[ind].mean():.3f}"
        f" per repeat - cost {-gain[~ind].sum() / gain.size:.4f} elsewhere"
    )
for V in (12, 16):
    per_repeat = [split[(a, V)][2] for a in (1.0, 1.25, 1.5, 1.75, 2.0, 2.5)]
    check("token model", all(np.diff(per_repeat) > 0), f"the gain per repeat rises with alpha (V {V})")
    check("token model", split[(1.0, V)][1] > split[(2.5, V)][1], f"repeats are not what rises (V {V})")
    check(
        "token model",
        max(split[(a, V)][3] for a in (1.0, 2.5)) < 0.01 * max(split[(a, V)][2] for a in (1.0, 2.5)),
        f"copying at ordinary positions costs little against a strong in-weights channel (V {V})",
    )

# %% [markdown]
# **The closed form.** `stream_gain` gives S as a finite sum of Zipf probabilities (the module's docstring states
# its three approximations), and the transition's leading order is sqrt(noise2) ln(x_half / x0) / (2 S) in flow
# time, divided by (time scale x lr) for steps: the data enter the transition step through S(alpha, V, T, n_triggers,
# trigger law, output law) alone, up to the logarithm. Its ranking of the toys, on both token sweeps, with no
# sampled streams and nothing fitted:

# %%
from zipfhead.theory.reduced_markov import stream_gain

for name in ("tokens", "tokens_v16v32"):
    g_tasks, g_steps, _ = token_cells(json.loads((HERE / "data" / f"{name}.json").read_text()))
    formed_g = ~np.isnan(g_steps).any(axis=1)
    closed_gain = np.array([stream_gain(t) for t in g_tasks])
    table_gain = np.array([-case_slope(stream_cases(t), 0.0) for t in g_tasks])
    rho_g = stats.spearmanr(1.0 / closed_gain[formed_g], g_steps[formed_g].mean(axis=1)).statistic
    ratio = closed_gain / table_gain
    print(
        f"{name}: Spearman(1 / S, toys) {rho_g:+.2f} on {int(formed_g.sum())} cells; closed / table S "
        f"{ratio.min():.2f}-{ratio.max():.2f}"
    )
    check("token model", rho_g >= 0.9, f"the closed-form gain ranks the toys ({name})")
    check("token model", np.all((ratio > 1.0) & (ratio < 1.3)), f"it overestimates the table's S by < 30% ({name})")

# %% [markdown]
# The mechanism in two sentences. Once the background's marginal is learned in the weights, the head's match
# pays at a trigger's repeat in proportion to how little that marginal expects the trigger's output: outputs are
# drawn uniformly, so under a skewed background most of them are rare tokens, and a repeat pays about 3x more at
# alpha 2.5 than at alpha 1 (per-repeat gain above), while copying at ordinary positions costs almost nothing
# beside the strong in-weights channel. The noise-limited flow escapes the plateau in a time that goes as 1 / S
# (the closed form's leading order), so the skewed background's head forms sooner; the number of repeats is not
# the lever (it even falls a little with alpha). What the model misses: the spread. Its held-out transitions span
# less than the toys' (printed above), so the fastest cells are predicted too late and the slowest too early,
# which is where the median relative error comes from.


# %% [markdown]
# ## Summary

# %%
print(CHECKS, f"{sum(CHECKS.values())} checks in {time.perf_counter() - START:.1f} s")
