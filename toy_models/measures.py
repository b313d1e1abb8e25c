"""Mechanistic and behavioural measures of the toys: attention-head scores, in-context-learning scores, transitions.

Sources
-------
Olsson et al. 2022, "In-context Learning and Induction Heads" (transformer-circuits.pub):
    previous-token score, prefix-matching score, copying score, ICL score, and the loss bump that comes with the
    induction-head phase change. The induction (prefix-matching) detection pattern follows TransformerLens's
    ``head_detector`` convention: query t, key s with 1 <= s <= t and tokens[s - 1] == tokens[t].
Reddy 2024 (arXiv 2312.03002): in-context classification, sequences x_1 l_1 ... x_N l_N x_q of length 2N + 1 with
    items at even positions 0, 2, .., 2N (the query x_q at 2N) and labels at odd positions 1, 3, .., 2N - 1; the
    two-step circuit is a label -> item "previous-token" head and a query -> matching-label induction head.

Conventions
-----------
Attention patterns are softmax outputs with queries on the second-to-last axis and keys on the last one,
``pattern[..., h, t_query, s_key]``, as in :func:`toy_models.model.forward`'s cache (``pattern[layer]`` is
(B, n_heads, T, T)). Attention scores are fractions of attention mass (dimensionless, in [0, 1]); losses are
natural-log cross-entropies (nats). Everything except :func:`copying_score`, :func:`transition_step` and
:func:`loss_bumps` is written in ``jax.numpy`` with static shapes and no Python branching on values, so it runs
under ``jit`` and ``vmap``; averages over an empty set return 0 rather than NaN so that traced code stays finite.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from zipfhead.theory.transition import MIN_RISE, half_rise, smoothed_curve

__all__ = [
    "Bump",
    "Transition",
    "accuracy",
    "copying_score",
    "cross_entropy",
    "icl_score",
    "induction_mask",
    "item_to_label_previous_score",
    "loss_bumps",
    "loss_by_position",
    "prefix_matching_score",
    "previous_token_score",
    "query_self_score",
    "query_to_matching_label_score",
    "transition_step",
]


# --------------------------------------------------------------------------------------------------------------
# helpers


def _check_pattern(pattern: jnp.ndarray, name: str = "pattern") -> None:
    if pattern.ndim < 3 or pattern.shape[-1] != pattern.shape[-2]:
        raise ValueError(f"{name} has shape {pattern.shape}: expected (..., n_heads, T, T)")


def _safe_ratio(num: jnp.ndarray, den: jnp.ndarray) -> jnp.ndarray:
    """num / den where den > 0, else 0 (no NaN is ever formed, so gradients and strict numerics stay clean)."""
    ok = den > 0
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


# --------------------------------------------------------------------------------------------------------------
# attention-head scores


def previous_token_score(pattern: jnp.ndarray, query_mask: jnp.ndarray | None = None) -> jnp.ndarray:
    """Previous-token score per head (Olsson et al. 2022): mean attention from position t to position t - 1.

    Args:
        pattern: attention pattern (..., H, T, T) (queries, keys); any leading batch dims, e.g. (B, H, T, T).
        query_mask: optional bool (..., T) broadcastable against the pattern's leading dims: only query positions
            where it is True count (e.g. only the label positions of a classification sequence). Position 0 never
            counts (it has no previous token).

    Returns:
        (H,) float: mean over all leading dims and over the counted query positions t >= 1 of
        ``pattern[..., h, t, t - 1]``, a fraction of attention mass in [0, 1]; 0 if no position counts.
    """
    pattern = jnp.asarray(pattern)
    _check_pattern(pattern)
    # diag[..., h, j] = pattern[..., h, j + 1, j], j = 0..T-2, i.e. query t = j + 1 on key t - 1.
    diag = jnp.diagonal(pattern, offset=-1, axis1=-2, axis2=-1)
    if query_mask is None:
        weight = jnp.ones(diag.shape, dtype=diag.dtype)
    else:
        query_mask = jnp.asarray(query_mask)
        if query_mask.shape[-1] != pattern.shape[-1]:
            raise ValueError(f"query_mask has shape {query_mask.shape}: its last axis must be T = {pattern.shape[-1]}")
        weight = jnp.broadcast_to(query_mask[..., None, 1:].astype(diag.dtype), diag.shape)
    axes = tuple(i for i in range(diag.ndim) if i != diag.ndim - 2)  # every axis but the head axis
    return _safe_ratio((diag * weight).sum(axes), weight.sum(axes))


def induction_mask(tokens: jnp.ndarray) -> jnp.ndarray:
    """Induction (prefix-matching) detection pattern, TransformerLens ``head_detector`` convention.

    Args:
        tokens: int (B, T) token ids.

    Returns:
        bool (B, T, T): True at [b, t, s] when 1 <= s <= t and tokens[b, s - 1] == tokens[b, t], i.e. key s is the
        token right after an earlier occurrence (at s - 1 < t) of the current token. It is TransformerLens's
        duplicate-token pattern (tokens[s] == tokens[t], s < t) shifted one key to the right, lower-triangular.
        On repeated random tokens (R random tokens then the same R) with no repeats inside a half, the only
        True entries are [b, t, t - R + 1] for t >= R.
    """
    tokens = jnp.asarray(tokens)
    if tokens.ndim != 2:
        raise ValueError(f"tokens has shape {tokens.shape}: expected (B, T)")
    T = tokens.shape[1]
    # prev[b, s] = tokens[b, s - 1] for s >= 1; s = 0 has no previous token and is masked below.
    prev = jnp.concatenate([tokens[:, :1], tokens[:, :-1]], axis=1)
    same = tokens[:, :, None] == prev[:, None, :]  # [b, t, s]: tokens[t] == tokens[s - 1]
    t = jnp.arange(T)[:, None]
    s = jnp.arange(T)[None, :]
    return same & ((s >= 1) & (s <= t))[None]


def prefix_matching_score(pattern: jnp.ndarray, tokens: jnp.ndarray) -> jnp.ndarray:
    """Prefix-matching score per head (Olsson et al. 2022): attention on the token after an earlier copy.

    For each query row (b, t) with at least one True entry in ``induction_mask(tokens)[b, t]``, the head's attention
    mass on those matching keys divided by the row's total mass (1 for a softmax row; rows of total mass 0 give 0);
    the score is the mean of that fraction over the matching rows of every sequence (rows without a match do not
    count). On Olsson's repeated random tokens this is the mean attention from t to t - R + 1 over the second half.
    TransformerLens's detector instead pools all rows (sum(mask * pattern) / sum(pattern)); the two agree up to the
    rows without a match, which it counts as 0 and this score leaves out.

    Args:
        pattern: attention pattern (B, H, T, T) of one layer.
        tokens: int (B, T), the tokens that produced it.

    Returns:
        (H,) float in [0, 1]; 0 if no row has a match.
    """
    pattern = jnp.asarray(pattern)
    _check_pattern(pattern)
    if pattern.ndim != 4 or jnp.shape(tokens) != (pattern.shape[0], pattern.shape[-1]):
        raise ValueError(f"pattern {pattern.shape} and tokens {jnp.shape(tokens)} must be (B, H, T, T) and (B, T)")
    mask = induction_mask(tokens)  # (B, T, T)
    mass = (pattern * mask[:, None]).sum(-1)  # (B, H, T)
    frac = _safe_ratio(mass, pattern.sum(-1))
    rows = mask.any(-1)[:, None, :].astype(frac.dtype)  # (B, 1, T)
    return _safe_ratio((frac * rows).sum((0, 2)), jnp.broadcast_to(rows, frac.shape).sum((0, 2)))


def copying_score(W_E, W_V, W_O, W_U) -> np.ndarray:
    """Olsson et al.'s eigenvalue copying score of each head's OV circuit (numpy, float64; not jit-able).

    The full OV circuit of head h is C_h = W_E @ W_V[h] @ W_O[h] @ W_U, a (V, V) map from an attended input token to
    the output logits it adds. The score is sum(lambda) / sum(|lambda|) over the eigenvalues lambda of C_h: +1 when
    every eigenvalue is positive (attending to a token raises that token's logit: the head copies), -1 for an
    anti-copying head, near 0 for no systematic effect. sum(lambda) is real (it is the trace of a real matrix).

    Computation: C_h = A @ B with A = W_E @ W_V[h] (V, d_head) and B = W_O[h] @ W_U (d_head, V); the nonzero
    eigenvalues of A @ B are those of B @ A (d_head, d_head), with multiplicity, and zero eigenvalues add nothing to
    either sum, so the score is computed from the small matrix. ``numpy.linalg.eigvals`` is used because
    ``jnp.linalg.eigvals`` (non-symmetric eig) is implemented on CPU only.

    Args:
        W_E: (V_in, d_model) embedding rows of the input tokens (slice the rows beforehand, e.g. label rows).
        W_V: (H, d_model, d_head), TransformerLens layout.
        W_O: (H, d_head, d_model).
        W_U: (d_model, V_out) with V_out == V_in (slice columns beforehand so rows and columns name the same
            tokens).

    Returns:
        (H,) float64 in [-1, 1]; a head whose OV circuit is exactly zero scores 0.
    """
    W_E, W_V, W_O, W_U = (np.asarray(w, dtype=np.float64) for w in (W_E, W_V, W_O, W_U))
    if W_E.ndim != 2 or W_V.ndim != 3 or W_O.ndim != 3 or W_U.ndim != 2:
        raise ValueError(f"shapes W_E {W_E.shape}, W_V {W_V.shape}, W_O {W_O.shape}, W_U {W_U.shape} are not valid")
    if W_E.shape[0] != W_U.shape[1]:
        raise ValueError(f"V_in = {W_E.shape[0]} != V_out = {W_U.shape[1]}: slice W_E rows or W_U columns first")
    scores = np.zeros(W_V.shape[0])
    for h in range(W_V.shape[0]):
        A = W_E @ W_V[h]  # (V, d_head)
        B = W_O[h] @ W_U  # (d_head, V)
        lam = np.linalg.eigvals(B @ A)
        total = np.abs(lam).sum()
        scores[h] = lam.sum().real / total if total > 0 else 0.0
    return scores


# --------------------------------------------------------------------------------------------------------------
# losses and in-context-learning scores


def loss_by_position(logits: jnp.ndarray, targets: jnp.ndarray) -> jnp.ndarray:
    """Mean cross-entropy at each position, in nats.

    Args:
        logits: (..., T, V), e.g. (B, T, V).
        targets: int (..., T) target ids.

    Returns:
        (T,): -log softmax(logits)[..., t, targets[..., t]] averaged over all leading dims.
    """
    logp = jax.nn.log_softmax(jnp.asarray(logits), axis=-1)
    nll = -jnp.take_along_axis(logp, jnp.asarray(targets)[..., None], axis=-1)[..., 0]
    return nll.reshape(-1, nll.shape[-1]).mean(0)


def icl_score(loss_by_pos: jnp.ndarray, early: int, late: int) -> jnp.ndarray:
    """In-context-learning score (Olsson et al. 2022): loss at a late position minus loss at an early one (nats).

    The paper uses token 500 minus token 50 of a 512-token context; scale the positions to the context length.
    Negative when the model predicts later tokens better, i.e. when it learns from its context.
    """
    loss_by_pos = jnp.asarray(loss_by_pos)
    return loss_by_pos[late] - loss_by_pos[early]


def cross_entropy(logits: jnp.ndarray, targets: jnp.ndarray) -> jnp.ndarray:
    """Mean cross-entropy in nats of logits (..., V) (e.g. (B, V)) against int targets (...)."""
    logp = jax.nn.log_softmax(jnp.asarray(logits), axis=-1)
    return -jnp.take_along_axis(logp, jnp.asarray(targets)[..., None], axis=-1).mean()


def accuracy(logits: jnp.ndarray, targets: jnp.ndarray) -> jnp.ndarray:
    """Fraction of rows whose argmax (first index on ties) equals the target; logits (..., V), targets (...)."""
    return (jnp.argmax(jnp.asarray(logits), axis=-1) == jnp.asarray(targets)).mean()


# --------------------------------------------------------------------------------------------------------------
# in-context classification (Reddy 2024): x_1 l_1 ... x_N l_N x_q, T = 2N + 1


def item_to_label_previous_score(pattern_layer: jnp.ndarray) -> jnp.ndarray:
    """Label -> item score per head: mean attention from each label position 2i + 1 to its item at 2i.

    The first step of Reddy's two-step circuit, the classification analogue of a previous-token head.

    Args:
        pattern_layer: attention pattern (..., H, T, T) of one layer with T = 2N + 1 odd, e.g. (B, H, T, T).

    Returns:
        (H,): mean over the leading dims and i = 0..N-1 of pattern[..., h, 2i + 1, 2i] (attention mass in [0, 1]);
        0 when N = 0.
    """
    pattern_layer = jnp.asarray(pattern_layer)
    _check_pattern(pattern_layer, "pattern_layer")
    T = pattern_layer.shape[-1]
    if T % 2 != 1:
        raise ValueError(f"T = {T} is even: a classification sequence has T = 2N + 1")
    if T == 1:
        return jnp.zeros(pattern_layer.shape[-3], dtype=pattern_layer.dtype)
    labels = np.arange(1, T, 2)
    vals = pattern_layer[..., labels, labels - 1]  # (..., H, N)
    return vals.mean(tuple(i for i in range(vals.ndim) if i != vals.ndim - 2))


def query_to_matching_label_score(pattern_layer: jnp.ndarray, classes: jnp.ndarray) -> jnp.ndarray:
    """Query -> matching-label score per head: the induction step of Reddy's circuit.

    For each sequence, the attention mass from the query position 2N to the label positions 2i + 1 whose item 2i has
    the query's class (summed over all such i); averaged over the sequences whose context contains the query's
    class. Sequences without a match are left out (their score is undefined); with no such sequence at all the
    result is 0.

    Args:
        pattern_layer: attention pattern (..., H, T, T) of one layer, T = 2N + 1, e.g. (B, H, T, T).
        classes: int (..., N + 1) class ids: classes[..., i] is the class of item i (position 2i) and
            classes[..., N] the query's class. Leading dims as the pattern's.

    Returns:
        (H,) attention mass in [0, 1].
    """
    pattern_layer = jnp.asarray(pattern_layer)
    classes = jnp.asarray(classes)
    _check_pattern(pattern_layer, "pattern_layer")
    T = pattern_layer.shape[-1]
    N = classes.shape[-1] - 1
    if T != 2 * N + 1 or classes.shape[:-1] != pattern_layer.shape[:-3]:
        raise ValueError(f"pattern_layer {pattern_layer.shape} and classes {classes.shape} disagree: need T = 2N + 1")
    att = pattern_layer[..., 2 * N, 1::2]  # (..., H, N): query row, label keys 1, 3, .., 2N - 1
    match = classes[..., :N] == classes[..., N:]  # (..., N)
    mass = (att * match[..., None, :].astype(att.dtype)).sum(-1)  # (..., H)
    has = match.any(-1)[..., None].astype(mass.dtype)  # (..., 1)
    H = pattern_layer.shape[-3]
    num = (mass * has).reshape(-1, H).sum(0)
    den = jnp.broadcast_to(has, mass.shape).reshape(-1, H).sum(0)
    return _safe_ratio(num, den)


def query_self_score(pattern_layer: jnp.ndarray) -> jnp.ndarray:
    """Query -> itself score per head: the attention mass the query position keeps on its own token.

    The head's in-weights use: a head that attends from the query to the query's own item passes the item through
    its OV circuit to the label logits, a second memorisation path. Where memorisation wins in the toys, the
    layer-2 head ends there (self score ~1, notebook 04 section 11) instead of on the matching label.

    Args:
        pattern_layer: attention pattern (..., H, T, T) of one layer, e.g. (B, H, T, T).

    Returns:
        (H,): mean over the leading dims of pattern[..., h, T - 1, T - 1] (attention mass in [0, 1]).
    """
    pattern_layer = jnp.asarray(pattern_layer)
    _check_pattern(pattern_layer, "pattern_layer")
    vals = pattern_layer[..., -1, -1]  # (..., H)
    return vals.reshape(-1, vals.shape[-1]).mean(0)


# --------------------------------------------------------------------------------------------------------------
# training curves (numpy)


class Transition(NamedTuple):
    """Estimated training step of a transition and its uncertainty (both in steps; None when there is none)."""

    step: float | None
    uncertainty: float | None


class Bump(NamedTuple):
    """A bump of a training-loss curve: first step above tolerance, step of the highest point, height (loss units)."""

    start_step: float
    peak_step: float
    height: float


def _curve(steps, values, name: str) -> tuple[np.ndarray, np.ndarray]:
    steps = np.asarray(steps, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if steps.ndim != 1 or steps.shape != values.shape or steps.size == 0:
        raise ValueError(f"steps {steps.shape} and {name} {values.shape} must be non-empty 1-D arrays of equal length")
    if not (np.all(np.isfinite(steps)) and np.all(np.isfinite(values))):
        raise ValueError(f"steps and {name} must be finite")
    if np.any(np.diff(steps) <= 0):
        raise ValueError("steps must be strictly increasing")
    return steps, values


def transition_step(
    steps, values, chance: float, *, smooth: int = 3, final_window: int = 3, min_rise: float = MIN_RISE
) -> Transition:
    """When a rising metric (e.g. in-context accuracy) makes its transition, from an evaluation curve (numpy).

    The one rule of :mod:`theory.transition` (also the reduced model's and the sweep's): the first upward crossing
    of half the way from ``chance`` to the curve's final value (mean of the last ``final_window`` raw values) by
    its ``smooth``-point moving average, interpolated linearly between the bracketing evaluations, with half their
    spacing as the uncertainty; Transition(None, None) when the final rise is below ``min_rise`` or the smoothed
    curve never reaches the threshold, and Transition(steps[0], inf) when the first evaluation is already above it.

    Args:
        steps: (E,) strictly increasing training steps of the evaluations.
        values: (E,) metric at those steps (same units as ``chance`` and ``min_rise``).
        chance: the metric's chance level (e.g. 1 / L for accuracy over L labels).

    Returns:
        Transition(step, uncertainty) in training steps.
    """
    step, unc = half_rise(steps, values, chance, smooth=smooth, final_window=final_window, min_rise=min_rise)
    return Transition(step, unc)


def loss_bumps(steps, loss, *, rel_tol: float = 0.02, smooth: int = 5) -> list[Bump]:
    """Bumps in a training-loss curve (numpy): Olsson et al.'s induction-head phase change shows as one.

    Definition: smoothed = centred moving average of ``loss`` over ``smooth`` evaluations (odd; shrinking window at
    the ends); running_min[i] = min(smoothed[:i + 1]); excess = smoothed - running_min. A bump is a maximal run of
    consecutive evaluations with excess > rel_tol * |running_min| (a loss that is momentarily rel_tol above the best
    loss so far). A monotone non-increasing curve has no bump.

    Args:
        steps: (E,) strictly increasing training steps.
        loss: (E,) training loss (nats).
        rel_tol: relative tolerance, >= 0.
        smooth: odd smoothing width.

    Returns:
        A list of Bump(start_step, peak_step, height) in order: the step of the run's first evaluation, the step of
        its largest excess, and that excess (smoothed loss minus running minimum, loss units).
    """
    steps, loss = _curve(steps, loss, "loss")
    if not (math.isfinite(rel_tol) and rel_tol >= 0):
        raise ValueError(f"rel_tol = {rel_tol!r} is not allowed: it must be a finite real >= 0")
    smoothed = smoothed_curve(loss, smooth)
    running_min = np.minimum.accumulate(smoothed)
    excess = smoothed - running_min
    above = excess > rel_tol * np.abs(running_min)
    bumps = []
    i, n = 0, above.size
    while i < n:
        if not above[i]:
            i += 1
            continue
        j = i
        while j < n and above[j]:
            j += 1
        peak = i + int(np.argmax(excess[i:j]))
        bumps.append(Bump(float(steps[i]), float(steps[peak]), float(excess[peak])))
        i = j
    return bumps
