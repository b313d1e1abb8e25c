"""The named sweeps' names, importable without JAX (the command line offers them when it builds its parser).

Each name's configuration is built by :func:`toy_models.sweep.preset`, which needs the toys' config classes.
"""

from __future__ import annotations

__all__ = ["PRESETS"]

#: the named sweeps of ``zipfhead sweep --preset`` (the first is the default, ``make demo``'s)
PRESETS = ("demo", "chan2022", "reddy2024", "tokens", "markov", "transience")
