"""zipfhead's theory half: Zipfian data families, their Numba samplers and exact statistics (numpy, sympy, Numba).

This package never imports JAX or ``toy_models``. The public face:

* configs: :class:`Zipf`, :class:`ClassificationTask`, :class:`TokenStreamTask`, :class:`MarkovTask` (symbols:
  see :mod:`theory.distributions`);
* samplers: :func:`class_means`, :func:`sample_classification`, :func:`sample_classes`,
  :func:`sample_token_streams`, :func:`sample_repeated_tokens`, :func:`sample_markov`;
* in-context Markov chains: :func:`predictor_losses` (the uniform, unigram and Bayes bigram predictors) and their
  exact expected losses :func:`exact_losses` (:mod:`theory.markov`);
* statistics: :func:`classification_statistics`, :func:`token_statistics`, :func:`memorisation_statistics`,
  :func:`zipf_statistics`, :func:`rank_sum` (each with ``method="exact" | "asymptotic" | "reference"``).
"""

# first: it keys the Numba caches of every theory module on the package's sources (see its docstring)
import zipfhead.theory._jit_cache  # noqa: F401
from zipfhead.theory.distributions import ClassificationTask, MarkovTask, TokenStreamTask, Zipf
from zipfhead.theory.markov import exact_losses, predictor_losses, sample_markov
from zipfhead.theory.samplers import (
    class_means,
    sample_classes,
    sample_classification,
    sample_repeated_tokens,
    sample_token_streams,
)
from zipfhead.theory.statistics import (
    classification_statistics,
    memorisation_statistics,
    rank_sum,
    token_statistics,
    zipf_statistics,
)

__all__ = [
    "ClassificationTask",
    "MarkovTask",
    "TokenStreamTask",
    "Zipf",
    "class_means",
    "classification_statistics",
    "exact_losses",
    "memorisation_statistics",
    "predictor_losses",
    "rank_sum",
    "sample_classes",
    "sample_classification",
    "sample_markov",
    "sample_repeated_tokens",
    "sample_token_streams",
    "token_statistics",
    "zipf_statistics",
]
