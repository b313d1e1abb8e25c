"""Reduced model of the bigram stage of in-context Markov chains (and of token streams): when the statistical
induction head forms.

A two-layer attention-only toy trained on :mod:`theory.markov` chains first predicts by the context's unigram counts
(attending evenly to earlier tokens and copying them), then by its bigram counts: a previous-token head (layer 0)
writes each position's predecessor into it, and the second layer's query (the current state i) matches positions
whose predecessor is i and copies their tokens. This module keeps that circuit and nothing else.

State: the previous-token strength ``a`` and the match strength ``b``; the match logit is x = a b. A position whose
predecessor equals the current state i gets attention weight e^x, every other earlier position weight 1, and the
copied tokens are smoothed by the prior (pseudo-count beta p_j), so the prediction of the next state j after
x_1..x_t is

    p_x(j) = (e^x C + R) / (e^x N + M),    C = c_ij,  R = u_j - c_ij + beta p_j,  N = c_i,  M = t - c_i + beta,

with u_j the count of j among x_1..x_t, c_ij the transitions i -> j among them and c_i = sum_j c_ij. At x = 0 this is
exactly the unigram predictor of :mod:`theory.markov` (u_j + beta p_j) / (t + beta): the unigram rung, where the
model starts. As x grows the prediction moves toward the context's raw bigram frequencies c_ij / c_i, which a single
head cannot smooth the way the Bayes predictor (c_ij + beta p_j) / (c_i + beta) does, so L(x) has a finite optimum
x* and the model plateaus short of the Bayes loss: at (L(0) - L(x*)) / (L(0) - L_Bayes) = 0.31-0.69 on the ``markov``
preset's grid (lower for larger alpha and beta; notebook 05). The toys plateau higher (0.5-0.8 at 2000 steps).

The expected loss L(x) = E[-log p_x(x_(t+1))] over the chains' positions is a finite sum of *cases* (C, R, N, M)
with weights, tabulated from sampled chains (:func:`markov_cases`). Its gradient drives (a, b) by Adam's normalised
flow, as in the classification model (:mod:`theory.reduced_v2`): each strength moves at dL/d(.) / sqrt(dL/d(.)^2 +
1 / batch). The tracked curve is the bigram progress (L(0) - L(x)) / (L(0) - L_Bayes), the toys' headline measure.
One layer has no previous-token step: a = b = 0 is then a fixed point and the model stays on the unigram rung.

The data enter through one statistic above all: S = -dL/dx at x = 0, the gain per unit match of the bigram counts
over the unigram counts. Concentrated rows (small beta) and a flat base measure (small alpha) make it large and the
head early. The case loss and its gradient are derived with sympy (:data:`CASE_LOSS`) and compiled to a Numba kernel
(``python -m zipfhead.theory.reduced_markov`` regenerates ``theory/_reduced_markov_kernel.py``; a test checks it is
current).
Derivation, checks and the comparison with trained toys: ``proofs_notebooks/05_language_like.py``.

Token streams (Bietti et al.'s triggers, :class:`theory.distributions.TokenStreamTask`) run on the same mixture
(:func:`stream_cases`): the prior is the background's marginal, learned in the toys' weights before the head forms,
at prior weight :data:`STREAM_PRIOR_CONTEXTS` x T, and the progress runs toward the predictor that knows the
marginal and copies each trigger's output at its repeats. The flow stays on a = b, so its transition is one
quadrature (:func:`closed_form`), and for token streams S itself has a closed form (:func:`stream_gain`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numba as nb
import numpy as np
import sympy as sp

from zipfhead.theory._codegen import kernel_module, write_module
from zipfhead.theory._reduced_markov_flow import CC, CM, CN, COLUMNS, CR, HEADER, W
from zipfhead.theory._validate import check_int, check_real
from zipfhead.theory.distributions import MarkovTask, TokenStreamTask
from zipfhead.theory.markov import predictor_losses, sample_markov
from zipfhead.theory.ode import integrate_cells
from zipfhead.theory.samplers import sample_token_streams

__all__ = [
    "CASE_LOSS",
    "CASE_SYMBOLS",
    "COLUMNS",
    "STREAM_PRIOR_CONTEXTS",
    "ClosedForm",
    "MarkovCases",
    "TrajectoryMarkov",
    "case_slope",
    "closed_form",
    "integrate_markov",
    "kernel_source",
    "markov_cases",
    "pack",
    "position_cases",
    "stream_cases",
    "stream_gain",
    "stream_reference_loss",
]

# --------------------------------------------------------------------------------------------------- derivation
a_, b_ = sp.symbols("a b", real=True)
C_, R_, N_, M_ = sp.symbols("C R N M", nonnegative=True)
#: the state variables and the case parameters, in the kernel's argument order
CASE_SYMBOLS = (a_, b_, C_, R_, N_, M_)
_x = a_ * b_
#: one case's cross-entropy, -log p_x(j)
CASE_LOSS = sp.log(sp.exp(_x) * N_ + M_) - sp.log(sp.exp(_x) * C_ + R_)

KERNEL_MODULE = Path(__file__).with_name("_reduced_markov_kernel.py")


def kernel_source() -> str:
    """Source of ``case_terms(a, b, C, R, N, M)`` -> (loss, dl/da, dl/db), derived with sympy."""
    exprs = [CASE_LOSS, sp.diff(CASE_LOSS, a_), sp.diff(CASE_LOSS, b_)]
    return kernel_module("python -m zipfhead.theory.reduced_markov", "CASE_LOSS", "case_terms", exprs, CASE_SYMBOLS)


def write_kernel() -> None:
    """Regenerate ``theory/_reduced_markov_kernel.py`` (write, then rename)."""
    write_module(KERNEL_MODULE, kernel_source())


# --------------------------------------------------------------------------------------------------- data cases
#: sampled chains behind a case table, and the seed they are drawn with (fixed: a prediction is a function of the
#: task). 4000 chains of T = 32 give L(x) to about 0.1% and S = -L'(0) to about 1% (relative standard deviations
#: over 8 seeds, measured at k = 5, beta = 3, alpha = 0)
N_SEQS = 4000
SEED = 20261204


@nb.njit(cache=True)
def _case_rows(tokens, k, beta, p, out):
    """(C, R, N, M) of every predicted position of every chain into out (S (T - 1), 4)."""
    S, T = tokens.shape
    row = 0
    for s in range(S):
        u = np.zeros(k)
        c = np.zeros((k, k))
        n = np.zeros(k)
        u[tokens[s, 0]] += 1.0
        for t in range(1, T):  # predict tokens[s, t] from the t tokens before it
            i, j = tokens[s, t - 1], tokens[s, t]
            out[row, 0] = c[i, j]
            out[row, 1] = u[j] - c[i, j] + beta * p[j]
            out[row, 2] = n[i]
            out[row, 3] = t - n[i] + beta
            row += 1
            u[j] += 1.0  # the next position attends tokens[s, t], whose predecessor is i
            c[i, j] += 1.0
            n[i] += 1.0


def position_cases(tokens: np.ndarray, k: int, prior_weight: float, prior: np.ndarray) -> np.ndarray:
    """(C, R, N, M) of every predicted position of every sequence: (S (T - 1), 4), row s (T - 1) + t - 1 for the
    prediction of tokens[s, t] from tokens[s, :t] (the module docstring's mixture, with pseudo-count
    ``prior_weight`` x ``prior``). Works for any token sequences (S, T) with values in [0, k): Markov chains and
    token streams alike."""
    tokens = np.ascontiguousarray(tokens, dtype=np.int64)
    if tokens.ndim != 2 or tokens.shape[1] < 2:
        raise ValueError(f"tokens has shape {tokens.shape}: give (sequences, T) with T >= 2")
    if tokens.size and (tokens.min() < 0 or tokens.max() >= k):
        raise ValueError(f"tokens must lie in [0, k) = [0, {k})")
    prior = np.asarray(prior, dtype=np.float64)
    if prior.shape != (k,):
        raise ValueError(f"prior has shape {prior.shape}: expected ({k},)")
    rows = np.empty((tokens.shape[0] * (tokens.shape[1] - 1), 4))
    _case_rows(tokens, k, float(prior_weight), prior, rows)
    return rows


@dataclass(frozen=True)
class MarkovCases:
    """The expected loss over a Markov family as weighted cases.

    ``table`` (R, 5): columns :data:`COLUMNS`, weights summing to 1 (each row a distinct (C, R, N, M), weighted by
    its share of the sampled positions); ``unigram_loss`` L(0) and ``bigram_loss``, the reference the progress is
    measured toward (Markov chains: the Bayes bigram predictor's mean loss on the same chains; token streams:
    :func:`stream_reference_loss`), in nats per position.
    """

    table: np.ndarray
    unigram_loss: float
    bigram_loss: float


def case_loss(cases: MarkovCases, x: float) -> float:
    """L(x): the mean loss (nats per position) at match logit x, from the case table."""
    t = cases.table
    return float(np.sum(t[:, W] * (np.log(np.exp(x) * t[:, CN] + t[:, CM]) - np.log(np.exp(x) * t[:, CC] + t[:, CR]))))


@lru_cache(maxsize=128)
def markov_cases(task: MarkovTask, n_seqs: int = N_SEQS, seed: int = SEED) -> MarkovCases:
    """The case table of ``task`` from ``n_seqs`` chains drawn with ``seed`` (see the module docstring)."""
    if not isinstance(task, MarkovTask):
        raise ValueError(f"task = {task!r} is not allowed: task must be a MarkovTask")
    n_seqs = check_int("n_seqs", n_seqs, 1)
    tokens = sample_markov(task, n_seqs, seed)
    rows = position_cases(tokens, task.k, task.beta, task.base.probs())
    unique, counts = np.unique(rows, axis=0, return_counts=True)
    table = np.concatenate([(counts / rows.shape[0])[:, None], unique], axis=1)
    ref = predictor_losses(tokens, task).mean(axis=(0, 2))
    return MarkovCases(table=table, unigram_loss=float(ref[1]), bigram_loss=float(ref[2]))


# ------------------------------------------------------------------------------------------------ token streams
#: the in-weights channel of a token stream, as a pseudo-count: STREAM_PRIOR_CONTEXTS x T observations of the
#: background's marginal (prior weight beta = 4 T in the mixture above). A toy learns the background's unigram in
#: its weights first (Bietti et al. 2023), from far more tokens than one context holds, so its in-weights guess
#: outweighs the context's counts. The value was chosen on an earlier tokens sweep (alpha in {1, ..., 2.5} x V in
#: {16, 32}, 1500 steps, ``proofs_notebooks/data/tokens_v16v32.json``): T left 5 of its 9 forming cells without a
#: predicted transition, 4 T and 16 T ranked the toys' transitions alike (+0.93) and 64 T worse (+0.73); the
#: smallest weight with the best ranking was kept, and the ``tokens`` preset is scored with it unchanged (notebook
#: 05, section 7).
STREAM_PRIOR_CONTEXTS = 4.0
#: token streams behind a case table: 2000 streams of T = 64 give L(x) to about 0.2% and S = -L'(0) to about 3%
#: (relative standard deviations over 8 seeds at V = 16, alpha = 1.5; the toys' seeds differ by a median 25%)
N_STREAMS = 2000


def stream_reference_loss(tokens: np.ndarray, induction: np.ndarray, probs: np.ndarray) -> float:
    """The loss the token-stream progress is measured toward (nats per predicted position): the predictor that knows
    the background's marginal ``probs`` (V,) and copies each trigger's output at its repeats, -log p(x_t) at every
    predicted position t >= 1 except the induction positions, where it is 0. ``tokens`` (S, T) and ``induction``
    (S, T) as :class:`theory.samplers.TokenBatch`."""
    nxt, ind = tokens[:, 1:], np.asarray(induction, dtype=bool)[:, 1:]
    return float(np.mean(np.where(ind, 0.0, -np.log(np.asarray(probs, dtype=np.float64)[nxt]))))


@lru_cache(maxsize=128)
def stream_cases(
    task: TokenStreamTask, n_seqs: int = N_STREAMS, seed: int = SEED, prior_contexts: float = STREAM_PRIOR_CONTEXTS
) -> MarkovCases:
    """The case table of trigger token streams (the token-stream model): the same single-head mixture as the
    Markov chains', with the background's marginal as the in-weights channel at prior weight ``prior_contexts`` x T
    (default :data:`STREAM_PRIOR_CONTEXTS`), drawn from ``n_seqs`` streams with ``seed``. ``unigram_loss`` is L(0)
    (the mixture with no match), ``bigram_loss`` :func:`stream_reference_loss`."""
    if not isinstance(task, TokenStreamTask):
        raise ValueError(f"task = {task!r} is not allowed: task must be a TokenStreamTask")
    n_seqs = check_int("n_seqs", n_seqs, 1)
    batch = sample_token_streams(task, n_seqs, seed)
    probs = task.zipf.probs()
    prior_contexts = check_real("prior_contexts", prior_contexts, 0.0, 1e6)
    rows = position_cases(batch.tokens, task.V, prior_contexts * task.T, probs)
    unique, counts = np.unique(rows, axis=0, return_counts=True)
    table = np.concatenate([(counts / rows.shape[0])[:, None], unique], axis=1)
    reference = stream_reference_loss(batch.tokens, batch.induction, probs)
    no_match = MarkovCases(table=table, unigram_loss=0.0, bigram_loss=reference)
    return MarkovCases(table=table, unigram_loss=case_loss(no_match, 0.0), bigram_loss=reference)


def stream_gain(task: TokenStreamTask) -> float:
    """S = -L'(0) of the token-stream model in closed form (nats per position per unit match): a sum over positions,
    trigger tokens and output tokens of Zipf probabilities, with no sampled streams.

    At x = 0 a position's gain is C / (C + R) - N / (N + M) (CASE_LOSS's derivative in x = a b). At a trigger's
    repeat (an induction position) every earlier occurrence of the trigger i was followed by its output o, so
    C = N, the earlier occurrences, and C + R = N + B_o + beta p_o with B_o the background occurrences of o; N + M
    is t + beta. Three approximations make the expectation a finite sum: positions are independent, each the
    trigger i with probability r_i = p_i / (1 + p_i) (an occurrence forces the next position to its output, so
    the trigger's own rate falls below p_i) and the output o with probability p_o; the other trigger's forced
    positions are ignored; the gain at ordinary positions (a small cost against the strong in-weights channel,
    -0.0004 to -0.001 on the ``tokens`` preset's grid) is left out. Then

        S = n / (T - 1) sum_{t=1}^{T-1} sum_i pi_i r_i sum_{o != i} omega_(o|i)
            E_{N ~ Bin(t - 1, r_i), N >= 1} E_{B ~ Bin(t - 1, p_o)} [N / (N + B + beta p_o) - N / (t + beta)],

    with pi the trigger law (uniform or the marginal), omega the output law renormalised without i and beta =
    :data:`STREAM_PRIOR_CONTEXTS` x T. It overestimates the sampled table's S (the neglected cost and forcing): by
    8-21% on V in {12, 16, 32} x alpha in {0, ..., 2.5} with 2 uniform triggers, nearly uniformly, so it ranks those
    tasks as the table does; by 5-31% over V 8-64, T 16-256, 1-3 triggers, uniform or Zipf triggers and outputs.
    The transition's leading order (:func:`closed_form`) is sqrt(noise2) ln(x_half / x0) / (2 S).
    """
    from scipy.stats import binom

    if not isinstance(task, TokenStreamTask):
        raise ValueError(f"task = {task!r} is not allowed: task must be a TokenStreamTask")
    V, T = task.V, task.T
    p = task.zipf.probs()
    beta = STREAM_PRIOR_CONTEXTS * T
    trigger = np.full(V, 1.0 / V) if task.trigger_dist == "uniform" else p
    out = np.ones((V, V)) if task.output_dist == "uniform" else np.tile(p, (V, 1))
    np.fill_diagonal(out, 0.0)  # (i, o): the output law given trigger i
    out /= out.sum(axis=1, keepdims=True)
    rate = p / (1.0 + p)
    total = 0.0
    for t in range(1, T):
        k = np.arange(t, dtype=np.float64)  # N (or B) in 0 .. t - 1
        pmf_n = binom.pmf(k[None, :], t - 1, rate[:, None])  # (i, N)
        pmf_n[:, 0] = 0.0  # N >= 1: a repeat
        pmf_b = binom.pmf(k[None, :], t - 1, p[:, None])  # (o, B)
        share = k[None, None, :] / (k[None, None, :] + k[None, :, None] + beta * p[:, None, None])  # (o, B, N)
        copied = np.einsum("ob,obn->on", pmf_b, share)  # (o, N): E_B[N / (N + B + beta p_o)]
        per_trigger = np.einsum("in,on,io->i", pmf_n, copied, out) - pmf_n @ k / (t + beta)
        total += float(np.sum(trigger * rate * per_trigger))
    return task.n_triggers * total / (T - 1)


@dataclass(frozen=True)
class TrajectoryMarkov:
    """One integrated cell on its output times: ``t`` (E,) flow times; ``icl`` (E,) the bigram progress (0 at the
    unigram rung, 1 at the Bayes predictor); ``iwl`` (E,) zeros (each chain draws its own matrix: there is nothing
    to learn in weights beyond the base measure, which the unigram rung already carries); ``loss`` (E,) nats per
    position; ``state`` (E, 2) = (a, b); ``transition``: the flow time of the one rule's crossing, or None."""

    t: np.ndarray
    icl: np.ndarray
    iwl: np.ndarray
    loss: np.ndarray
    state: np.ndarray
    transition: float | None


def pack(items: list[tuple[MarkovCases, float, float, float, np.ndarray]]):
    """The integrator's padded arrays (y0, data, prm, chance, t_out) for cells (cases, init, noise2, weight decay,
    t_out)."""
    n = len(items)
    R = max(cs.table.shape[0] for cs, *_ in items)
    E = items[0][-1].shape[0]
    y0 = np.zeros((n, 2))
    data = np.zeros((n, R, len(COLUMNS)))
    prm = np.zeros((n, HEADER))
    t_out = np.zeros((n, E))
    for i, (cs, init, noise2, wd, t) in enumerate(items):
        if t.shape != (E,):
            raise ValueError(f"t_out has shape {t.shape} in cell {i}: every cell needs the same number of times {E}")
        data[i, : cs.table.shape[0]] = cs.table
        prm[i] = [noise2, cs.table.shape[0], cs.unigram_loss, cs.bigram_loss, wd]
        y0[i] = [init, init]
        t_out[i] = t
    return y0, data, prm, np.zeros(n), t_out


def integrate_markov(
    cells: list[tuple[MarkovCases, float, float, float, np.ndarray]], *, rtol: float = 1e-5, max_steps: int = 200_000
) -> list[TrajectoryMarkov]:
    """Integrate many cells at once; ``cells`` are (cases, init, noise2, weight decay, t_out): the initial a = b,
    Adam's noise floor (0: gradient flow), the flow's decay rate, and the output times (each of the same length E,
    strictly increasing from >= 0)."""
    if not cells:
        raise ValueError("cells is empty: give at least one (cases, init, noise2, weight decay, t_out)")
    for _, init, noise2, wd, t in cells:
        check_real("init", init, 0.0, 10.0)
        check_real("noise2", noise2, 0.0, 1e6)
        check_real("weight_decay", wd, 0.0, 1e3)
        t = np.asarray(t, dtype=np.float64)
        if t.ndim != 1 or t.size < 2 or not np.all(np.isfinite(t)) or np.any(np.diff(t) <= 0) or t[0] < 0:
            raise ValueError("t_out must be a 1-d array of at least 2 finite, strictly increasing times >= 0")
    y0, data, prm, chance, t_out = pack([(cs, i, n2, wd, np.asarray(t, np.float64)) for cs, i, n2, wd, t in cells])
    rec, ys, tstar, *_ = integrate_cells("markov", y0, data, prm, chance, t_out, 3, rtol=rtol, max_steps=max_steps)
    return [
        TrajectoryMarkov(
            t=t_out[i],
            icl=rec[i, :, 0],
            iwl=np.zeros(t_out.shape[1]),
            loss=rec[i, :, 1],
            state=ys[i],
            transition=None if math.isnan(tstar[i]) else float(tstar[i]),
        )
        for i in range(len(cells))
    ]


# ------------------------------------------------------------------------------------------------ closed form
def case_slope(cases: MarkovCases, x: float) -> float:
    """L'(x): the derivative of :func:`case_loss` in the match logit, sum_w [e^x N / (e^x N + M) - e^x C / (e^x C +
    R)] (nats per position per unit logit); S = -L'(0) is the gain per unit match."""
    t = cases.table
    ex = math.exp(x)
    copy_n, copy_c = ex * t[:, CN], ex * t[:, CC]
    return float(np.sum(t[:, W] * (copy_n / (copy_n + t[:, CM]) - copy_c / (copy_c + t[:, CR]))))


class ClosedForm(NamedTuple):
    """The transition of the flow from a = b = init without weight decay, on the diagonal a = b where it stays.

    ``time``: the flow time at which the progress reaches half its plateau (exact, by quadrature; None when the
    match never helps, S <= 0); ``leading``: the noise-dominated leading order sigma / (2 S) ln(x_half / x0);
    ``x_star``: the match logit that minimises L (the plateau); ``x_half``: where the progress is half the plateau's;
    ``gain``: S = -L'(0); ``plateau``: the progress P(x*) (what the phase rule compares with its threshold)."""

    time: float | None
    leading: float | None
    x_star: float
    x_half: float
    gain: float
    plateau: float


def closed_form(cases: MarkovCases, init: float, noise2: float, *, x_max: float = 40.0) -> ClosedForm:
    """The transition time of :func:`integrate_markov`'s flow in closed form (up to a quadrature and a root).

    With a(0) = b(0) the drift is symmetric, so a = b = theta for all time and x = theta^2. Adam's normalised flow is
    then one equation, d theta / dt = G / sqrt(G^2 + sigma^2) with G = -L'(theta^2) theta and sigma^2 = ``noise2``,
    and the time to go from x0 = init^2 to x is

        t(x) = int_x0^x sqrt(u L'(u)^2 + sigma^2) / (-2 u L'(u)) du,

    finite while L falls (L' < 0, i.e. below the optimum x*). The progress P(x) = (L(0) - L(x)) / (L(0) - L_ref)
    plateaus at P(x*); its half-rise, the one rule's crossing on a curve that starts at P(x0) ~ 0 and ends at the
    plateau, is at x_half with P(x_half) = P(x*) / 2. In the noise-dominated regime (|G| << sigma) with L' ~ -S the
    integral is sigma / (2 S) ln(x_half / x0): the transition comes as 1 / S, the gain per unit match, and only
    logarithmically on the initial strength.
    """
    from scipy import integrate, optimize

    check_real("init", init, 0.0, 10.0, low_open=True)
    check_real("noise2", noise2, 0.0, 1e6)
    gain = -case_slope(cases, 0.0)
    x0 = init * init
    if not gain > 0.0:
        return ClosedForm(None, None, 0.0, 0.0, gain, 0.0)
    x_star = float(optimize.minimize_scalar(lambda x: case_loss(cases, x), bounds=(0.0, x_max), method="bounded").x)
    lo = case_loss(cases, 0.0)
    plateau = lo - case_loss(cases, x_star)
    x_half = float(optimize.brentq(lambda x: lo - case_loss(cases, x) - 0.5 * plateau, 0.0, x_star, xtol=1e-12))
    progress = plateau / (cases.unigram_loss - cases.bigram_loss)
    if x_half <= x0:
        return ClosedForm(0.0, 0.0, x_star, x_half, gain, progress)

    def rate(u: float) -> float:
        d = case_slope(cases, u)
        return math.sqrt(u * d * d + noise2) / (-2.0 * u * d)

    # the integrand falls as 1 / u near x0: integrate in log u, where it is smooth
    time = integrate.quad(lambda v: rate(math.exp(v)) * math.exp(v), math.log(x0), math.log(x_half), limit=200)[0]
    leading = math.sqrt(noise2) / (2.0 * gain) * math.log(x_half / x0)
    return ClosedForm(float(time), float(leading), x_star, x_half, gain, progress)


if __name__ == "__main__":
    write_kernel()
