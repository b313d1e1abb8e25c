"""The data families of zipfhead: frozen, validated configs named with the papers' symbols.

Glossary (the one place the symbols are defined; every module and CLI flag uses them as spelled here)
-----------------------------------------------------------------------------------------------------
Zipf distribution
    K      number of ranks (classes or tokens), ranks k = 1..K; rank 1 is the most frequent.
    alpha  Zipf exponent, alpha >= 0 (0 is uniform).
    q      Zipf-Mandelbrot shift, q >= 0:  p_k = (k + q)^(-alpha) / Z,  Z = sum_k (k + q)^(-alpha).

In-context classification (Reddy 2024, arXiv 2312.03002; Chan et al. 2022, arXiv 2205.05055)
    K      number of classes, drawn with Zipf(alpha, q) frequencies.
    N      number of item-label pairs in the context; a sequence is x_1 l_1 ... x_N l_N x_q.
    D      item dimension. Class means mu_k ~ N(0, I/D); an item of class k is
           x = (mu_k + eps * eta) / sqrt(1 + eps^2) with eta ~ N(0, I/D).
    L      number of labels; class k (0-based rank index) carries label k mod L.
    B      burstiness: a bursty context holds N/B distinct classes, each B times, and the query's class is one
           of them. B divides N.
    p_B    fraction of bursty sequences; the others have i.i.d. Zipf context classes and an i.i.d. Zipf query.
    p_C    fraction of sequences made of novel classes (fresh means, fresh distinct labels), always bursty:
           they can only be solved in context.
    eps    within-class noise.
    label_map  how a known class gets its label in training sequences: ``fixed`` (class k carries label k mod L
           in every sequence: learnable in weights) or ``per_sequence`` (each sequence draws its classes' labels
           afresh, as for novel classes: the items still recur across sequences, the labels carry nothing between
           them, so only the in-context path can solve it). Evaluation sets are unchanged.

Token streams (Bietti et al. 2023, arXiv 2306.00802, with a parametric marginal)
    V      vocabulary size; background tokens are i.i.d. Zipf(alpha, q) over V.
    T      sequence length.
    n_triggers   trigger tokens per sequence, drawn distinct from ``trigger_dist``; each trigger is always
           followed by its sequence-specific output token, drawn from ``output_dist`` among the non-triggers.

In-context Markov chains (Edelman et al. 2024, arXiv 2402.11004, with a parametric base measure)
    k      number of states.
    T      sequence length.
    beta   Dirichlet concentration: each sequence draws its transition matrix P row by row from
           Dirichlet(beta p), p = Zipf(k, alpha, q) the base measure (Edelman's Dirichlet(1) rows are alpha = 0,
           beta = k). The first state is drawn from p; then x_(t+1) ~ P[x_t].

In-weights memorisation (theory)
    c      memorisation rate: class k is absorbed at rate c * p_k per unit of training time t.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Self

import numpy as np

from zipfhead.theory._validate import check_choice, check_int, check_real

__all__ = ["ClassificationTask", "MarkovTask", "TokenStreamTask", "Zipf", "config_from_dict"]

# Upper bound on K and V: the statistics are documented and tested up to 10^7; 10^8 still fits in memory.
MAX_RANKS = 10**8
MAX_ALPHA = 16.0


class _Config:
    """JSON round trip shared by the configs (``to_dict`` / ``from_dict`` / ``to_json``)."""

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain dict, with a ``kind`` key naming its class."""
        return {"kind": type(self).__name__, **dataclasses.asdict(self)}  # type: ignore[call-overload]

    def to_json(self) -> str:
        """The config as one JSON object (see :meth:`to_dict`)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build and validate a config from :meth:`to_dict`'s output; unknown keys are an error."""
        data = dict(data)
        kind = data.pop("kind", cls.__name__)
        if kind != cls.__name__:
            raise ValueError(f"kind = {kind!r} is not allowed here: expected {cls.__name__!r}")
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown} for {cls.__name__}: allowed are {sorted(names)}")
        return cls(**data)


