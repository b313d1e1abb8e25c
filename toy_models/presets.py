"""The named sweeps' and experiments' names, importable without JAX (the command line offers them when it builds
its parser).

Each sweep's configuration is built by :func:`toy_models.sweep.preset`, each experiment's sweeps by
:data:`toy_models.experiments.EXPERIMENTS`; both need the toys' config classes.
"""

from __future__ import annotations

__all__ = ["CALIBRATION_CELLS", "EXPERIMENT_NAMES", "PRESETS"]

#: the named sweeps of ``zipfhead sweep --preset`` (the first is the default, ``make demo``'s)
PRESETS = ("demo", "chan2022", "reddy2024", "tokens", "markov", "transience")
#: the control experiments of ``zipfhead experiment``
EXPERIMENT_NAMES = ("repetition", "recruitment", "recruitment_edge", "narrow")
#: which cells of a sweep calibrate the theory (:meth:`toy_models.sweep.SweepConfig.calibration_cells`; the first is
#: the default)
CALIBRATION_CELLS = ("stratified", "random25", "corners")
