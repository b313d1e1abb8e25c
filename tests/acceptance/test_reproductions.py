"""Reproductions of the anchors (REFERENCES.md) in a fast CPU form: real training, real measurements.

In-context classification (Reddy 2024), the fast form (its full-size command is in the README):
  K = 4096, N = 8, D = 16, L = 16, B = 2, p_B = 1, eps = 0.1, alpha = 0; attention-only toy with one-hot
  positions, d_model 64, initial weights 0.3 / sqrt(d_model), Adam 3e-3, batch 64, 2500 steps, 2 seeds in one
  vmapped batch. Measured here: a plateau at the copy-a-context-label level (accuracy ~ B/N = 0.25, loss
  ~ ln(N/B)) until ~1100-1400 steps, then a rise to > 0.8 within ~300-400 steps, ending at ICL accuracy ~0.95.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from zipfhead.theory.closed_form import copy_plateau
from zipfhead.theory.distributions import ClassificationTask, MarkovTask, TokenStreamTask
from zipfhead.toy_models.model import ModelConfig
from zipfhead.toy_models.train import RunConfig, TrainConfig, train

pytestmark = pytest.mark.slow

CLS = ClassificationTask(K=4096, N=8, D=16, L=16, B=2, p_B=1.0, p_C=0.0, eps=0.1, alpha=0.0)
BN = CLS.B / CLS.N  # the copy-a-context-label accuracy
CLS_MODEL = ModelConfig(
    n_ctx=17, d_vocab=32, d_vocab_out=16, n_layers=2, d_model=64, positional="onehot", init_scale=0.3
)
CLS_TRAIN = TrainConfig(steps=2500, eval_every=100, batch_size=64, lr=3e-3, eval_size=512)
SEEDS = (0, 1)  # a third seed added ~30 s to make test and showed the same plateau and rise


@pytest.fixture(scope="module")
def two_layer():
    return train(RunConfig(task=CLS, model=CLS_MODEL, train=CLS_TRAIN, seeds=SEEDS), progress=False)


@pytest.fixture(scope="module")
def one_layer():
    model = dataclasses.replace(CLS_MODEL, n_layers=1)
    return train(RunConfig(task=CLS, model=model, train=CLS_TRAIN, seeds=SEEDS), progress=False)


def plateau_and_rise(steps: np.ndarray, acc: np.ndarray) -> tuple[int, int, int]:
    """(plateau start, plateau end, first step above 0.8): the plateau is where accuracy is within 0.1 of B/N."""
    start = int(np.argmax(acc >= BN - 0.1))
    high = int(np.argmax(acc > 0.8))
    assert acc[high] > 0.8, "never rose above 0.8"
    on = [i for i in range(start, high) if acc[i] <= BN + 0.1]
    assert on, "no plateau at the copy level before the rise"
    return int(steps[start]), int(steps[on[-1]]), int(steps[high])


def test_two_layer_forms_an_induction_head_through_an_abrupt_transition(two_layer):
    """Plateau at B/N, abrupt rise (span <= half the plateau), ICL accuracy >= 0.9, and a formed circuit."""
    res = two_layer
    for m in range(len(SEEDS)):
        acc, loss = res.curves["icl_acc"][m], res.curves["mix_loss"][m]
        start, end, high = plateau_and_rise(res.steps, acc)
        assert high - end <= (end - start) / 2, (m, start, end, high)
        # on the plateau the loss comes down to ln(N/B), copying one of the N/B labels present, and no lower
        # (0.3 nats: the spread of a 512-sequence estimate plus the slow drift along the plateau)
        on = (res.steps >= start) & (res.steps <= end)
        assert abs(loss[on].min() - math.log(CLS.N / CLS.B)) < 0.3, loss[on]
        assert acc[-1] >= 0.9
        prev = res.curves["prev_score"][m, -1]  # (layer, head): label -> the item before it
        ind = res.curves["induction_score"][m, -1]  # query -> the label of its matching item
        assert prev[0].max() >= 0.5 and ind[1].max() >= 0.5, (prev, ind)
        # in-context, not in-weights: relabelled known classes follow the context's labels
        assert res.curves["swap_acc"][m, -1] >= 0.9


def test_one_layer_stays_on_the_copy_plateau(one_layer):
    """One attention layer cannot build the circuit: ICL accuracy stays within 0.1 of B/N, and the novel-class
    loss sits just above the reduced model's closed-form one-layer optimum ln(N/B) (theory.closed_form.
    copy_plateau), which no one-layer model can beat: not below it by more than 0.1 nats (the spread of a
    512-sequence estimate), and above it by at most 0.45 (measured 1.71 against 1.39 at 2500 steps: the copy
    distribution is still sharpening, as the reduced model's c grows like ln t)."""
    res = one_layer
    plateau = copy_plateau(CLS)
    for m in range(res.curves["icl_acc"].shape[0]):
        assert abs(res.curves["icl_acc"][m, -1] - BN) <= 0.1
        assert -0.1 <= res.curves["icl_loss"][m, -1] - plateau["loss"] <= 0.45, res.curves["icl_loss"][m, -1]
        assert res.curves["induction_score"][m, -1].max() < 0.5


@pytest.mark.parametrize("variant", ["iid", "small_K"])
def test_without_burstiness_or_with_few_classes_the_toy_learns_in_weights(variant):
    """p_B = 0, or K small: in-weights accuracy >= 0.9 and novel-class ICL accuracy at or below B/N (+ noise)."""
    task = dataclasses.replace(CLS, K=32, p_B=0.0 if variant == "iid" else 1.0)
    tcfg = dataclasses.replace(CLS_TRAIN, steps=1500, eval_size=256)
    res = train(RunConfig(task=task, model=CLS_MODEL, train=tcfg, seeds=(0,)), progress=False)
    assert res.curves["iwl_acc"][0, -1] >= 0.9
    # 5 binomial standard errors of a 256-sequence estimate at B/N
    assert res.curves["icl_acc"][0, -1] <= BN + 5 * math.sqrt(BN * (1 - BN) / 256)


# Token streams (Bietti et al. 2023, Zipf(1) background): V = 16, T = 64, two triggers drawn uniformly with
# uniform outputs, 2 heads per layer, Adam 1e-2, batch 32, 3000 steps. Measured here (seed 0, 2 layers):
# prefix matching rises from 0.09 to ~0.7 between ~300 and 3000 steps, post-trigger loss ~0.8 nats.
TOK = TokenStreamTask(V=16, T=64, alpha=1.0, n_triggers=2, trigger_dist="uniform", output_dist="uniform")
TOK_TRAIN = TrainConfig(steps=3000, eval_every=100, batch_size=32, lr=1e-2, eval_size=256)


@pytest.mark.parametrize("n_layers", [2, 1])
def test_token_streams_need_two_layers_for_induction(n_layers):
    """2 layers: prefix matching >= 0.5 on repeated random tokens and post-trigger loss below ln(V - 2), the
    best that unigram/bigram statistics allow there (given the trigger, its output is uniform over the V - 2
    non-triggers); 1 layer: no prefix-matching head, and post-trigger loss well above the 2-layer model's."""
    model = ModelConfig(n_ctx=TOK.T - 1, d_vocab=TOK.V, d_vocab_out=TOK.V, n_layers=n_layers, n_heads=2, d_model=64)
    # two layers: by step 2000 the head has formed (prefix 0.56, post-trigger loss 0.95 at seed 0, measured; prefix
    # 0.47 at 1500); one layer cannot build it at any horizon: 1500 steps show it (prefix 0.09, post-trigger 2.57,
    # measured)
    tcfg = dataclasses.replace(TOK_TRAIN, steps=2000 if n_layers == 2 else 1500)
    res = train(RunConfig(task=TOK, model=model, train=tcfg, seeds=(0,)), progress=False)
    prefix = res.curves["induction_score"][0, -1].max()
    post_trigger = res.curves["induction_loss"][0, -1]
    bigram_floor = math.log(TOK.V - TOK.n_triggers)
    if n_layers == 2:
        assert prefix >= 0.5 and post_trigger < bigram_floor, (prefix, post_trigger)
    else:
        assert prefix < 0.5 and post_trigger > 1.5, (prefix, post_trigger)


def test_a_skewed_background_forms_the_head_sooner_than_a_uniform_one():
    """The seed's hypothesis on token streams (issue 12; notebook 05, section 6): the same 2-layer toy with a Zipf(2)
    background has an induction head by step 200 (induction accuracy 0.62 at seed 0 and 0.45 at seed 1, measured;
    ~0.8 at 3000), with a uniform background none (0.09 and 0.07; none either by step 3000 in the tokens preset).
    Seed 0 of each keeps the test fast. Chance is 1/16; an accuracy on the ~1300 held-out induction positions has a
    standard error of ~0.01, so 0.3 and 0.15 sit many of those from the measured values."""
    tasks = tuple(dataclasses.replace(TOK, alpha=a) for a in (2.0, 0.0))
    model = ModelConfig(n_ctx=TOK.T - 1, d_vocab=TOK.V, d_vocab_out=TOK.V, n_layers=2, n_heads=2, d_model=64)
    tcfg = dataclasses.replace(TOK_TRAIN, steps=200)
    res = train(RunConfig(task=tasks[0], tasks=tasks, model=model, train=tcfg, seeds=(0,)), progress=False)
    skewed, uniform = res.curves["induction_acc"][:, -1]  # models: alpha 2, then alpha 0
    assert skewed >= 0.3 and uniform <= 0.15, (skewed, uniform)


# --- In-context Markov chains (Edelman et al. 2024): the stage ladder -------------------------------------------
# k = 3 states, T = 32, rows ~ Dirichlet(1, 1, 1) (beta = k, uniform base); attention-only toys with learned
# positions, d_model 32, Adam 3e-3, batch 32, 2 seeds. Measured here: both depths reach the unigram rung by step
# 100 (unigram_progress ~0.9); the two-layer toy then climbs toward the Bayes bigram predictor (bigram_progress
# 0.53 and 0.38 at step 800, 0.53 and 0.42 at 1000) as its layer-0 previous-token score (0.10 -> ~0.4) and layer-1
# induction score (0.40 -> ~0.75) grow; the one-layer toy stays at the unigram rung (bigram_progress -0.08 and
# -0.11 at step 300, -0.04 and -0.05 at 1000).
MARKOV = MarkovTask(k=3, T=32, beta=3.0, alpha=0.0)


def _markov_run(n_layers: int, steps: int):
    model = ModelConfig(n_ctx=31, d_vocab=3, d_vocab_out=3, n_layers=n_layers, d_model=32, positional="learned")
    tcfg = TrainConfig(steps=steps, eval_every=100, batch_size=32, lr=3e-3, eval_size=256)
    return train(RunConfig(task=MARKOV, model=model, train=tcfg, seeds=(0, 1)), progress=False)


def test_markov_two_layers_climb_the_ladder_one_layer_stops_at_the_unigram():
    """Edelman et al.'s ladder: uniform -> unigram -> bigram for two layers, and no bigram stage for one. The
    margins: bigram_progress is a ratio of loss differences measured on the same 256 held-out sequences (paired),
    whose spread between evaluations on the plateau is ~0.05 (steps 100-200 above); 0.25 and 0.1 sit several of
    those from the measured 0.38-0.53 and -0.08 to -0.11."""
    two, one = _markov_run(2, 800), _markov_run(1, 300)
    for res in (two, one):
        assert np.all(res.curves["unigram_progress"][:, -1] >= 0.75)  # the first rung: in-context unigram counts
    assert np.all(two.curves["bigram_progress"][:, -1] >= 0.25)
    assert np.all(one.curves["bigram_progress"][:, -1] <= 0.1)
    induction = two.curves["induction_score"][:, :, 1].max(axis=-1)  # (model, step): layer 1's best head
    assert np.all(induction[:, -1] - induction[:, 0] >= 0.2)