@dataclass(frozen=True)
class Zipf(_Config):
    """Zipf-Mandelbrot distribution over ranks k = 1..K: p_k = (k + q)^(-alpha) / Z.

    Args:
        K: number of ranks, 1 <= K <= 10^8.
        alpha: exponent, 0 <= alpha <= 16 (0 is uniform).
        q: shift, 0 <= q <= 10^6.
    """

    K: int
    alpha: float = 1.0
    q: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "K", check_int("K", self.K, 1, MAX_RANKS))
        object.__setattr__(self, "alpha", check_real("alpha", self.alpha, 0.0, MAX_ALPHA))
        object.__setattr__(self, "q", check_real("q", self.q, 0.0, 1e6))

    def probs(self) -> np.ndarray:
        """p_k for k = 1..K, shape (K,), float64, summing to 1 (rank k is index k - 1)."""
        logw = -self.alpha * np.log(np.arange(1, self.K + 1, dtype=np.float64) + self.q)
        w = np.exp(logw - logw.max())
        return w / w.sum()

    def rank_bins(self, max_bins: int) -> tuple[np.ndarray, np.ndarray]:
        """The ranks grouped into bins geometric in rank, as the reduced models tabulate them: (sizes (G,), masses
        (G,)), float64, the number of ranks and the probability in each bin; one rank per bin when K <= max_bins,
        else at most max_bins bins. Sizes sum to K, masses to 1."""
        check_int("max_bins", max_bins, 1)
        if self.K <= max_bins:
            edges = np.arange(1, self.K + 2)
        else:
            edges = np.unique(np.round(np.geomspace(1, self.K + 1, max_bins + 1)).astype(np.int64))
        cum = np.concatenate([[0.0], np.cumsum(self.probs())])
        return np.diff(edges).astype(np.float64), cum[edges[1:] - 1] - cum[edges[:-1] - 1]

    def cdf(self) -> np.ndarray:
        """Cumulative probabilities, shape (K,), float64, last entry exactly 1 (the samplers' inverse-CDF table)."""
        c = np.cumsum(self.probs())
        c /= c[-1]
        c[-1] = 1.0
        return c


LABEL_MAPS = ("fixed", "per_sequence")


@dataclass(frozen=True)
class ClassificationTask(_Config):
    """In-context classification task (Reddy 2024; Chan et al. 2022). Symbols: see the module glossary.

    The defaults are a language-like setting: Reddy's sizes (N = 8, D = 63, L = 32), a Zipf(1) class
    distribution and a mostly bursty stream (p_B = 0.9, Chan et al.'s value).

    Args:
        K: number of classes, 2 <= K <= 10^8.
        N: item-label pairs in a context.
        D: item dimension.
        L: number of labels; class k carries label k mod L.
        B: burstiness: copies of each class in a bursty context; divides N.
        p_B: fraction of bursty sequences.
        p_C: fraction of novel-class sequences.
        eps: within-class noise.
        alpha: Zipf exponent, >= 0.
        q: Zipf-Mandelbrot shift, >= 0.
        label_map: known classes' labels: fixed (k mod L) or per_sequence (redrawn each sequence).
    """

    K: int = 512
    N: int = 8
    D: int = 63
    L: int = 32
    B: int = 2
    p_B: float = 0.9
    p_C: float = 0.0
    eps: float = 0.1
    alpha: float = 1.0
    q: float = 0.0
    label_map: str = "fixed"

    def __post_init__(self) -> None:
        # K >= 2: the in-weights evaluation needs a class other than the query's for the context.
        set_ = object.__setattr__
        set_(self, "K", check_int("K", self.K, 2, MAX_RANKS))
        set_(self, "N", check_int("N", self.N, 1, 4096))
        set_(self, "D", check_int("D", self.D, 1, 65536))
        set_(self, "L", check_int("L", self.L, 2, 2**31 - 1))
        set_(self, "B", check_int("B", self.B, 1, self.N))
        if self.N % self.B:
            divisors = [b for b in range(1, self.N + 1) if self.N % b == 0]
            raise ValueError(f"B = {self.B} does not divide N = {self.N}: B must be one of {divisors}")
        set_(self, "p_B", check_real("p_B", self.p_B, 0.0, 1.0))
        set_(self, "p_C", check_real("p_C", self.p_C, 0.0, 1.0))
        set_(self, "eps", check_real("eps", self.eps, 0.0, 1e6))
        set_(self, "alpha", check_real("alpha", self.alpha, 0.0, MAX_ALPHA))
        set_(self, "q", check_real("q", self.q, 0.0, 1e6))
        set_(self, "label_map", check_choice("label_map", self.label_map, LABEL_MAPS))
        m = self.N // self.B
        if m > self.K:
            raise ValueError(
                f"N/B = {m} classes per bursty context exceeds K = {self.K}: "
                f"B must be at least N/K = {self.N / self.K:g}"
            )
        if m > self.L:
            raise ValueError(
                f"N/B = {m} distinct labels per novel-class context exceeds L = {self.L}: L must be at least N/B = {m}"
            )

    @property
    def classes_per_burst(self) -> int:
        """N/B, the number of distinct classes in a bursty context."""
        return self.N // self.B

    @property
    def zipf(self) -> Zipf:
        """The class distribution Zipf(K, alpha, q)."""
        return Zipf(self.K, self.alpha, self.q)


