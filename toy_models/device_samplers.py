"""JAX twins of the Numba samplers, for drawing training batches inside the compiled chunk (``sampler="device"``).

On an accelerator, host-side sampling has to generate and transfer every batch (about 44 MB a step for a
320-model sweep of the classification toy); these samplers draw the batch on the device, inside the scan, from a
key that is a pure function of (run seed, step): ``fold_in(PRNGKey(derive_seed(seed, "train")), step)``. A
resumed run therefore sees the same data as an uninterrupted one, as on the host path.

They draw from the same laws as :mod:`theory.samplers` (checked by the same statistical tests in
``tests/unit/test_device_samplers.py``), not the same numbers: the two paths use different random streams. The Numba
host path stays the default; on this 2-core CPU it is the faster of the two (``zipfhead bench --part training``).

Categorical draws use Walker's alias method (:func:`alias_table`): O(1) per draw and exact in float32 to about
1e-7 of a class's scaled probability K p_k, where an inverse CDF in float32 would lose the Zipf tail (its spacing
near 1 is 6e-8, larger than p_k for the rarest classes of a K = 16384 task at alpha 1.5). Draws without
replacement (a bursty context's distinct classes, a stream's distinct triggers) reject repeats, as the Numba
kernels do: the law of successive sampling.

Every distribution parameter that differs between a sweep's cells (K, B, p_B, p_C, eps, alpha, the label map,
the number of triggers) is data, padded to the run's largest, so that one compilation serves every cell.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from zipfhead.theory.distributions import ClassificationTask, TokenStreamTask, Zipf
from zipfhead.theory.samplers import EVAL_KINDS

__all__ = [
    "alias_table",
    "classification_params",
    "sample_classification",
    "sample_token_streams",
    "token_params",
]


def alias_table(probs: np.ndarray, size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Walker's alias table of a distribution (Vose's construction, in float64).

    Args:
        probs: (K,) probabilities, >= 0, summing to 1 (to float64 rounding).
        size: pad the table to this many entries (>= K); padded entries are never drawn when the draw's index is
            taken below K.

    Returns:
        (accept, alias): (size,) float32 and (size,) int32. A draw picks k uniform in [0, K) and u uniform in
        [0, 1), and returns k if u < accept[k], else alias[k]; so P(k) = (accept[k] + sum_{j: alias[j] = k}
        (1 - accept[j])) / K.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 1 or p.size == 0 or np.any(p < 0) or not np.all(np.isfinite(p)):
        raise ValueError(f"probs has shape {p.shape} or bad entries: expected a (K,) array of finite values >= 0")
    if abs(p.sum() - 1.0) > 1e-9:
        raise ValueError(f"probs sums to {p.sum():.12g}: it must sum to 1")
    K = p.size
    size = K if size is None else size
    if size < K:
        raise ValueError(f"size = {size} is below K = {K}: the table must hold every class")
    scaled = p * K
    accept = np.ones(size, dtype=np.float64)
    alias = np.arange(size, dtype=np.int64)
    small = [k for k in range(K) if scaled[k] < 1.0]
    large = [k for k in range(K) if scaled[k] >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        accept[s], alias[s] = scaled[s], g
        scaled[g] -= 1.0 - scaled[s]
        (small if scaled[g] < 1.0 else large).append(g)
    for k in small + large:  # what rounding leaves: accept with probability 1
        accept[k] = 1.0
    return accept.astype(np.float32), alias.astype(np.int32)


def _alias(u: jax.Array, accept: jax.Array, alias: jax.Array, K: jax.Array) -> jax.Array:
    """A draw from an alias table whose first K entries are the distribution, given two uniforms u[..., 0:2]."""
    k = jnp.minimum((u[..., 0] * K).astype(jnp.int32), K - 1)
    return jnp.where(u[..., 1] < accept[k], k, alias[k])


def _zero(key: jax.Array) -> jax.Array:
    """An int32 0 computed from ``key``. Loop carries start from it, so that under ``shard_map`` they vary over
    the model axis as the values the loops produce do (a constant start would not, and JAX refuses the loop)."""
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    return (data.ravel()[0] * 0).astype(jnp.int32)


def _draw_until(key: jax.Array, draw, bad, slot: jax.Array | int = 0, n_slots: int = 1) -> jax.Array:
    """``draw(u)`` on fresh uniform pairs u = uniform(fold_in(key, slot + n_slots i), (2,)), i = 0, 1, ..., until
    not ``bad(value)``: a rejection loop (the Numba kernels' law). Loops for different slots (0 <= slot < n_slots)
    share ``key`` without sharing draws. Few random call sites, so that it compiles fast (every threefry call site
    costs about 0.3-0.7 s of XLA compilation on a CPU)."""

    def body(carry):
        i, _ = carry
        return i + 1, draw(jax.random.uniform(jax.random.fold_in(key, slot + n_slots * i), (2,)))

    zero = _zero(key)
    return jax.lax.while_loop(lambda c: (c[0] == 0) | bad(c[1]), body, (zero, zero - 1))[1]


def _distinct(key: jax.Array, n: int, count: jax.Array, draw, also_bad=None) -> jax.Array:
    """(n,) int32 values of which the first ``count`` are distinct (successive draws rejecting repeats, and values
    where ``also_bad(j, value)``); entries from ``count`` on are single unconstrained draws."""

    def slot(j, row):
        def bad(c):
            repeat = jnp.any((jnp.arange(n) < j) & (row == c))
            extra = also_bad(j, c) if also_bad is not None else False
            return (j < count) & (repeat | extra)

        return row.at[j].set(_draw_until(key, draw, bad, j, n))

    return jax.lax.fori_loop(0, n, slot, jnp.full((n,), -1, jnp.int32) + _zero(key))


# --- in-context classification ---------------------------------------------------------------------------------
def classification_params(task: ClassificationTask, means: np.ndarray, K_max: int | None = None) -> dict[str, Any]:
    """One model's sampler parameters (numpy, padded to ``K_max`` classes), to stack along a model axis.

    Args:
        task: the distribution.
        means: (K, D) class means (:func:`theory.samplers.class_means`).
        K_max: pad the class tables to this many classes (the run's largest K); None: K.
    """
    K_max = task.K if K_max is None else K_max
    if means.shape != (task.K, task.D):
        raise ValueError(f"means has shape {means.shape}: expected (K, D) = {(task.K, task.D)}")
    accept, alias = alias_table(task.zipf.probs(), K_max)
    padded = np.zeros((K_max, task.D), dtype=np.float32)
    padded[: task.K] = means
    f32 = np.float32
    return {
        "accept": accept,
        "alias": alias,
        "means": padded,
        "K": np.int32(task.K),
        "B": np.int32(task.B),
        "p_B": f32(task.p_B),
        "p_C": f32(task.p_C),
        "eps": f32(task.eps),
        "relabel": np.bool_(task.label_map == "per_sequence"),
    }


def _classification_one(key: jax.Array, prm: dict[str, jax.Array], N: int, L: int, kind: int) -> dict[str, Any]:
    """One sequence: class ids, labels, items and flags (the layout of :class:`theory.samplers.ClassificationBatch`).
    The fixed-count draws come from one block of uniforms and one of normals (few random call sites: fast to
    compile); only the rejection loops draw more. One function (64 lines) as its Numba original is: the sequence's
    steps read in the order the kernel takes them."""
    keys = jax.random.split(key, 5)
    D = prm["means"].shape[1]
    B = prm["B"]
    m = N // B
    # uniforms: novel flag, burst flag, query group, N for the shuffle, 2 (N + 1) for i.i.d. classes, N + 1 labels
    u = jax.random.uniform(keys[0], (3 + N + 3 * (N + 1),))
    u_perm, u_iid = u[3 : 3 + N], u[3 + N : 3 + N + 2 * (N + 1)].reshape(N + 1, 2)
    u_label = u[3 + N + 2 * (N + 1) :]

    def known(pair):
        return _alias(pair, prm["accept"], prm["alias"], prm["K"])

    if kind == 0:
        is_novel = u[0] < prm["p_C"]
        is_bursty = is_novel | (u[1] < prm["p_B"])
    else:
        is_novel = jnp.asarray(kind == 1)
        is_bursty = jnp.asarray(kind != 3)
    relabel = prm["relabel"] & (kind == 0)

    # bursty: m distinct classes, B copies each in shuffled slots, the query one of them
    distinct = _distinct(keys[1], N, m, known)
    distinct = jnp.where(is_novel, -1 - jnp.arange(N, dtype=jnp.int32), distinct)
    own = jnp.where(distinct >= 0, distinct % L, -1)
    fresh_labels = is_novel | (kind == 2) | relabel
    drawn = _distinct(
        keys[2],
        N,
        m,
        lambda pair: jnp.minimum((pair[0] * L).astype(jnp.int32), L - 1),
        also_bad=lambda j, lab: (kind == 2) & (lab == own[j]),
    )
    group_label = jnp.where(fresh_labels, drawn, own)
    query_group = jnp.minimum((u[2] * m).astype(jnp.int32), m - 1)
    slot_group = jnp.argsort(u_perm) // B  # a uniform shuffle of the N slots; slot s holds group order[s] // B
    b_classes = jnp.append(distinct[slot_group], distinct[query_group])
    b_labels = jnp.append(group_label[slot_group], group_label[query_group])

    # i.i.d.: every slot from the class law; under iwl the context avoids the query's class
    if kind == 3:
        qc = known(u_iid[N])
        ctx = jax.vmap(lambda s: _draw_until(keys[3], known, lambda c: c == qc, s, N))(jnp.arange(N))
        i_classes = jnp.append(ctx, qc)
    else:
        i_classes = known(u_iid)
    # per-sequence labels: a label per distinct class, drawn at its first slot and reused at its later copies
    first = jnp.argmax(i_classes[None, :] == i_classes[:, None], axis=1)
    per_slot = jnp.minimum((u_label * L).astype(jnp.int32), L - 1)
    i_labels = jnp.where(relabel, per_slot[first], i_classes % L)

    classes = jnp.where(is_bursty, b_classes, i_classes)
    labels = jnp.where(is_bursty, b_labels, i_labels)
    # items: (mean + eps sd z) / sqrt(1 + eps^2); a novel class's mean is fresh for each sequence
    sd = 1.0 / jnp.sqrt(jnp.float32(D))
    z = jax.random.normal(keys[4], (2 * N + 1, D))
    novel_means, noise = z[:N] * sd, z[N:]
    known_mu = prm["means"][jnp.maximum(classes, 0)]
    mu = jnp.where((classes >= 0)[:, None], known_mu, novel_means[jnp.maximum(-1 - classes, 0)])
    items = (mu + prm["eps"] * sd * noise) / jnp.sqrt(1.0 + prm["eps"] ** 2)
    return {"items": items, "labels": labels, "classes": classes, "bursty": is_bursty, "novel": is_novel}


def sample_classification(
    key: jax.Array, prm: dict[str, Any], *, N: int, L: int, batch: int, kind: str = "train"
) -> dict[str, jax.Array]:
    """A batch of in-context classification sequences drawn on the device (jit-able; N, L, batch, kind static).

    Args:
        key: a PRNG key.
        prm: one model's :func:`classification_params` (numpy or JAX arrays).
        N: context pairs; L: labels; batch: sequences.
        kind: ``train``, ``icl``, ``swap`` or ``iwl`` (:data:`theory.samplers.EVAL_KINDS`).

    Returns:
        ``items`` (batch, N+1, D) float32, ``labels`` and ``classes`` (batch, N+1) int32, ``bursty`` and ``novel``
        (batch,) bool, with the meanings of :class:`theory.samplers.ClassificationBatch`.
    """
    if kind not in EVAL_KINDS:
        raise ValueError(f"kind = {kind!r} is not allowed: kind must be one of {EVAL_KINDS}")
    code = EVAL_KINDS.index(kind)
    prm = jax.tree_util.tree_map(jnp.asarray, prm)
    return jax.vmap(lambda k: _classification_one(k, prm, N, L, code))(jax.random.split(key, batch))


# --- token streams -----------------------------------------------------------------------------------------------
def token_params(task: TokenStreamTask, n_max: int | None = None) -> dict[str, Any]:
    """One model's token-stream sampler parameters (numpy), triggers padded to ``n_max`` slots (None: n_triggers;
    at least one slot, so that the arrays are never empty)."""
    n_max = task.n_triggers if n_max is None else n_max
    if n_max < task.n_triggers:
        raise ValueError(f"n_max = {n_max} is below n_triggers = {task.n_triggers}")
    uniform = Zipf(task.V, 0.0).probs()
    law = {"zipf": task.zipf.probs(), "uniform": uniform}
    out: dict[str, Any] = {"n_triggers": np.int32(task.n_triggers), "slots": np.arange(max(n_max, 1), dtype=np.int32)}
    for name, probs in (("bg", task.zipf.probs()), ("trig", law[task.trigger_dist]), ("out", law[task.output_dist])):
        out[f"{name}_accept"], out[f"{name}_alias"] = alias_table(probs)
    return out


def _token_one(key: jax.Array, prm: dict[str, jax.Array], T: int, n_max: int) -> dict[str, jax.Array]:
    V = prm["bg_accept"].shape[0]
    n = prm["n_triggers"]
    keys = jax.random.split(key, 3)

    def law(name):
        return lambda pair: _alias(pair, prm[f"{name}_accept"], prm[f"{name}_alias"], jnp.int32(V))

    triggers = _distinct(keys[0], n_max, n, law("trig"))
    triggers = jnp.where(jnp.arange(n_max) < n, triggers, -1)
    outputs = jax.vmap(lambda j: _draw_until(keys[1], law("out"), lambda c: jnp.any(triggers == c), j, n_max))(
        jnp.arange(n_max)
    )
    outputs = jnp.where(triggers >= 0, outputs, -1)
    background = law("bg")(jax.random.uniform(keys[2], (T, 2)))

    def position(carry, t):
        prev, first_seen = carry  # prev: the trigger index of the last token (-1: none)
        forced = prev >= 0
        tok = jnp.where(forced, outputs[jnp.maximum(prev, 0)], background[t])
        induction = forced & (first_seen[jnp.maximum(prev, 0)] < t - 1)
        hit = triggers == tok
        new_prev = jnp.where(jnp.any(hit), jnp.argmax(hit), -1)
        first_seen = jnp.where(hit & (first_seen < 0), t, first_seen)
        return (new_prev, first_seen), (tok, induction)

    zero = _zero(key)
    init = (zero - 1, jnp.full((n_max,), -1, jnp.int32) + zero)
    _, (tokens, induction) = jax.lax.scan(position, init, jnp.arange(T, dtype=jnp.int32))
    return {"tokens": tokens, "triggers": triggers, "outputs": outputs, "induction": induction}


def sample_token_streams(key: jax.Array, prm: dict[str, Any], *, T: int, batch: int) -> dict[str, jax.Array]:
    """A batch of token streams with triggers drawn on the device (jit-able; T and batch static).

    Returns:
        ``tokens`` (batch, T) int32, ``triggers`` and ``outputs`` (batch, max(n_max, 1)) int32 (-1 past the
        model's n_triggers), ``induction`` (batch, T) bool, with the meanings of :class:`theory.samplers.TokenBatch`.
    """
    prm = jax.tree_util.tree_map(jnp.asarray, prm)
    n_max = prm["slots"].shape[-1]  # static: the padded trigger count is an array's length
    return jax.vmap(lambda k: _token_one(k, prm, T, n_max))(jax.random.split(key, batch))
