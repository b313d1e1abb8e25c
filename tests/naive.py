"""Plain-Python reference twins of :mod:`theory._rng`, the Numba kernels of :mod:`theory.samplers`, and (last) the
reduced models' integrator.

Everything here is written for clarity, not speed: uint64 arithmetic is done on Python ints masked to 64 bits,
the transcendental functions come from :mod:`math`, and each sequence is built with lists. Every twin draws its
random numbers in exactly the order of the Numba kernel, so the outputs must be identical (float items up to
the last ulp of libm). numpy is used only to turn the finished lists into arrays of the wrappers' dtypes.

The inverse-CDF tables themselves (``Zipf.cdf()``) are inputs of the kernels, not part of them, so the twins
take them from :mod:`theory.distributions` as the wrappers do.
"""

from __future__ import annotations

import bisect
import itertools
import math
from typing import NamedTuple

import numpy as np

from zipfhead.theory._rng import ZIG_F, ZIG_K, ZIG_R, ZIG_W
from zipfhead.theory.distributions import ClassificationTask, MarkovTask, TokenStreamTask, Zipf

MASK64 = 0xFFFFFFFFFFFFFFFF
GOLDEN = 0x9E3779B97F4A7C15
M1 = 0xBF58476D1CE4E5B9
M2 = 0x94D049BB133111EB
TWO_M53 = 2.0**-53

NOVEL_SALT = 0x6E6F76656C6D7573
KINDS = ("train", "icl", "swap", "iwl")


# --------------------------------------------------------------------------------------------------------------
# The generator (SplitMix64, counter based). A state is a Python int in [0, 2^64).
# --------------------------------------------------------------------------------------------------------------


