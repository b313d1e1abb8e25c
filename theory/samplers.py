"""Numba samplers for the data families of :mod:`theory.distributions`.

Every sampler takes an explicit ``seed`` (and an ``offset``, the index of its first sequence), draws sequence i
from its own counter-based stream ``stream(seed, offset + i)`` (see :mod:`theory._rng`), and returns numpy
arrays ready for JAX (int32 ids, float32 vectors, bool flags). So a batch is reproducible for any number of
threads, and ``sample(n, seed, offset=a)`` equals rows ``a:a+n`` of a larger batch with the same seed.
Plain-Python twins of these kernels live in ``tests/naive.py`` and are checked against them.

Class ids are 0-based rank indices (0 is the most frequent class); novel classes of a sequence are
-1, -2, ..., -(N/B). Labels follow Reddy 2024: class k carries label k mod L.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from zipfhead.theory._rng import categorical, inverse_cdf_table, normal, randint, stream, uniform
from zipfhead.theory._validate import check_choice, check_int, check_seed
from zipfhead.theory.distributions import ClassificationTask, TokenStreamTask, Zipf

__all__ = [
    "EVAL_KINDS",
    "ClassificationBatch",
    "TokenBatch",
    "class_means",
    "sample_classes",
    "sample_classification",
    "sample_repeated_tokens",
    "sample_token_streams",
]

# Which sequences a classification batch holds.
#   train: the training mixture (p_C novel, else p_B bursty, else i.i.d.).
#   icl:   novel classes with fresh labels, bursty: solvable only in context.
#   swap:  known classes, bursty, each context class relabelled with a distinct label other than its own:
#          in-context copying and in-weights recall give different answers.
#   iwl:   i.i.d. context with the query's class absent: solvable only in weights.
EVAL_KINDS = ("train", "icl", "swap", "iwl")
_KIND_CODE = {k: i for i, k in enumerate(EVAL_KINDS)}
_NOVEL_SALT = np.uint64(0x6E6F76656C6D7573)  # a separate stream family for novel class means
MAX_SEQS = 1 << 26


class ClassificationBatch(NamedTuple):
    """A batch of S in-context classification sequences x_1 l_1 ... x_N l_N x_q.

    Attributes:
        items: (S, N+1, D) float32, the item vectors; index N is the query. ``None`` if not requested.
        labels: (S, N+1) int32 in [0, L); index N is the target label of the query.
        classes: (S, N+1) int32, class rank index (>= 0) or novel class -1..-(N/B).
        bursty: (S,) bool, the context is bursty (N/B classes, B copies each, query among them).
        novel: (S,) bool, the sequence is made of novel classes.
    """

    items: np.ndarray | None
    labels: np.ndarray
    classes: np.ndarray
    bursty: np.ndarray
    novel: np.ndarray


class TokenBatch(NamedTuple):
    """A batch of S token streams of length T.

    Attributes:
        tokens: (S, T) int32 in [0, V).
        triggers: (S, n_triggers) int32, the distinct trigger tokens of each sequence.
        outputs: (S, n_triggers) int32, the output token that always follows each trigger.
        induction: (S, T) bool, position t holds a trigger's output and that trigger also occurred before
            position t - 1: the positions an induction head can predict.
    """

    tokens: np.ndarray
    triggers: np.ndarray
    outputs: np.ndarray
    induction: np.ndarray


@njit(parallel=True, cache=True)
def _class_means_kernel(seed, out):  # pragma: no cover - compiled
    K, D = out.shape
    sd = 1.0 / math.sqrt(D)
    for k in prange(K):
        st = stream(seed, np.uint64(k))
        for d in range(D):
            st, z = normal(st)
            out[k, d] = z * sd


def class_means(task: ClassificationTask, seed: int) -> np.ndarray:
    """Class means mu_k ~ N(0, I/D) for k = 0..K-1: shape (K, D), float32.

    Drawn once per task from ``seed`` (keep it apart from the sequence seeds); row k depends only on
    (seed, k).
    """
    out = np.empty((task.K, task.D), dtype=np.float32)
    _class_means_kernel(np.uint64(check_seed(seed)), out)
    return out


@njit(inline="always")
def _draw_distinct(st, table, row, j):
    """A class from ``table`` not among row[0:j] (rejection: the law of successive sampling)."""
    while True:
        st, c = categorical(st, table)
        fresh = True
        for jj in range(j):
            if row[jj] == c:
                fresh = False
                break
        if fresh:
            return st, c


@njit(parallel=True, cache=True)
def _classification_kernel(
    table,
    class_label,
    means,
    N,
    B,
    L,
    p_B,
    p_C,
    eps,
    kind,
    relabel,
    seed,
    offset,
    with_items,
    labels,
    classes,
    bursty,
    novel,
    items,
):  # pragma: no cover - compiled
    """Fill the output arrays, one sequence per prange iteration.

    One function on purpose (119 lines): the order of the draws from each sequence's stream *is* the data, and
    its two twins (tests/naive.py, toy_models.device_samplers) follow it draw by draw; kept in one place, that
    order reads top to bottom."""
    S = labels.shape[0]
    m = N // B
    D = items.shape[2]
    scale = 1.0 / math.sqrt(1.0 + eps * eps)
    sd = 1.0 / math.sqrt(D)
    for i in prange(S):
        index = np.uint64(offset + i)
        st = stream(seed, index)
        st, u_novel = uniform(st)
        st, u_burst = uniform(st)
        if kind == 0:
            is_novel = u_novel < p_C
            is_bursty = is_novel or u_burst < p_B
        else:
            is_novel = kind == 1
            is_bursty = kind != 3
        novel[i] = is_novel
        bursty[i] = is_bursty
        cls_row = classes[i]
        lab_row = labels[i]
        if is_bursty:
            # The m = N/B distinct classes and their labels go in slots 0..m-1 first.
            for j in range(m):
                if is_novel:
                    c = -1 - j
                else:
                    st, c = _draw_distinct(st, table, cls_row, j)
                cls_row[j] = c
                if is_novel or kind == 2 or (relabel and kind == 0):
                    while True:  # distinct fresh labels; under swap also different from the class's own
                        st, lab = randint(st, L)
                        ok = not (kind == 2 and lab == class_label[c])
                        for jj in range(j):
                            if lab_row[jj] == lab:
                                ok = False
                        if ok:
                            break
                else:
                    lab = class_label[c]
                lab_row[j] = lab
            st, qj = randint(st, m)
            cls_row[N] = cls_row[qj]
            lab_row[N] = lab_row[qj]
            # Expand in place (descending, so slot s // B <= s is read before it is overwritten) ...
            for s in range(N - 1, -1, -1):
                cls_row[s] = cls_row[s // B]
                lab_row[s] = lab_row[s // B]
            # ... then shuffle the context positions (Fisher-Yates).
            for s in range(N - 1, 0, -1):
                st, r = randint(st, s + 1)
                c = cls_row[s]
                cls_row[s] = cls_row[r]
                cls_row[r] = c
                lab = lab_row[s]
                lab_row[s] = lab_row[r]
                lab_row[r] = lab
        else:
            if kind == 3:
                st, qc = categorical(st, table)
                for s in range(N):
                    while True:  # the query's class is absent from the context
                        st, c = categorical(st, table)
                        if c != qc:
                            break
                    cls_row[s] = c
                cls_row[N] = qc
            else:
                for s in range(N + 1):
                    st, c = categorical(st, table)
                    cls_row[s] = c
            for s in range(N + 1):
                if relabel and kind == 0:
                    # a label per distinct class of this sequence: the first copy draws it, later copies reuse it
                    lab = -1
                    for ss in range(s):
                        if cls_row[ss] == cls_row[s]:
                            lab = lab_row[ss]
                            break
                    if lab < 0:
                        st, lab = randint(st, L)
                    lab_row[s] = lab
                else:
                    lab_row[s] = class_label[cls_row[s]]
        if with_items:
            for s in range(N + 1):
                c = cls_row[s]
                if c < 0:
                    # A novel class's mean is a function of (seed, sequence, class), regenerated for each
                    # copy, so that no scratch memory is needed.
                    mst = stream(stream(seed ^ _NOVEL_SALT, index), np.uint64(-1 - c))
                for d in range(D):
                    if c < 0:
                        mst, mu = normal(mst)
                        mu *= sd
                    else:
                        mu = means[c, d]
                    st, z = normal(st)
                    items[i, s, d] = (mu + eps * sd * z) * scale


def sample_classification(
    task: ClassificationTask,
    means: np.ndarray,
    n_seqs: int,
    seed: int,
    kind: str = "train",
    *,
    offset: int = 0,
    with_items: bool = True,
) -> ClassificationBatch:
    """Draw ``n_seqs`` sequences of the in-context classification task.

    Args:
        task: the task's parameters (K, N, D, L, B, p_B, p_C, eps, alpha, q).
        means: (K, D) class means from :func:`class_means`.
        n_seqs: S, number of sequences, 1 <= S <= 2^26.
        seed: the sequences' seed (0 <= seed < 2^64).
        kind: ``train`` (the training mixture) or an evaluation set: ``icl``, ``swap``, ``iwl``
            (see ``EVAL_KINDS``).
        offset: index of the first sequence (a chunk of a larger stream).
        with_items: also draw the (S, N+1, D) item vectors (the class ids and labels alone are much cheaper).

    Returns:
        A :class:`ClassificationBatch`.

    Most of its 78 lines are the checks of its arguments, each with its own message naming the bad value and the
    allowed range, before the kernel call.
    """
    n_seqs = check_int("n_seqs", n_seqs, 1, MAX_SEQS)
    kind = check_choice("kind", kind, EVAL_KINDS)
    offset = check_int("offset", offset, 0, 2**62)
    if kind == "swap" and task.L <= task.classes_per_burst:
        raise ValueError(
            f"L = {task.L} is too small for the label-swap set: each of the N/B = {task.classes_per_burst} "
            f"context classes needs a distinct label other than its own, so L must be at least "
            f"{task.classes_per_burst + 1}"
        )
    means = np.ascontiguousarray(means, dtype=np.float32)
    if means.shape != (task.K, task.D):
        raise ValueError(f"means has shape {means.shape}: expected (K, D) = {(task.K, task.D)}")
    cdf = task.zipf.cdf()
    support = _support(cdf)
    needs_distinct = kind == "swap" or (kind == "train" and task.p_B > 0 and task.p_C < 1)
    if needs_distinct and task.classes_per_burst > support:
        raise ValueError(
            f"N/B = {task.classes_per_burst} distinct classes per bursty context, but only {support} of the "
            f"K = {task.K} classes have a probability above float64 resolution at alpha = {task.alpha:g}: "
            f"N/B must be at most {support} (or lower alpha)"
        )
    if kind == "iwl" and support < 2:
        raise ValueError(
            f"alpha = {task.alpha:g} leaves a single class with non-zero probability: the iwl set needs two"
        )
    S, N = n_seqs, task.N
    labels = np.empty((S, N + 1), dtype=np.int32)
    classes = np.empty((S, N + 1), dtype=np.int32)
    bursty = np.empty(S, dtype=np.bool_)
    novel = np.empty(S, dtype=np.bool_)
    items = np.empty((S, N + 1, task.D) if with_items else (0, 0, task.D), dtype=np.float32)
    _classification_kernel(
        inverse_cdf_table(cdf),
        np.arange(task.K, dtype=np.int32) % task.L,  # label of each class: a lookup, not a division
        means,
        N,
        task.B,
        task.L,
        task.p_B,
        task.p_C,
        task.eps,
        _KIND_CODE[kind],
        task.label_map == "per_sequence",
        np.uint64(check_seed(seed)),
        offset,
        with_items,
        labels,
        classes,
        bursty,
        novel,
        items,
    )
    return ClassificationBatch(items if with_items else None, labels, classes, bursty, novel)


def sample_classes(task: ClassificationTask, n_seqs: int, seed: int, kind: str = "train", **kw) -> ClassificationBatch:
    """Class ids and labels only (no item vectors): :func:`sample_classification` with ``with_items=False``."""
    means = np.zeros((task.K, task.D), dtype=np.float32)  # unused without items
    return sample_classification(task, means, n_seqs, seed, kind, with_items=False, **kw)


@njit(parallel=True, cache=True)
def _token_kernel(
    table, trigger_table, output_table, seed, offset, tokens, triggers, outputs, first_seen, induction
):  # pragma: no cover - compiled
    S, T = tokens.shape
    n = triggers.shape[1]
    for i in prange(S):
        st = stream(seed, np.uint64(offset + i))
        trig = triggers[i]
        for j in range(n):
            st, c = _draw_distinct(st, trigger_table, trig, j)
            trig[j] = c
        for j in range(n):
            while True:  # outputs are non-triggers, so a forced output never forces in turn
                st, c = categorical(st, output_table)
                ok = True
                for jj in range(n):
                    if trig[jj] == c:
                        ok = False
                if ok:
                    break
            outputs[i, j] = c
            first_seen[i, j] = -1
        prev = -1
        for t in range(T):
            if prev >= 0:
                tok = outputs[i, prev]
                induction[i, t] = first_seen[i, prev] < t - 1
            else:
                st, tok = categorical(st, table)
                induction[i, t] = False
            tokens[i, t] = tok
            prev = -1
            for j in range(n):
                if trig[j] == tok:
                    prev = j
                    if first_seen[i, j] < 0:
                        first_seen[i, j] = t


def _token_cdf(V: int, dist: str, zipf: Zipf) -> np.ndarray:
    return zipf.cdf() if dist == "zipf" else Zipf(V, 0.0).cdf()


def _support(cdf: np.ndarray) -> int:
    """Number of entries an inverse-CDF table can return (probabilities below float64 resolution cannot)."""
    return int(np.count_nonzero(np.diff(cdf, prepend=0.0) > 0))


def sample_token_streams(task: TokenStreamTask, n_seqs: int, seed: int, *, offset: int = 0) -> TokenBatch:
    """Draw ``n_seqs`` token streams with triggers (see :class:`TokenStreamTask`).

    Returns:
        A :class:`TokenBatch` with (S, T) tokens and the (S, T) induction mask.
    """
    n_seqs = check_int("n_seqs", n_seqs, 1, MAX_SEQS)
    offset = check_int("offset", offset, 0, 2**62)
    S, T, n = n_seqs, task.T, task.n_triggers
    zipf = task.zipf
    tokens = np.empty((S, T), dtype=np.int32)
    triggers = np.empty((S, n), dtype=np.int32)
    outputs = np.empty((S, n), dtype=np.int32)
    first_seen = np.empty((S, n), dtype=np.int64)
    induction = np.empty((S, T), dtype=np.bool_)
    trigger_cdf = _token_cdf(task.V, task.trigger_dist, zipf)
    output_cdf = _token_cdf(task.V, task.output_dist, zipf)
    # Rejection sampling of distinct triggers, and of outputs outside the triggers, must be able to succeed.
    limit = min(_support(trigger_cdf), _support(output_cdf) - 1)
    if n > limit:
        raise ValueError(
            f"n_triggers = {n} is out of range for alpha = {task.alpha:g}: only {_support(trigger_cdf)} trigger and "
            f"{_support(output_cdf)} output tokens have a probability above float64 resolution, so n_triggers "
            f"must be at most {limit}"
        )
    _token_kernel(
        inverse_cdf_table(zipf.cdf()),
        inverse_cdf_table(trigger_cdf),
        inverse_cdf_table(output_cdf),
        np.uint64(check_seed(seed)),
        offset,
        tokens,
        triggers,
        outputs,
        first_seen,
        induction,
    )
    return TokenBatch(tokens, triggers, outputs, induction)


@njit(parallel=True, cache=True)
def _repeated_kernel(V, seed, offset, out):  # pragma: no cover - compiled
    S, T2 = out.shape
    R = T2 // 2
    for i in prange(S):
        st = stream(seed, np.uint64(offset + i))
        for t in range(R):
            st, c = randint(st, V)
            out[i, t] = c
            out[i, t + R] = c


def sample_repeated_tokens(V: int, R: int, n_seqs: int, seed: int, *, offset: int = 0) -> np.ndarray:
    """Repeated random tokens (Olsson et al. 2022's prefix-matching probe): R uniform tokens, then the same R again.

    Returns:
        (S, 2R) int32 tokens in [0, V).
    """
    V = check_int("V", V, 2, 2**31 - 1)
    R = check_int("R", R, 1, 1 << 20)
    n_seqs = check_int("n_seqs", n_seqs, 1, MAX_SEQS)
    offset = check_int("offset", offset, 0, 2**62)
    out = np.empty((n_seqs, 2 * R), dtype=np.int32)
    _repeated_kernel(V, np.uint64(check_seed(seed)), offset, out)
    return out
