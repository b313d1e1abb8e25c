"""The ``zipfhead`` command line: a thin main (:mod:`zipfhead.cli.main`) over one module per command group.

* :mod:`zipfhead.cli.theory_commands`: ``stats``, ``predict``, ``calibrate`` (no JAX);
* :mod:`zipfhead.cli.toy_commands`: ``train``, ``bench``;
* :mod:`zipfhead.cli.sweep_commands`: ``sweep``, ``merge``, ``report``, ``experiment``;
* :mod:`zipfhead.cli.lens_commands`: ``export`` (TransformerLens);
* :mod:`zipfhead.cli.flags`: the flags several commands share.
"""

from zipfhead.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
