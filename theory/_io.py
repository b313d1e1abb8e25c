"""One way to write a file so that a reader never sees half of it: write ``NAME.tmp`` beside it, flush it to disk,
rename it over ``NAME``. Every result, checkpoint, report and generated module of zipfhead is written here.

A kill at any moment leaves either the old file or the new one, never a mixture; what it can leave behind is a
``.tmp`` file, which the writers that resume (the sweep, the trainer) remove. The theory half lives below the toys
(toy_models imports theory, never the reverse), so the one helper lives here and both halves use it.

:data:`WRITE_HOOK` lets a test stop a job between any two writes, as a kill would (``tests/unit/test_sweep.py``'s
kill-point test): when set, it is called as ``hook(path, event)`` with ``event`` ``"written"`` (the ``.tmp`` is
complete, the rename not yet done), ``"renamed"`` (the file is in place) or ``"removed"`` (a file was deleted by
:func:`remove`).
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["WRITE_HOOK", "atomic_write", "read_json", "reading", "remove", "tmp_path"]

#: called as hook(path, event) around every write and removal; None (the default) in normal use
WRITE_HOOK: Callable[[Path, str], None] | None = None


def _event(path: Path, event: str) -> None:
    if WRITE_HOOK is not None:
        WRITE_HOOK(path, event)


def tmp_path(path: str | Path) -> Path:
    """Where :func:`atomic_write` stages ``path``: ``NAME.tmp`` in the same directory (a rename within one
    directory is atomic on POSIX file systems)."""
    path = Path(path)
    return path.with_name(path.name + ".tmp")


def atomic_write(path: str | Path, write: Callable[[IO[Any]], Any], mode: str = "wb") -> Path:
    """Write ``path`` all at once: ``write(f)`` fills a temporary file opened with ``mode`` (``"wb"`` or ``"w"``,
    UTF-8 text), which is flushed to disk and renamed over ``path``. Returns ``path``."""
    if mode not in ("wb", "w"):
        raise ValueError(f"mode = {mode!r} is not allowed: mode must be 'wb' or 'w'")
    path = Path(path)
    tmp = tmp_path(path)
    with open(tmp, mode, **({} if mode == "wb" else {"encoding": "utf-8"})) as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    _event(path, "written")
    os.replace(tmp, path)
    _event(path, "renamed")
    return path


def remove(path: str | Path) -> None:
    """Delete ``path`` if it exists (a superseded checkpoint, say), as one event a test can stop after."""
    path = Path(path)
    if path.exists():
        path.unlink(missing_ok=True)
        _event(path, "removed")


def read_json(path: str | Path) -> Any:
    """The JSON value in ``path``; a file that is not JSON (or not UTF-8) is a ValueError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{str(path)!r} is not a JSON file: {err}") from None


@contextmanager
def reading(path: str | Path, what: str) -> Iterator[None]:
    """Turn what a malformed file can raise while its content is interpreted (a missing key, a value of the wrong
    type, an unreadable archive) into one ValueError naming the file: ``with reading(p, "a run's config"): ...``."""
    try:
        yield
    except (KeyError, TypeError, IndexError, AttributeError, zipfile.BadZipFile) as err:
        detail = f"missing {err}" if isinstance(err, KeyError) else str(err)
        raise ValueError(f"{str(path)!r} is not {what}: {detail}") from None