def mix64(z: int) -> int:
    """SplitMix64's finaliser on a 64-bit int."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * M1) & MASK64
    z = ((z ^ (z >> 27)) * M2) & MASK64
    return z ^ (z >> 31)


def stream(seed: int, index: int) -> int:
    """Initial state of stream ``index`` under ``seed`` (both taken mod 2^64)."""
    return mix64(mix64((seed + GOLDEN) & MASK64) ^ ((index * GOLDEN) & MASK64))


def next_u64(state: int) -> tuple[int, int]:
    """Advance the counter by the golden gamma and return (new state, its mix)."""
    state = (state + GOLDEN) & MASK64
    return state, mix64(state)


def uniform(state: int) -> tuple[int, float]:
    """A float in [0, 1): the top 53 bits of a draw, times 2^-53 (exact)."""
    state, z = next_u64(state)
    return state, float(z >> 11) * TWO_M53


def randint(state: int, n: int) -> tuple[int, int]:
    """An int in [0, n): floor(u * n), clipped to n - 1."""
    state, u = uniform(state)
    return state, min(int(u * n), n - 1)


def _signed_draw(state: int) -> tuple[int, float, int]:
    """hz uniform on the integers of [-2^52, 2^52) (bits 11..63) and a layer index iz (bits 0..6)."""
    state, z = next_u64(state)
    return state, float(z >> 11) - 2.0**52, z & 127


def normal(state: int) -> tuple[int, float]:
    """A standard normal by the 128-layer ziggurat (tables from zipfhead.theory._rng, an input like a CDF table)."""
    state, hz, iz = _signed_draw(state)
    while True:
        if abs(hz) < ZIG_K[iz]:  # inside the layer's rectangle: accept
            return state, hz * ZIG_W[iz]
        x = hz * ZIG_W[iz]
        if iz == 0:  # base layer, beyond the edge R: exponential rejection from the tail
            while True:
                state, u1 = uniform(state)
                state, u2 = uniform(state)
                x = -math.log(1.0 - u1) / ZIG_R
                y = -math.log(1.0 - u2)
                if y + y >= x * x:
                    break
            return state, (ZIG_R + x) if hz > 0 else -(ZIG_R + x)
        state, u = uniform(state)
        if ZIG_F[iz] + u * (ZIG_F[iz - 1] - ZIG_F[iz]) < math.exp(-0.5 * x * x):  # under the density
            return state, x
        state, hz, iz = _signed_draw(state)


def categorical(state: int, cdf: list[float]) -> tuple[int, int]:
    """The first index k with u < cdf[k] (``bisect_right`` finds it in a non-decreasing table)."""
    state, u = uniform(state)
    return state, bisect.bisect_right(cdf, u)


def draw_distinct(state: int, cdf: list[float], taken: list[int]) -> tuple[int, int]:
    """Draw from ``cdf`` until the result is not in ``taken`` (one categorical draw per try)."""
    while True:
        state, c = categorical(state, cdf)
        if c not in taken:
            return state, c


# --------------------------------------------------------------------------------------------------------------
# Classification.
# --------------------------------------------------------------------------------------------------------------


class NaiveClassificationBatch(NamedTuple):
    """Same fields, shapes and dtypes as :class:`theory.samplers.ClassificationBatch`."""

    items: np.ndarray | None
    labels: np.ndarray
    classes: np.ndarray
    bursty: np.ndarray
    novel: np.ndarray


def naive_class_means(task: ClassificationTask, seed: int) -> np.ndarray:
    """Twin of ``class_means``: row k is D normals from ``stream(seed, k)``, times 1/sqrt(D), as float32."""
    K, D = task.K, task.D
    sd = 1.0 / math.sqrt(D)
    rows = []
    for k in range(K):
        state = stream(seed, k)
        row: list[float] = []
        for _ in range(D):
            state, z = normal(state)
            row.append(z * sd)
        rows.append(row)
    return np.array(rows, dtype=np.float32).reshape(K, D)


def _bursty_context(state, task, kind, is_novel, cdf):
    """The m = N/B distinct (class, label) pairs, the query's pair, and the shuffled context of N pairs."""
    N, B, L = task.N, task.B, task.L
    m = N // B
    classes: list[int] = []
    labels: list[int] = []
    for j in range(m):
        if is_novel:
            c = -1 - j
        else:
            state, c = draw_distinct(state, cdf, classes)
        relabel = kind == "train" and task.label_map == "per_sequence"
        if is_novel or kind == "swap" or relabel:
            # Fresh labels, distinct within the sequence; under swap also not the class's own label.
            while True:
                state, lab = randint(state, L)
                if lab not in labels and not (kind == "swap" and lab == c % L):
                    break
        else:
            lab = c % L
        classes.append(c)
        labels.append(lab)
    state, qj = randint(state, m)
    query = (classes[qj], labels[qj])
    # B consecutive copies of each pair, then a Fisher-Yates shuffle of the N context positions.
    context = [(classes[s // B], labels[s // B]) for s in range(N)]
    for s in range(N - 1, 0, -1):
        state, r = randint(state, s + 1)
        context[s], context[r] = context[r], context[s]
    return state, context, query


def _classification_sequence(task, means, cdf, kind, seed, index, with_items):
    """One sequence: (classes, labels, bursty, novel, items), items a list of N+1 rows (empty if not asked)."""
    N, L, D = task.N, task.L, task.D
    state = stream(seed, index)
    state, u_novel = uniform(state)
    state, u_burst = uniform(state)  # drawn for every kind, used by train only
    if kind == "train":
        is_novel = u_novel < task.p_C
        is_bursty = is_novel or u_burst < task.p_B
    else:
        is_novel = kind == "icl"
        is_bursty = kind != "iwl"

    if is_bursty:
        state, context, query = _bursty_context(state, task, kind, is_novel, cdf)
        classes = [c for c, _ in context] + [query[0]]
        labels = [lab for _, lab in context] + [query[1]]
    else:
        classes = []
        if kind == "iwl":
            state, qc = categorical(state, cdf)  # the query first, then a context avoiding its class
            for _ in range(N):
                while True:
                    state, c = categorical(state, cdf)
                    if c != qc:
                        break
                classes.append(c)
            classes.append(qc)
        else:
            for _ in range(N + 1):
                state, c = categorical(state, cdf)
                classes.append(c)
        if kind == "train" and task.label_map == "per_sequence":
            drawn: dict[int, int] = {}  # this sequence's label of each class, drawn at its first copy
            labels = []
            for c in classes:
                if c not in drawn:
                    state, drawn[c] = randint(state, L)
                labels.append(drawn[c])
        else:
            labels = [c % L for c in classes]

    items: list[list[float]] = []
    if with_items:
        sd = 1.0 / math.sqrt(D)
        scale = 1.0 / math.sqrt(1.0 + task.eps * task.eps)
        for c in classes:
            if c < 0:
                # A novel class's mean comes from its own stream, restarted for every copy.
                mean_state = stream(stream(seed ^ NOVEL_SALT, index), -1 - c)
            row: list[float] = []
            for d in range(D):
                if c < 0:
                    mean_state, mu = normal(mean_state)
                    mu *= sd
                else:
                    mu = means[c][d]
                state, z = normal(state)
                row.append((mu + task.eps * sd * z) * scale)
            items.append(row)
    return classes, labels, is_bursty, is_novel, items


def naive_sample_classification(
    task: ClassificationTask,
    means: np.ndarray,
    n_seqs: int,
    seed: int,
    kind: str = "train",
    offset: int = 0,
    with_items: bool = True,
) -> NaiveClassificationBatch:
    """Twin of ``sample_classification`` (no input validation): sequence i uses ``stream(seed, offset + i)``."""
    if kind not in KINDS:
        raise ValueError(f"kind = {kind!r}: expected one of {KINDS}")
    cdf = task.zipf.cdf().tolist()
    mean_rows = np.asarray(means, dtype=np.float32).tolist()  # float32 -> Python float is exact
    rows = [_classification_sequence(task, mean_rows, cdf, kind, seed, offset + i, with_items) for i in range(n_seqs)]
    classes = np.array([r[0] for r in rows], dtype=np.int32).reshape(n_seqs, task.N + 1)
    labels = np.array([r[1] for r in rows], dtype=np.int32).reshape(n_seqs, task.N + 1)
    bursty = np.array([r[2] for r in rows], dtype=np.bool_)
    novel = np.array([r[3] for r in rows], dtype=np.bool_)
    items = None
    if with_items:
        items = np.array([r[4] for r in rows], dtype=np.float32).reshape(n_seqs, task.N + 1, task.D)
    return NaiveClassificationBatch(items, labels, classes, bursty, novel)


def naive_sample_classes(
    task: ClassificationTask, n_seqs: int, seed: int, kind: str = "train", offset: int = 0
) -> NaiveClassificationBatch:
    """Twin of ``sample_classes``: class ids and labels only."""
    means = np.zeros((task.K, task.D), dtype=np.float32)
    return naive_sample_classification(task, means, n_seqs, seed, kind, offset=offset, with_items=False)


# --------------------------------------------------------------------------------------------------------------
# Token streams and repeated tokens.
# --------------------------------------------------------------------------------------------------------------


class NaiveTokenBatch(NamedTuple):
    """Same fields, shapes and dtypes as :class:`theory.samplers.TokenBatch`."""

    tokens: np.ndarray
    triggers: np.ndarray
    outputs: np.ndarray
    induction: np.ndarray


def _dist_cdf(V: int, dist: str, zipf: Zipf) -> list[float]:
    """The table a trigger or output is drawn from: the task's Zipf marginal, or uniform over V."""
    return (zipf.cdf() if dist == "zipf" else Zipf(V, 0.0).cdf()).tolist()


def _token_sequence(task, cdf, trigger_cdf, output_cdf, seed, index):
    """One stream: (tokens, triggers, outputs, induction) as lists."""
    n = task.n_triggers
    state = stream(seed, index)
    triggers: list[int] = []
    for _ in range(n):
        state, c = draw_distinct(state, trigger_cdf, triggers)
        triggers.append(c)
    outputs: list[int] = []
    for _ in range(n):
        state, c = draw_distinct(state, output_cdf, triggers)  # outputs avoid the triggers (not each other)
        outputs.append(c)
    output_of = dict(zip(triggers, outputs, strict=True))

    tokens: list[int] = []
    induction: list[bool] = []
    seen_before_prev: set[int] = set()  # tokens at positions < t - 1
    for t in range(task.T):
        prev = tokens[t - 1] if t > 0 else None
        if prev in output_of:
            tokens.append(output_of[prev])
            induction.append(prev in seen_before_prev)
        else:
            state, tok = categorical(state, cdf)
            tokens.append(tok)
            induction.append(False)
        if t > 0:
            seen_before_prev.add(prev)
    return tokens, triggers, outputs, induction


def naive_sample_token_streams(task: TokenStreamTask, n_seqs: int, seed: int, offset: int = 0) -> NaiveTokenBatch:
    """Twin of ``sample_token_streams``: sequence i uses ``stream(seed, offset + i)``."""
    zipf = task.zipf
    cdf = zipf.cdf().tolist()
    trigger_cdf = _dist_cdf(task.V, task.trigger_dist, zipf)
    output_cdf = _dist_cdf(task.V, task.output_dist, zipf)
    rows = [_token_sequence(task, cdf, trigger_cdf, output_cdf, seed, offset + i) for i in range(n_seqs)]
    n, T = task.n_triggers, task.T
    return NaiveTokenBatch(
        np.array([r[0] for r in rows], dtype=np.int32).reshape(n_seqs, T),
        np.array([r[1] for r in rows], dtype=np.int32).reshape(n_seqs, n),
        np.array([r[2] for r in rows], dtype=np.int32).reshape(n_seqs, n),
        np.array([r[3] for r in rows], dtype=np.bool_).reshape(n_seqs, T),
    )


def naive_sample_repeated_tokens(V: int, R: int, n_seqs: int, seed: int, offset: int = 0) -> np.ndarray:
    """Twin of ``sample_repeated_tokens``: R uniform tokens from ``stream(seed, offset + i)``, then the same R."""
    rows = []
    for i in range(n_seqs):
        state = stream(seed, offset + i)
        half = []
        for _ in range(R):
            state, c = randint(state, V)
            half.append(c)
        rows.append(half + half)
    return np.array(rows, dtype=np.int32).reshape(n_seqs, 2 * R)


# --- reduced model of induction-head formation (theory.reduced) ---------------------------------------------
def reduced_case_loss(a, b, c, w, s, m, n, r, n_o, M):
    """One case's cross-entropy, written from the model's definition (softmax over the L labels)."""
    x = s * a * b
    Z = m * math.exp(x) + n - m
    z_star = c * m * math.exp(x) / Z + w
    z_o = c * r / Z
    logits = [z_star] + [z_o] * round(n_o) + [0.0] * round(M)
    top = max(logits)
    return -(z_star - top) + math.log(sum(math.exp(z - top) for z in logits))


def reduced_case_curvature(a, b, c, w, s, m, n, r, n_o, M):
    """1 - sum_l P_l^2 of the same softmax."""
    x = s * a * b
    Z = m * math.exp(x) + n - m
    logits = [c * m * math.exp(x) / Z + w] + [c * r / Z] * round(n_o) + [0.0] * round(M)
    top = max(logits)
    e = [math.exp(z - top) for z in logits]
    tot = sum(e)
    return 1.0 - sum((v / tot) ** 2 for v in e)


def reduced_objective(y, table, bin_size, s, iw_rate, inv_cap):
    """Expected loss + interference cost R = inv_cap / 2 * S * Q of state y = (a, b, c, w_1..w_G), per class w's."""
    a, b, c = y[0], y[1], y[2]
    loss = 0.0
    Q = 0.0
    for weight, m, n, r, n_o, M, g in table:
        if weight == 0:
            continue
        w = y[3 + int(g)] if g >= 0 else 0.0
        loss += weight * reduced_case_loss(a, b, c, w, s, m, n, r, n_o, M)
        Q += weight * reduced_case_curvature(a, b, c, w, s, m, n, r, n_o, M)
    S = sum(bin_size[g] * y[3 + g] ** 2 / iw_rate for g in range(len(bin_size)))
    return loss + 0.5 * inv_cap * S * Q


def reduced_flow(y, table, bin_size, s, iw_rate, inv_cap, rho, wd, h=1e-6):
    """The flow by central finite differences of :func:`reduced_objective` (no sympy): d(a, b, c)/dt = -grad -
    wd_c (a, b, c), and per class dw/dt = rho * iw_rate * (-(1 / n_g) d objective / d w_g) - wd_w w_g, where wd is
    one decay for all, or the pair (wd_c, wd_w)."""
    wd_c, wd_w = (wd, wd) if np.isscalar(wd) else wd
    out = []
    for p in range(len(y)):
        up = list(y)
        dn = list(y)
        up[p] += h
        dn[p] -= h
        grad = (
            reduced_objective(up, table, bin_size, s, iw_rate, inv_cap)
            - reduced_objective(dn, table, bin_size, s, iw_rate, inv_cap)
        ) / (2 * h)
        if p < 3:
            out.append(-grad - wd_c * y[p])
        else:
            out.append(rho * iw_rate * (-grad / bin_size[p - 3]) - wd_w * y[p])
    return out


def reduced_integrate(y0, table, bin_size, s, iw_rate, inv_cap, rho, wd, t_end, n_steps):
    """Classical fixed-step RK4 of :func:`reduced_flow` from 0 to t_end; returns the final state."""
    y = list(y0)
    dt = t_end / n_steps
    for _ in range(n_steps):
        k1 = reduced_flow(y, table, bin_size, s, iw_rate, inv_cap, rho, wd)
        k2 = reduced_flow(
            [v + dt / 2 * k for v, k in zip(y, k1, strict=True)], table, bin_size, s, iw_rate, inv_cap, rho, wd
        )
        k3 = reduced_flow(
            [v + dt / 2 * k for v, k in zip(y, k2, strict=True)], table, bin_size, s, iw_rate, inv_cap, rho, wd
        )
        k4 = reduced_flow(
            [v + dt * k for v, k in zip(y, k3, strict=True)], table, bin_size, s, iw_rate, inv_cap, rho, wd
        )
        y = [v + dt / 6 * (p + 2 * q + 2 * u + z) for v, p, q, u, z in zip(y, k1, k2, k3, k4, strict=True)]
    return y


# --------------------------------------------------------------------------------------------------------------
# In-context Markov chains.
# --------------------------------------------------------------------------------------------------------------


def gamma_log(state: int, a: float) -> tuple[int, float]:
    """log of a Gamma(a, 1) draw: Marsaglia and Tsang's squeeze-free acceptance test; for a < 1 the draw is
    Gamma(a + 1) times U^(1/a), kept in logs."""
    boost = 0.0
    if a < 1.0:
        state, u = uniform(state)
        boost = math.log(1.0 - u) / a
        a = a + 1.0
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    while True:
        state, x = normal(state)
        v = 1.0 + c * x
        if v <= 0.0:
            continue
        v = v * v * v
        state, u = uniform(state)
        if math.log(1.0 - u) < 0.5 * x * x + d - d * v + d * math.log(v):
            return state, boost + math.log(d * v)


def naive_sample_markov(task: MarkovTask, n_seqs: int, seed: int, offset: int = 0) -> np.ndarray:
    """Twin of :func:`theory.markov.sample_markov`: every row a Dirichlet draw as a CDF, then the chain."""
    weights = (task.beta * task.base.probs()).tolist()
    base_cdf = task.base.cdf().tolist()
    out = []
    for i in range(n_seqs):
        state = stream(seed, offset + i)
        rows = []
        for _ in range(task.k):
            logs = []
            for a in weights:
                state, g = gamma_log(state, a)
                logs.append(g)
            top = max(logs)
            e = [math.exp(g - top) for g in logs]
            total = sum(e)
            cdf, acc = [], 0.0
            for v in e:
                acc += v / total
                cdf.append(acc)
            cdf[-1] = 1.0
            rows.append(cdf)
        state, x = categorical(state, base_cdf)
        seq = [x]
        for _ in range(task.T - 1):
            state, u = uniform(state)
            x = min(bisect.bisect_right(rows[x], u), task.k - 1)
            seq.append(x)
        out.append(seq)
    return np.array(out, dtype=np.int32).reshape(n_seqs, task.T)


def naive_predictor_losses(tokens: np.ndarray, task: MarkovTask) -> np.ndarray:
    """Twin of :func:`theory.markov.predictor_losses`, by the definitions: counts kept in dicts."""
    p = task.base.probs().tolist()
    S, T = tokens.shape
    out = np.zeros((S, 3, T - 1))
    for s in range(S):
        seq = [int(v) for v in tokens[s]]
        for t in range(T - 1):
            seen, nxt, cur = seq[: t + 1], seq[t + 1], seq[t]
            pairs = list(itertools.pairwise(seen))
            n_j = seen.count(nxt)
            c_ij = pairs.count((cur, nxt))
            c_i = sum(1 for a, _ in pairs if a == cur)
            out[s, 0, t] = math.log(task.k)
            out[s, 1, t] = -math.log((n_j + task.beta * p[nxt]) / (len(seen) + task.beta))
            out[s, 2, t] = -math.log((c_ij + task.beta * p[nxt]) / (c_i + task.beta))
    return out


# ---------------------------------------------------------------------------------------------------------------
# The reduced models' integrator (theory.ode).


def rk4(
    drift, y0: np.ndarray, data: np.ndarray, prm: np.ndarray, t_end: float, n_steps: int, scratch: int = 0
) -> np.ndarray:
    """Twin of :func:`theory.ode.integrate_cells` at one time: ``n_steps`` classical fixed-step RK4 steps of
    ``drift(y, data, prm, out)`` from y0 to t_end, in plain numpy (``out`` of max(scratch, P) entries)."""
    y = np.asarray(y0, dtype=np.float64).copy()
    P = y.size
    h = t_end / n_steps
    buf = [np.zeros(max(scratch, P)) for _ in range(4)]
    k = [b[:P] for b in buf]
    for _ in range(n_steps):
        drift(y, data, prm, buf[0])
        drift(y + 0.5 * h * k[0], data, prm, buf[1])
        drift(y + 0.5 * h * k[1], data, prm, buf[2])
        drift(y + h * k[2], data, prm, buf[3])
        y = y + h / 6 * (k[0] + 2 * k[1] + 2 * k[2] + k[3])
    return y


def naive_stream_gain(task: TokenStreamTask, prior_contexts: float) -> float:
    """zipfhead.theory.reduced_markov.stream_gain written as its formula, one term at a time (loops and math.comb)."""
    V, T, n = task.V, task.T, task.n_triggers
    p = [float(v) for v in task.zipf.probs()]
    beta = prior_contexts * T
    rate = [v / (1.0 + v) for v in p]

    def pmf(k: int, m: int, q: float) -> float:
        return math.comb(m, k) * q**k * (1.0 - q) ** (m - k)

    total = 0.0
    for t in range(1, T):
        for i in range(V):
            pi = 1.0 / V if task.trigger_dist == "uniform" else p[i]
            weights = [0.0 if o == i else (1.0 if task.output_dist == "uniform" else p[o]) for o in range(V)]
            norm = sum(weights)
            value = 0.0
            for o in range(V):
                if weights[o] == 0.0:
                    continue
                for N in range(1, t):
                    for B in range(t):
                        share = N / (N + B + beta * p[o]) - N / (t + beta)
                        value += weights[o] / norm * pmf(N, t - 1, rate[i]) * pmf(B, t - 1, p[o]) * share
            total += pi * rate[i] * value
    return n * total / (T - 1)
