"""The package's import graph: no module of zipfhead imports, at the top or inside a function, one that imports it
back (a circle that only works because one side imports late is still a circle)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
from scipy.sparse import csr_array
from scipy.sparse.csgraph import connected_components

ROOT = Path(__file__).resolve().parents[2]
#: the folders of the zipfhead namespace and the module names they install as (pyproject.toml's package-dir)
PACKAGES = {
    "zipfhead": "zipfhead",
    "zipfhead/cli": "zipfhead.cli",
    "theory": "zipfhead.theory",
    "toy_models": "zipfhead.toy_models",
}


def modules() -> dict[str, Path]:
    """Every module of the namespace, by its dotted name."""
    found = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).glob("*.py")):
            found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return found


def imported(tree: ast.AST, known: dict[str, Path]) -> set[str]:
    """The project modules a module's source imports anywhere in it. ``from p import m`` counts as importing the
    module p.m where m is one, and the package p where some name is not a module (a package's own names)."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{a.name}" for a in node.names} & known.keys()
            out |= subs
            if node.module in known and len(subs) < len(node.names):
                out.add(node.module)
    return out


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (each holds a circle of imports)."""
    names = sorted(edges)
    index = {n: i for i, n in enumerate(names)}
    rows = [index[a] for a in names for b in edges[a]]
    cols = [index[b] for a in names for b in edges[a]]
    graph = csr_array((np.ones(len(rows)), (rows, cols)), shape=(len(names), len(names)))
    _, label = connected_components(graph, directed=True, connection="strong")
    groups = [[n for n in names if label[index[n]] == k] for k in range(label.max() + 1)]
    return [g for g in groups if len(g) > 1]


def test_circle_finder_finds_a_planted_circle():
    """The check below can fail: a -> b -> c -> a is found, the tail d -> a is not part of it."""
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    tree = ast.parse("def f():\n    from zipfhead.theory import ode\n")
    assert imported(tree, {"zipfhead.theory.ode": Path(), "zipfhead.theory": Path()}) == {"zipfhead.theory.ode"}


def test_no_import_circle():
    known = modules()
    assert len(known) > 50  # the glob found the package (a wrong ROOT would pass vacuously)
    edges = {name: imported(ast.parse(path.read_text()), known) - {name} for name, path in known.items()}
    assert circles(edges) == []
