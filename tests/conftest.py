"""Strict numerics for every test (numpy's floating-point errors and JAX's implicit rank promotion raise;
pyproject.toml makes every warning an error), and the hypothesis profiles.

Profiles: ``ci`` (the default under CI=true or HYPOTHESIS_PROFILE=ci) and ``dev``. Both set deadline=None:
the first call of a Numba kernel compiles, which would trip any deadline.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Under pytest-xdist (make test runs two workers), several processes may share one accelerator: JAX must not
# grab most of its memory at start-up in each of them. Set before any test module imports JAX.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

settings.register_profile(
    "ci", deadline=None, max_examples=40, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None, max_examples=25, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def pytest_configure(config: pytest.Config) -> None:
    """JAX as strict as numpy here: an implicit rank promotion (broadcasting arrays of different ranks without an
    explicit reshape) raises, as equinox's test suite has it."""
    import jax

    jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(autouse=True)
def _strict_numpy():
    """Floating-point trouble (overflow, invalid, division by zero) is an error, not a warning."""
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        yield


#: the test files that train toys, longest first (measured with --durations: 236, 223 and 163 s of a 1030 s run).
#: With ``--dist loadfile --no-loadscope-reorder`` (the Makefile's) pytest-xdist hands files to its workers in
#: collection order, so starting these first keeps one worker from finishing a long file alone after the other has
#: run out of work (xdist's default order, most tests first, put these few-test files last).
HEAVY_FIRST = ("test_reproductions.py", "test_sweep.py", "test_train.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the heavy files first (a stable sort: the order inside and among the other files is kept)."""
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
