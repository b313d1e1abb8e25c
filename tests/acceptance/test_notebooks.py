"""Every notebook in proofs_notebooks/ is executed: its assertions are the derivations' checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "proofs_notebooks").glob("[0-9]*.py"))


def test_there_are_notebooks():
    """Guards the parametrisation below against an empty glob (which would run nothing)."""
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_opens_as_a_notebook(path):
    """The jupytext percent file reads as a notebook with both prose and code cells."""
    nb = jupytext.read(path)
    kinds = {cell.cell_type for cell in nb.cells}
    assert {"markdown", "code"} <= kinds


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path):
    """Run the notebook's code cells in order, as Jupyter's 'run all' would (a failed assert fails the test)."""
    out = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=600, cwd=path.parent, check=False
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
