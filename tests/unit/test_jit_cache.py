"""Numba caches of the theory package are keyed on its sources as a process imported them (theory._jit_cache).

Numba alone stamps a cached kernel with its own file: a kernel that calls into an edited module keeps running the
old callee, and a process that imported old sources saves stale code under the new stamp. Each case is run in
fresh interpreters over a small package of two modules in a temporary directory.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

CALLER = """
import sys, time
from pathlib import Path
if sys.argv[1] == "keyed":
    from zipfhead.theory._jit_cache import register_package
    register_package(Path(__file__).parent)
from numba import njit
from callee import g

@njit(cache=True)
def f():
    return g()

if len(sys.argv) > 2:  # imported; compile only once told to (the sources may have changed meanwhile)
    Path(sys.argv[2]).write_text("imported")
    while not Path(sys.argv[2] + ".go").exists():
        time.sleep(0.05)
print(f())
"""


def _callee(tmp: Path, value: int) -> None:
    (tmp / "callee.py").write_text(f"from numba import njit\n\n\n@njit(cache=True)\ndef g():\n    return {value}\n")


def _run(tmp: Path, mode: str) -> int:
    out = subprocess.run([sys.executable, "caller.py", mode], cwd=tmp, capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def _package(tmp: Path) -> None:
    (tmp / "caller.py").write_text(textwrap.dedent(CALLER))
    _callee(tmp, 1)


def test_numba_alone_runs_an_edited_callee_stale(tmp_path: Path) -> None:
    """The hazard itself, so that the next test is known to guard against something real."""
    _package(tmp_path)
    assert _run(tmp_path, "plain") == 1
    _callee(tmp_path, 2)
    assert _run(tmp_path, "plain") == 1  # caller.py did not change: its cache still holds g() = 1


def test_keyed_caches_see_an_edited_callee(tmp_path: Path) -> None:
    _package(tmp_path)
    assert _run(tmp_path, "keyed") == 1
    _callee(tmp_path, 2)
    assert _run(tmp_path, "keyed") == 2
    assert _run(tmp_path, "keyed") == 2  # and from the rebuilt cache


def test_a_process_that_imported_old_sources_cannot_poison_the_cache(tmp_path: Path) -> None:
    _package(tmp_path)
    flag = tmp_path / "flag"
    old = subprocess.Popen(
        [sys.executable, "caller.py", "keyed", str(flag)], cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not flag.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    _callee(tmp_path, 2)  # edited while the old process holds the old sources in memory
    Path(str(flag) + ".go").write_text("")
    out, _ = old.communicate(timeout=120)
    assert int(out.strip()) == 1  # it runs what it imported, and saves it with its own (old) digest
    assert _run(tmp_path, "keyed") == 2  # a new process does not load that


def test_registering_twice_keeps_one_locator_per_numba_locator(tmp_path: Path) -> None:
    from numba.core import caching

    from zipfhead.theory._jit_cache import register_package

    classes = caching.CacheImpl._locator_classes
    numba_own = [c for c in classes if "_zipfhead_package" not in c.__dict__]
    try:
        first = register_package(tmp_path)
        second = register_package(tmp_path, digest="other")
        ours = [c for c in classes if c.__dict__.get("_zipfhead_package") == tmp_path.resolve()]
        assert first == second and len(first) == 64
        assert len(ours) == len(numba_own) and classes[: len(ours)] == ours  # tried first, one per Numba locator
    finally:
        classes[:] = [c for c in classes if c.__dict__.get("_zipfhead_package") != tmp_path.resolve()]


def test_a_module_imported_after_an_edit_shares_no_cache(tmp_path: Path) -> None:
    """The package's digest is taken when it is registered; a module imported after its sources changed compiles
    code that digest does not describe (here f inlines the edited g), and its kernels must never load elsewhere."""
    _callee(tmp_path, 1)
    (tmp_path / "callerlib.py").write_text(
        "from numba import njit\nfrom callee import g\n\n\n@njit(cache=True)\ndef f():\n    return g()\n"
    )
    head = (
        "from pathlib import Path\nfrom zipfhead.theory._jit_cache import register_package\n"
        "register_package(Path('.'))\n"
    )
    edit = "Path('callee.py').write_text(Path('callee.py').read_text().replace('return 1', 'return 3'))\n"
    (tmp_path / "late.py").write_text(head + edit + "from callerlib import f\nprint(f())\n")
    (tmp_path / "check.py").write_text(head + "from callerlib import f\nprint(f())\n")

    def run(script: str) -> int:
        out = subprocess.run([sys.executable, script], cwd=tmp_path, capture_output=True, text=True, check=True)
        return int(out.stdout.strip())

    assert run("late.py") == 3  # registered before the edit, imported f and g after it
    _callee(tmp_path, 1)  # the sources are again those the late process's digest was taken from
    assert run("check.py") == 1  # its cached f (with g = 3 inside) must not load
