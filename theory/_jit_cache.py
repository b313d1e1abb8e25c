"""Numba's on-disk caches of the theory package, keyed on every theory source as the process imported them.

Numba stamps a cached function with its own file only. A cached function that calls compiled code from another
module (the integrator in :mod:`theory.ode` calls the models' drifts, the models call their generated kernels)
kept running the old callee after that module was edited, silently: an edit to ``reduced_v2.py`` left ``ode``'s
cache integrating the previous model, reading the new parameter layout at the wrong offsets. And a process that
imported the old sources and compiled after the edit saved its stale code under the new file's stamp.

Importing this module (``theory/__init__.py`` does first, so before any theory module's ``@njit(cache=True)``)
puts a locator in front of Numba's own for the files of one package: it keeps Numba's cache directory and stamp
and adds the SHA-256 of the package's sources *as this process imported them*. A cache built from other sources,
by an older process or before an edit, then never loads; it is rebuilt. A module imported after the sources
changed under a running process gets a stamp that matches nothing (its code is neither the old nor the new
package). Installed copies never change, so for users this costs a hash of the package per cached kernel at
import (about a millisecond each).
"""

from __future__ import annotations

import hashlib
import uuid
import warnings
from pathlib import Path

from numba.core import caching

__all__ = ["register_package", "sources_digest"]

_PACKAGE = Path(__file__).resolve().parent


def sources_digest(package: Path = _PACKAGE) -> str:
    """SHA-256 (hex) of a package's Python sources (``*.py`` directly in ``package``), names included, sorted."""
    h = hashlib.sha256()
    for path in sorted(Path(package).glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _stamped(base: type, package: Path, digest: str) -> type:
    """A subclass of Numba's locator ``base`` that serves only files directly in ``package`` and adds ``digest``
    to the source stamp."""

    class Locator(base):  # type: ignore[misc, valid-type]
        @classmethod
        def from_function(cls, py_func, py_file):
            if Path(py_file).resolve().parent != package:
                return None  # not ours: Numba's own locators take it
            self = super().from_function(py_func, py_file)
            if self is not None:
                # a module read after the sources changed (a late import) compiles other code than the digest
                # names: give its kernels a stamp that no process will ever match
                self._digest = digest if sources_digest(package) == digest else f"{digest}+{uuid.uuid4().hex}"
            return self

        def get_source_stamp(self):
            return (super().get_source_stamp(), self._digest)

    Locator.__name__ = Locator.__qualname__ = f"Digest{base.__name__}"
    return Locator


def register_package(package: str | Path, digest: str | None = None) -> str:
    """Key the Numba caches of ``package``'s files on ``digest`` (default: :func:`sources_digest` now). Numba's
    locators are tried in order; ours go first, one per Numba locator, in Numba's order (so ``NUMBA_CACHE_DIR``
    and the in-tree / user-wide fallbacks keep their meaning). Registering a package again is a no-op.
    Returns the digest in force."""
    package = Path(package).resolve()
    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)  # renamed across versions
    classes = getattr(impl, "_locator_classes", None)
    if not isinstance(classes, list):  # a Numba without the hook: its own stamps only (see the module docstring)
        warnings.warn("this Numba has no cache-locator hook: theory's caches are keyed by Numba alone", stacklevel=2)
        return sources_digest(package) if digest is None else digest
    for cls in classes:
        if cls.__dict__.get("_zipfhead_package") == package:
            return cls._zipfhead_digest
    digest = sources_digest(package) if digest is None else digest
    ours = [_stamped(base, package, digest) for base in classes if "_zipfhead_package" not in base.__dict__]
    for cls in ours:
        cls._zipfhead_package = package
        cls._zipfhead_digest = digest
    classes[:0] = ours
    return digest


register_package(_PACKAGE)
