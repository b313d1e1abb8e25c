"""zipfhead: how the statistics of Zipfian, bursty data decide whether and when induction heads form.

One namespace over the project's halves, which keep their own folders in the repository:

* :mod:`theory` (folder ``theory/``): exact statistics, samplers and reduced models (numpy, sympy,
  Numba; never JAX);
* :mod:`toy_models` (folder ``toy_models/``): the JAX toys, their training engine, measures and sweeps;
* :mod:`zipfhead.cli` (folder ``zipfhead/cli/``): the ``zipfhead`` command line.
"""

__version__ = "0.1.0"
