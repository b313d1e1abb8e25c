"""zipfhead: how the statistics of Zipfian, bursty data decide whether and when induction heads form.

One namespace over the project's halves, which keep their own folders in the repository:

* :mod:`zipfhead.theory` (folder ``theory/``): exact statistics, samplers and reduced models (numpy, sympy,
  Numba; never JAX);
* :mod:`zipfhead.toy_models` (folder ``toy_models/``): the JAX toys, their training engine, measures and sweeps;
* :mod:`zipfhead.cli` (folder ``zipfhead/cli/``): the ``zipfhead`` command line.
"""

from pathlib import Path as _Path

__version__ = "0.1.0"

_here = _Path(__file__).resolve().parent
if not (_here / "theory").is_dir() and (_here.parent / "theory" / "__init__.py").is_file():
    # A source checkout imported from its root (this folder first on sys.path): the halves are the folders beside
    # it (pyproject.toml's package-dir). An installed copy holds them inside, and an editable install maps them
    # too; without this, a checkout's zipfhead/ would hide them from a non-editable install.
    __path__.append(str(_here.parent))
