"""From the theory's samplers to model inputs: the data side of training, one model at a time.

A *data stream* is a task plus the seeds that fix its randomness. Training batches come from the Numba
samplers by offset: the batch of step s is sequences [s * batch, (s+1) * batch) of the stream's sequence seed,
so any step's batch is a pure function of (seed, step) and a resumed run sees the same data.

In-context classification, sequence x_1 l_1 ... x_N l_N x_q (length 2N + 1): position 2i holds the item vector
x_(i+1) in input dimensions [0, D); position 2i + 1 holds the one-hot label l_(i+1) in dimensions [D, D + L);
the query x_q sits at position 2N. The model reads its label logits at the query position.

Token streams and in-context Markov chains: inputs are tokens[:, :-1], targets tokens[:, 1:] (next-token
prediction at every position).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from zipfhead.theory.distributions import ClassificationTask, MarkovTask, TokenStreamTask
from zipfhead.theory.markov import predictor_losses, sample_markov
from zipfhead.theory.samplers import class_means, sample_classification, sample_repeated_tokens, sample_token_streams
from zipfhead.toy_models.config import io_shape

__all__ = ["ClassificationStream", "DataStream", "MarkovStream", "TokenStream", "classification_inputs", "derive_seed"]


def derive_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for one purpose (``init``, ``train``, ``eval``, ``means``) derived from a run seed.

    Separate seeds keep initialisation, training data and evaluation data independent (icl-dynamics'
    init_seed / train_seed / eval_seed), while one user-facing seed fixes all of them.
    """
    digest = hashlib.sha256(f"zipfhead:{purpose}:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def classification_inputs(items: jnp.ndarray, labels: jnp.ndarray, L: int) -> jnp.ndarray:
    """Interleave items and one-hot labels: (..., N+1, D) float and (..., N+1) int -> (..., 2N+1, D+L) float.

    Works on numpy or JAX arrays (inside jit); the query's own label (index N) is not an input.
    """
    *lead, n1, D = items.shape
    N = n1 - 1
    item_part = jnp.concatenate([items, jnp.zeros((*lead, n1, L), items.dtype)], axis=-1)
    label_part = jnp.concatenate(
        [jnp.zeros((*lead, N, D), items.dtype), jax.nn.one_hot(labels[..., :N], L, dtype=items.dtype)], axis=-1
    )
    # positions: item_0, label_0, item_1, label_1, ..., item_(N-1), label_(N-1), query
    pairs = jnp.stack([item_part[..., :N, :], label_part], axis=-2).reshape(*lead, 2 * N, D + L)
    return jnp.concatenate([pairs, item_part[..., N:, :]], axis=-2)


@dataclass(frozen=True)
class DataStream:
    """What every data stream shares: its task, its run seed, and the model shapes the task fixes.

    Attributes:
        task: the distribution.
        seed: the run seed; class means, training and evaluation streams use seeds derived from it.
    """

    task: ClassificationTask | TokenStreamTask | MarkovTask
    seed: int

    @property
    def n_ctx(self) -> int:
        """Model context: 2N + 1 (classification), T - 1 (tokens and chains: inputs tokens[:-1];
        :func:`toy_models.config.io_shape`)."""
        return io_shape(self.task)[0]

    @property
    def d_vocab(self) -> int:
        """Input width: D + L (an item vector and a one-hot label), or the vocabulary."""
        return io_shape(self.task)[1]

    @property
    def d_vocab_out(self) -> int:
        """Output classes: the L labels, or the vocabulary."""
        return io_shape(self.task)[2]

    def means(self) -> np.ndarray | None:
        """Data drawn once per stream and passed to every chunk: none for token streams and chains."""
        return None

    def train_chunk(self, means: Any, step0: int, n_steps: int, batch: int) -> dict[str, np.ndarray]:
        """The training batches of steps step0 .. step0 + n_steps - 1, each array (n_steps, batch, ...)."""
        raise NotImplementedError(f"{type(self).__name__} draws no training data")

    def eval_sets(self, means: Any, size: int) -> dict[str, dict[str, np.ndarray]]:
        """Fixed evaluation sets by name, each of ``size`` sequences."""
        raise NotImplementedError(f"{type(self).__name__} has no evaluation sets")


@dataclass(frozen=True)
class ClassificationStream(DataStream):
    """The in-context classification data of one model: task, class means and seeds."""

    task: ClassificationTask

    def means(self) -> np.ndarray:
        """(K, D) class means."""
        return class_means(self.task, derive_seed(self.seed, "means"))

    def train_chunk(self, means: np.ndarray, step0: int, n_steps: int, batch: int) -> dict[str, np.ndarray]:
        """Training batches of steps step0 .. step0 + n_steps - 1: items (n, b, N+1, D), labels (n, b, N+1)."""
        out = sample_classification(
            self.task, means, n_steps * batch, derive_seed(self.seed, "train"), offset=step0 * batch
        )
        N1, D = self.task.N + 1, self.task.D
        return {
            "items": out.items.reshape(n_steps, batch, N1, D),
            "labels": out.labels.reshape(n_steps, batch, N1),
        }

    def eval_sets(self, means: np.ndarray, size: int) -> dict[str, dict[str, np.ndarray]]:
        """Fixed evaluation sets, each of ``size``: ``mix`` (the training mixture), ``icl``, ``swap`` and ``iwl``."""
        sets = {}
        for i, kind in enumerate(("train", "icl", "swap", "iwl")):
            if kind == "swap" and self.task.L <= self.task.classes_per_burst:
                continue  # no label other than its own is left for some class: the swap set does not exist
            b = sample_classification(self.task, means, size, derive_seed(self.seed, f"eval{i}"), kind)
            sets["mix" if kind == "train" else kind] = {"items": b.items, "labels": b.labels, "classes": b.classes}
        return sets


@dataclass(frozen=True)
class TokenStream(DataStream):
    """The token-stream data of one model (Bietti et al. 2023 with a Zipf marginal)."""

    task: TokenStreamTask

    def train_chunk(self, _means: Any, step0: int, n_steps: int, batch: int) -> dict[str, np.ndarray]:
        """Token batches (n, b, T) (next-token training uses every position, so no mask is needed)."""
        out = sample_token_streams(self.task, n_steps * batch, derive_seed(self.seed, "train"), offset=step0 * batch)
        T = self.task.T
        return {"tokens": out.tokens.reshape(n_steps, batch, T)}

    def eval_sets(self, _means: Any, size: int) -> dict[str, dict[str, np.ndarray]]:
        """``stream``: held-out token streams; ``repeated``: Olsson's repeated random tokens (two copies of T//2)."""
        s = sample_token_streams(self.task, size, derive_seed(self.seed, "eval0"))
        R = self.task.T // 2
        rep = sample_repeated_tokens(self.task.V, R, size, derive_seed(self.seed, "eval1"))
        if rep.shape[1] < self.task.T:  # odd T: pad with one more random token to length T
            rep = np.concatenate([rep, rep[:, :1]], axis=1)
        return {"stream": {"tokens": s.tokens, "induction": s.induction}, "repeated": {"tokens": rep}}


@dataclass(frozen=True)
class MarkovStream(DataStream):
    """The in-context Markov-chain data of one model (Edelman et al. 2024, with a Zipf base measure)."""

    task: MarkovTask

    def train_chunk(self, _means: Any, step0: int, n_steps: int, batch: int) -> dict[str, np.ndarray]:
        """State sequences (n, b, T) int32: each its own chain, next-state training at every position."""
        tokens = sample_markov(self.task, n_steps * batch, derive_seed(self.seed, "train"), offset=step0 * batch)
        return {"tokens": tokens.reshape(n_steps, batch, self.task.T)}

    def eval_sets(self, _means: Any, size: int) -> dict[str, dict[str, np.ndarray]]:
        """``chain``: held-out sequences (size, T), with ``ref`` (3,) float32 the uniform, unigram and Bayes bigram
        predictors' mean losses on them (nats; :data:`theory.markov.PREDICTORS` order), the stage ladder's rungs."""
        tokens = sample_markov(self.task, size, derive_seed(self.seed, "eval0"))
        ref = predictor_losses(tokens, self.task).mean(axis=(0, 2)).astype(np.float32)
        return {"chain": {"tokens": tokens, "ref": ref}}