TOKEN_DISTS = ("zipf", "uniform")


@dataclass(frozen=True)
class TokenStreamTask(_Config):
    """Token streams with triggers (Bietti et al. 2023) over a Zipf(alpha, q) marginal on V tokens.

    Background tokens are i.i.d. from the marginal (Bietti uses a bigram model; here the marginal is parametric).
    Each sequence draws ``n_triggers`` distinct trigger tokens from ``trigger_dist`` and, for each, an output
    token from ``output_dist`` restricted to the non-triggers; a trigger is always followed by its output.
    Predicting the output after a trigger's second occurrence needs an induction head.

    Args:
        V: vocabulary size.
        T: sequence length.
        alpha: Zipf exponent of the background marginal, >= 0.
        q: Zipf-Mandelbrot shift, >= 0.
        n_triggers: triggers per sequence.
        trigger_dist: trigger distribution: zipf or uniform.
        output_dist: output-token distribution: zipf or uniform.
    """

    V: int = 64
    T: int = 256
    alpha: float = 1.0
    q: float = 0.0
    n_triggers: int = 1
    trigger_dist: str = "zipf"
    output_dist: str = "uniform"

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "V", check_int("V", self.V, 2, MAX_RANKS))
        set_(self, "T", check_int("T", self.T, 2, 1 << 20))
        set_(self, "alpha", check_real("alpha", self.alpha, 0.0, MAX_ALPHA))
        set_(self, "q", check_real("q", self.q, 0.0, 1e6))
        set_(self, "n_triggers", check_int("n_triggers", self.n_triggers, 0, min(self.V - 1, 4096)))
        set_(self, "trigger_dist", check_choice("trigger_dist", self.trigger_dist, TOKEN_DISTS))
        set_(self, "output_dist", check_choice("output_dist", self.output_dist, TOKEN_DISTS))

    @property
    def zipf(self) -> Zipf:
        """The background marginal Zipf(V, alpha, q)."""
        return Zipf(self.V, self.alpha, self.q)


@dataclass(frozen=True)
class MarkovTask(_Config):
    """In-context Markov chains (Edelman et al. 2024): every sequence has its own transition matrix, its rows drawn
    from Dirichlet(beta p) with p = Zipf(k, alpha, q). Symbols: see the module glossary.

    Args:
        k: number of states, 2 <= k <= 1024 (a sequence's whole matrix is drawn: k^2 Gamma draws).
        T: sequence length, 2 <= T <= 65536.
        beta: Dirichlet concentration, 0 < beta <= 10^6 (small: sharp, nearly deterministic rows).
        alpha: Zipf exponent of the base measure, 0 <= alpha <= 16 (0: uniform, Edelman's setting).
        q: Zipf-Mandelbrot shift of the base measure, >= 0.
    """

    k: int = 8
    T: int = 64
    beta: float = 8.0
    alpha: float = 0.0
    q: float = 0.0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "k", check_int("k", self.k, 2, 1024))
        set_(self, "T", check_int("T", self.T, 2, 1 << 16))
        set_(self, "beta", check_real("beta", self.beta, 0.0, 1e6, low_open=True))
        set_(self, "alpha", check_real("alpha", self.alpha, 0.0, MAX_ALPHA))
        set_(self, "q", check_real("q", self.q, 0.0, 1e6))

    @property
    def base(self) -> Zipf:
        """The base measure p = Zipf(k, alpha, q) of the rows' Dirichlet prior and of the first state."""
        return Zipf(self.k, self.alpha, self.q)


_KINDS: dict[str, type[_Config]] = {c.__name__: c for c in (Zipf, ClassificationTask, TokenStreamTask, MarkovTask)}


def config_from_dict(data: dict[str, Any]) -> _Config:
    """Inverse of ``config.to_dict()`` for any data config: dispatch on its ``kind`` key."""
    kind = data.get("kind")
    if kind not in _KINDS:
        raise ValueError(f"kind = {kind!r} is not allowed: kind must be one of {', '.join(_KINDS)}")
    return _KINDS[kind].from_dict(data)
