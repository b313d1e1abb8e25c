"""The HTML report of a finished phase-diagram sweep (:mod:`toy_models.sweep`): one self-contained file.

:func:`render_report` renders the page from a sweep's records (:class:`toy_models.sweep_result.SweepResult` and
:class:`~toy_models.sweep_result.TheoryComparison`) through the template ``templates/report.html.j2`` (jinja2,
autoescaped), which holds the page's layout, style and fixed prose; this module computes what it shows (the
tables' rows, the figures, the counts in the notes). The figures are :func:`phase_figure`,
:func:`transition_figure` and :func:`curves_figure`, each a matplotlib Figure, embedded in the page as base64 PNG
(no other file is written or referenced). :func:`write_report` writes ``report.html`` into the run directory,
from the records :func:`toy_models.sweep.finish` hands it or, given none (``zipfhead report RUN_DIR``), from
the run's files (:func:`toy_models.sweep_result.load_sweep`). Sections:

1. the sweep: name, axes, seeds, task / model / training settings, time per group;
2. the held-out prediction errors, the calibration constants and the cells that calibrated them;
3. the phase diagram: measured final ICL and IWL accuracy (mean over seeds) over the first two axes, with the
   predicted boundary of in-context learning and the measured phase of every cell (line plots for one axis);
4. measured against predicted transition step (log-log, seeds' range as error bars);
5. per-cell curves of the headline measure, predicted and measured transition steps marked;
6. the summary table (``summary.csv``'s rows).

The page shows the records as the run's files hold them (:func:`toy_models.sweep_result.as_written`; the config
and the theory as ``config.json`` and ``theory.json`` record them), so that the report written at the end of a
sweep equals, byte for byte, one rendered later from its files. Only numpy, matplotlib and jinja2 are needed (no
JAX): the report can be rebuilt anywhere from the run directory.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
import matplotlib

matplotlib.use("Agg")  # files only: no display is assumed
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from zipfhead.theory._io import atomic_write
from zipfhead.theory.phases import FORMED, LETTERS
from zipfhead.toy_models.sweep_result import (
    REQUIRED_FILES,
    GroupTime,
    SweepResult,
    TheoryComparison,
    as_float,
    as_written,
    load_sweep,
    read_group_times,
    summary_header,
    summary_rows,
)

__all__ = [
    "REQUIRED_FILES",
    "curves_figure",
    "phase_figure",
    "render_report",
    "transition_figure",
    "write_report",
]

#: the rows of the held-out scores' table: theory.json's score, and its label
_SCORE_LABELS = {
    "median_relative_error": "median relative error of the transition step",
    "spearman": "Spearman rank correlation (measured vs predicted step)",
    "phase_agreement_percent": "phase agreement (% of held-out cells)",
}


# --- entry points --------------------------------------------------------------------------------------------
def write_report(
    run_dir: str | Path, result: SweepResult | None = None, theory: TheoryComparison | None = None
) -> Path:
    """Write ``run_dir/report.html`` for a finished sweep (written to a temporary file, then renamed).

    Args:
        run_dir: the sweep's directory (as written by :func:`toy_models.sweep.finish`).
        result, theory: the sweep's records, both or neither; neither: read back from ``run_dir``'s files
            (:func:`toy_models.sweep_result.load_sweep`). The groups' training times are read from ``run_dir``
            either way.

    Returns:
        The path of the report.

    Raises:
        ValueError: ``run_dir`` is not a finished sweep (it does not exist, or a file is missing or does not read;
            the message names it).
        TypeError: one of ``result`` and ``theory`` is given without the other.
    """
    out = Path(run_dir)
    if (result is None) != (theory is None):
        raise TypeError("give both result and theory, or neither (read from the run directory)")
    if result is None or theory is None:
        result, theory, times = load_sweep(out)
    elif not out.is_dir():
        raise ValueError(f"{out} is not a finished sweep: the directory does not exist")
    else:
        times = read_group_times(out)
    # the directory's own name, not where it happened to sit: the report moves with its directory
    doc = render_report(result, theory, run_name=out.resolve().name, group_times=times)
    return atomic_write(out / "report.html", lambda f: f.write(doc), mode="w")


def render_report(
    result: SweepResult, theory: TheoryComparison, *, run_name: str, group_times: Sequence[GroupTime] = ()
) -> str:
    """The report's HTML page (one self-contained document, figures embedded).

    Args:
        result: the sweep's toys (C cells x S seeds).
        theory: the theory beside them (C predictions).
        run_name: the run directory's name, shown under the title.
        group_times: the groups' training times (:func:`toy_models.sweep_result.read_group_times`).

    Returns:
        The page, as rendered by the template ``templates/report.html.j2``.
    """
    data = _data(result, theory)
    two_d = len(data["axes"]) >= 2
    phase = _phase_2d(data) if two_d else _phase_1d(data)
    context = {
        "title": f"Sweep report: {result.config.name}",
        "run_name": run_name,
        "sweep": _sweep_context(data),
        "groups": _groups_context(group_times),
        "scores": _scores_context(data),
        "phase": {"png": _png(phase), "two_d": two_d, "beyond_third": _beyond_third(data["axes"])},
        "transition": {"png": _png(_transition_scatter(data)), **_transition_counts(data)},
        "curves": {"png": _png(_cell_curves(data), dpi=80), "headline": data["headline"]},
        "summary": _summary_context(data),
    }
    return _template().render(context)


@functools.cache
def _template() -> jinja2.Template:
    """The page's template (packaged with this module), every value autoescaped."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("zipfhead.toy_models", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template("report.html.j2")


# --- figures -------------------------------------------------------------------------------------------------
def phase_figure(result: SweepResult, theory: TheoryComparison) -> Figure:
    """The phase diagram: measured final headline and in-weights accuracy (mean over seeds) of the C cells over
    the first two axes (one row of panels per value of a third axis), with the predicted boundary of in-context
    learning and each cell's measured phases; for a one-axis sweep, the accuracies and transition steps along it."""
    data = _data(result, theory)
    return _phase_2d(data) if len(data["axes"]) >= 2 else _phase_1d(data)


def transition_figure(result: SweepResult, theory: TheoryComparison) -> Figure:
    """Measured (median and range over the S seeds) against predicted transition step of each cell, log-log."""
    return _transition_scatter(_data(result, theory))


def curves_figure(result: SweepResult, theory: TheoryComparison) -> Figure:
    """One panel per cell (C): the headline measure against step for each seed, predicted and measured transition
    steps marked."""
    return _cell_curves(_data(result, theory))


def _png(fig: Figure, dpi: int = 100) -> str:
    """The figure as base64 PNG text (the figure is closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


# --- what the page shows -------------------------------------------------------------------------------------
def _data(result: SweepResult, theory: TheoryComparison) -> dict[str, Any]:
    """Everything the figures and tables read, from the records as the run's files hold them: per-seed (C, S)
    arrays, C-long predictions, the config and theory as JSON records them, and the summary table's rows."""
    written = as_written(result)
    config = _as_json(result.config.to_dict())
    th = _as_json(theory.to_dict())
    axes = [(str(n), [float(v) for v in vals]) for n, vals in config["axes"]]
    shape = tuple(len(v) for _, v in axes)
    C = int(np.prod(shape))
    preds = [p for _, p in _pad(th["predictions"], C)]
    phases = [[ph for ph in cell if ph] for _, cell in _pad(written.phases, C)]
    return {
        "config": config,
        "theory": th,
        "arrays": {"values": written.values, "measures": list(written.measures), "steps": written.steps},
        "headline": str(result.headline),
        "axes": axes,
        "shape": shape,
        "C": C,
        "seeds": [int(s) for s in config["seeds"]],
        "measured": written.measured,
        "final_icl": written.finals[:, :, 0],
        "final_iwl": written.finals[:, :, 1],
        "phases": phases,
        "pred_step": np.array([as_float(p.get("transition_step")) if p else math.nan for p in preds]),
        "pred_phase": [str(p.get("phase") or "") if p else "" for p in preds],
        "pred_phase_cf": [str(p.get("phase_closed_form") or "") if p else "" for p in preds],
        "calib": {int(c) for c in th["calibration_cells"]},
        "summary": (summary_header(result), summary_rows(result, theory)),
    }


def _as_json(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` as its JSON file holds it (tuples as lists, numpy scalars as numbers)."""
    return json.loads(json.dumps(d))


def _pad(items: Sequence[Any], n: int) -> list[tuple[int, Any]]:
    return [(i, items[i] if i < len(items) else None) for i in range(n)]


def _fmt(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if not math.isfinite(x):
            return "–"
        return f"{x:.4g}"
    if isinstance(x, list | tuple):
        if len(x) > 8 and all(isinstance(v, int | float) for v in x):
            a = np.asarray(x, dtype=np.float64)
            lo, mid, hi = (_fmt(float(f(a))) for f in (np.nanmin, np.nanmedian, np.nanmax))
            return f"{len(x)} values, median {mid}, range {lo} to {hi}"
        return ", ".join(_fmt(v) for v in x)
    return str(x)


def _vals(values: list[float]) -> str:
    return ", ".join(f"{v:g}" for v in values)


def _majority(phases: list[str]) -> str:
    if not phases:
        return ""
    return Counter(phases).most_common(1)[0][0]


def _cell_label(axes: list[tuple[str, list[float]]], shape: tuple[int, ...], c: int) -> str:
    idx = np.unravel_index(c, shape)
    return ", ".join(f"{n}={v[i]:g}" for (n, v), i in zip(axes, idx, strict=True))


def _kv(d: dict[str, Any], skip: tuple[str, ...] = ()) -> str:
    return ", ".join(f"{k} = {_fmt(v)}" for k, v in d.items() if k not in skip)


def _table(header: list[str], rows: list[list[Any]], row_class: list[str] | None = None) -> dict[str, Any]:
    """A table for the template's ``table`` macro: its header, and per row its class and cells (text, class). A
    cell given as (text, class) is kept; a number is formatted (:func:`_fmt`) with the class ``num``; anything
    else is formatted with no class."""
    body = []
    for k, r in enumerate(rows):
        cells = []
        for v in r:
            if isinstance(v, tuple):
                text, cls = v
            else:
                text, cls = _fmt(v), "num" if isinstance(v, int | float) and not isinstance(v, bool) else ""
            cells.append({"text": text, "cls": cls})
        body.append({"cls": row_class[k] if row_class else "", "cells": cells})
    return {"header": header, "rows": body}


def _sweep_context(data: dict[str, Any]) -> dict[str, Any]:
    """Section 1: the table of the sweep's settings."""
    cfg = data["config"]
    axes = data["axes"]
    C, S = data["C"], len(data["seeds"])
    rows: list[list[Any]] = [
        ["name", str(cfg.get("name", ""))],
        ["axes", "; ".join(f"{n} ({len(v)}): {_vals(v)}" for n, v in axes)],
        ["cells x seeds", f"{C} x {S} = {C * S} models"],
        ["seeds", ", ".join(str(s) for s in data["seeds"])],
        ["calibration choice", str(cfg.get("calibration", ""))],
        ["headline measure", data["headline"]],
    ]
    task = cfg.get("task", {})
    axis_names = {n for n, _ in axes}
    rows.append([f"task ({task.get('kind', '?')})", _kv(task, skip=("kind", *axis_names))])
    rows.append(["model", _kv(cfg.get("model", {}))])
    rows.append(["train", _kv(cfg.get("train", {}))])
    return {"settings": _table(["setting", "value"], rows)}


def _groups_context(groups: Sequence[GroupTime]) -> dict[str, Any]:
    """Section 1: the groups' training times (no table without groups; seconds None without timings)."""
    secs = [g.seconds for g in groups if g.seconds is not None]
    rows = [[g.group, g.cells, g.seconds] for g in groups]
    return {
        "count": len(groups),
        "seconds": sum(secs) if secs else None,
        "table": _table(["group", "cells", "seconds"], rows) if groups else None,
    }


def _scores_context(data: dict[str, Any]) -> dict[str, Any]:
    """Section 2: the held-out scores beside the noise ceiling, per seed, and the calibration."""
    th = data["theory"]
    scores = th.get("scores", {})
    ceil = scores.get("noise_ceiling") or {}

    def boot(d: dict[str, Any] | None, value: Any = None) -> list[Any]:
        d = d or {}
        return [as_float(d.get("value", value)), as_float(d.get("lo")), as_float(d.get("hi"))]

    ceiling_rows = [
        [
            "Spearman rank correlation, seed means",
            *boot(scores.get("spearman_seed_means")),
            *boot(ceil.get("spearman"), ceil.get("spearman_value")),
        ],
        [
            "median relative error, seed means (ceiling: between seeds)",
            *boot(scores.get("median_relative_error_seed_means")),
            *boot(ceil.get("median_relative_difference"), ceil.get("median_relative_difference_value")),
        ],
    ]
    per_seed = []
    for key, label in _SCORE_LABELS.items():
        d = scores.get(key) or {}
        per_seed.append([label, as_float(d.get("median")), as_float(d.get("min")), as_float(d.get("max"))])
    calib = sorted(data["calib"])
    labels = [f"{c} ({_cell_label(data['axes'], data['shape'], c)})" for c in calib if c < data["C"]]
    return {
        "ranked": scores.get("ranked_cells", "?"),
        "ranked_by_theory": _fmt((scores.get("spearman_seed_means") or {}).get("cells", "?")),
        "ceiling": _table(["score", "theory", "lo", "hi", "noise ceiling", "lo", "hi"], ceiling_rows),
        "held_out": scores.get("held_out_cells", len(th.get("held_out_cells", []))),
        "pairs_per_seed": _fmt(scores.get("pairs_per_seed", [])),
        "per_seed": _table(["score", "median over seeds", "min", "max"], per_seed),
        "calibration_note": str(th.get("calibration_note", "")),
        "constants": _table(["constant", "value"], [[k, v] for k, v in th.get("calibration", {}).items()]),
        "calibration_cells": len(calib),
        "calibration_labels": "; ".join(labels) or "none",
    }


def _summary_context(data: dict[str, Any]) -> dict[str, Any]:
    """Section 6: summary.csv's rows, calibration cells' rows and disagreeing phases marked."""
    cols, rows = data["summary"]
    cells, classes = [], []
    for values in rows:
        r = dict(zip(cols, values, strict=True))
        calib = r.get("calibration_cell", "0") in ("1", "True", "true")
        mismatch = r.get("measured_phase") != r.get("predicted_phase")
        out = []
        for c in cols:
            v = r.get(c, "")
            if c in ("measured_phase", "predicted_phase") and mismatch:
                out.append((v, "mismatch"))
            else:
                out.append((v, "num") if _is_number(v) else (v, ""))
        cells.append(out)
        classes.append("calib" if calib else "")
    return {"table": _table(cols, cells, classes)}


def _is_number(s: str) -> bool:
    try:
        float(s)
    except (TypeError, ValueError):
        return False
    return True


def _beyond_third(axes: list[tuple[str, list[float]]]) -> list[str]:
    """The axes after the third, each at its first value (the 2-d phase figure shows them there)."""
    return [f"{n}={v[0]:g}" for n, v in axes[3:]]


def _transition_points(data: dict[str, Any]) -> tuple[np.ndarray, ...]:
    """(median, min, max) of the measured transition steps over the seeds, the predicted step, and which cells
    have both (each (C,))."""
    meas = data["measured"]
    med = _nanreduce(np.nanmedian, meas)
    lo, hi = _nanreduce(np.nanmin, meas), _nanreduce(np.nanmax, meas)
    pred = data["pred_step"]
    ok = np.isfinite(med) & np.isfinite(pred) & (pred > 0) & (med > 0)
    return med, lo, hi, pred, ok


def _transition_counts(data: dict[str, Any]) -> dict[str, int]:
    """The cells plotted in the transition figure, and those with a transition on one side only."""
    med, _, _, pred, ok = _transition_points(data)
    return {
        "plotted": int(ok.sum()),
        "only_measured": int((np.isfinite(med) & ~np.isfinite(pred)).sum()),
        "only_predicted": int((~np.isfinite(med) & np.isfinite(pred)).sum()),
    }


# --- drawing -------------------------------------------------------------------------------------------------
def _grid(values: np.ndarray, shape: tuple[int, ...], sel: tuple[int, ...]) -> np.ndarray:
    """(n0, n1) slice of a per-cell array at indices ``sel`` of the axes beyond the first two."""
    full = np.asarray(values, dtype=np.float64).reshape(shape)
    return full[(slice(None), slice(None), *sel)]


def _boundary(mask: np.ndarray) -> list[list[tuple[float, float]]]:
    """Cell-edge segments between True and False cells of mask (n0 along x, n1 along y)."""
    segs = []
    n0, n1 = mask.shape
    for i in range(n0 - 1):
        for j in range(n1):
            if mask[i, j] != mask[i + 1, j]:
                segs.append([(i + 0.5, j - 0.5), (i + 0.5, j + 0.5)])
    for i in range(n0):
        for j in range(n1 - 1):
            if mask[i, j] != mask[i, j + 1]:
                segs.append([(i - 0.5, j + 0.5), (i + 0.5, j + 0.5)])
    return segs


def _phase_2d(data: dict[str, Any]) -> Figure:
    """The phase figure of a sweep of two axes or more (panels per value of a third axis)."""
    axes, shape, C = data["axes"], data["shape"], data["C"]
    xv, yv = axes[0][1], axes[1][1]
    extra = axes[2:]
    panels = [()] if not extra else [(k,) + (0,) * (len(extra) - 1) for k in range(len(extra[0][1]))]
    icl_mean = _nanmean(data["final_icl"])
    iwl_mean = _nanmean(data["final_iwl"])
    icl_pred = np.array([p in FORMED for p in data["pred_phase"]])
    icl_pred_cf = np.array([p in FORMED for p in data["pred_phase_cf"]])
    meas = [_majority(p) for p in data["phases"]]
    label = np.array(
        ["/".join(LETTERS.get(ph, "?") for ph, _ in Counter(p).most_common()) if p else "" for p in data["phases"]],
        dtype=object,
    )
    agree = np.array([m == p for m, p in zip(meas, data["pred_phase"], strict=True)])
    cells = np.arange(C)
    n0, n1 = len(xv), len(yv)
    w, h = max(4.0, 0.6 * n0 + 2.2), max(3.0, 0.45 * n1 + 1.6)
    fig, grid = plt.subplots(len(panels), 2, figsize=(2 * w, h * len(panels)), squeeze=False, constrained_layout=True)
    for r, sel in enumerate(panels):
        idx = _grid(cells, shape, sel).astype(int)
        suffix = ", ".join(f"{n}={v[k]:g}" for (n, v), k in zip(extra, sel, strict=True))
        for col, (name, mean) in enumerate(((data["headline"], icl_mean), ("iwl_acc", iwl_mean))):
            marks = {
                "label": label,
                "agree": agree,
                "calib": data["calib"],
                "pred": icl_pred[idx],
                "pred_cf": icl_pred_cf[idx],
            }
            _phase_panel(fig, grid[r, col], mean[idx], idx, name, marks, axes[:2], suffix)
    _phase_legend(fig)
    return fig


def _phase_panel(fig: Figure, ax: Any, z: np.ndarray, idx: np.ndarray, name: str, marks: dict, xy: list, suffix: str):
    """One panel of the 2-d phase figure: measured final ``name`` (z, (n0, n1)) on the cells ``idx``, the predicted
    and closed-form boundaries, each cell's measured phases, its disagreement and calibration marks."""
    (xn, xv), (yn, yv) = xy
    n0, n1 = len(xv), len(yv)
    im = ax.imshow(z.T, origin="lower", cmap="viridis", vmin=0, vmax=1, aspect="auto")
    fig.colorbar(im, ax=ax, label=f"final {name} (mean over seeds)")
    for segs, style in ((_boundary(marks["pred_cf"]), ":"), (_boundary(marks["pred"]), "-")):
        if segs:
            ax.add_collection(LineCollection(segs, colors="white", linewidths=2.2, linestyles=style))
            ax.add_collection(LineCollection(segs, colors="red", linewidths=1.2, linestyles=style))
    for i in range(n0):
        for j in range(n1):
            c = idx[i, j]
            val = z[i, j]
            colour = "black" if np.isfinite(val) and val > 0.6 else "white"
            ax.text(i, j, marks["label"][c], ha="center", va="center", fontsize=8, color=colour, fontweight="bold")
            if not marks["agree"][c]:
                ax.add_patch(plt.Rectangle((i - 0.42, j - 0.42), 0.84, 0.84, fill=False, ec="red", lw=1.2, ls="--"))
            if c in marks["calib"]:
                ax.plot(i - 0.32, j + 0.3, marker="s", ms=4, color="orange", mec="black", mew=0.5)
    ax.set_xticks(range(n0), [f"{v:g}" for v in xv], fontsize=8, rotation=45 if n0 > 6 else 0)
    ax.set_yticks(range(n1), [f"{v:g}" for v in yv], fontsize=8)
    ax.set_xlim(-0.5, n0 - 0.5)
    ax.set_ylim(-0.5, n1 - 0.5)
    ax.set_xlabel(xn)
    ax.set_ylabel(yn)
    ttl = f"measured final {name}"
    if not marks["pred"].any():
        ttl += " (ICL predicted nowhere)"
    elif marks["pred"].all():
        ttl += " (ICL predicted everywhere)"
    ax.set_title(ttl + (f"\n{suffix}" if suffix else ""), fontsize=10)


def _phase_legend(fig: Figure) -> None:
    """The 2-d phase figure's legend of lines and marks."""
    handles = [
        Line2D([], [], color="red", lw=1.2, ls="-"),
        Line2D([], [], color="red", lw=1.2, ls=":"),
        Line2D([], [], color="red", lw=1.2, ls="--", marker="s", mfc="none", ms=8, linestyle="None"),
        Line2D([], [], color="orange", marker="s", mec="black", ms=5, linestyle="None"),
    ]
    labels = [
        "predicted ICL boundary",
        "closed-form ICL boundary",
        "measured phase differs from predicted",
        "calibration cell",
    ]
    fig.legend(handles, labels, loc="outside lower center", ncols=4, fontsize=8, frameon=False)


def _phase_1d(data: dict[str, Any]) -> Figure:
    """The phase figure of a one-axis sweep: final accuracies (left) and transition steps (right) along the axis."""
    (xn, xv) = data["axes"][0]
    n = len(xv)
    x = np.arange(n)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(max(9.0, 1.2 * n + 4), 3.8), constrained_layout=True)
    icl_pred = [p in FORMED for p in data["pred_phase"]]
    for ax in (a1, a2):
        for i, on in enumerate(icl_pred):
            if on:
                ax.axvspan(i - 0.5, i + 0.5, color="#1f77b4", alpha=0.12, lw=0)
    for name, arr, colour in ((data["headline"], data["final_icl"], "C0"), ("iwl_acc", data["final_iwl"], "C3")):
        mean, lo, hi = _nanmean(arr), _nanreduce(np.nanmin, arr), _nanreduce(np.nanmax, arr)
        a1.plot(x, mean, "o-", color=colour, label=f"final {name}")
        a1.fill_between(x, lo, hi, color=colour, alpha=0.2, lw=0)
    for i, p in enumerate(data["phases"]):
        lab = "/".join(LETTERS.get(ph, "?") for ph, _ in Counter(p).most_common())
        bad = _majority(p) != data["pred_phase"][i]
        a1.text(i, 1.06, lab, ha="center", va="bottom", fontsize=9, color="red" if bad else "black", fontweight="bold")
    a1.set_ylim(-0.02, 1.18)
    a1.set_ylabel("final accuracy")
    a1.legend(fontsize=8, loc="center right")
    a1.set_title("measured final accuracies (mean, seeds' range)", fontsize=10)
    med = _nanreduce(np.nanmedian, data["measured"])
    lo, hi = _nanreduce(np.nanmin, data["measured"]), _nanreduce(np.nanmax, data["measured"])
    ok = np.isfinite(med)
    if ok.any():
        a2.errorbar(
            x[ok],
            med[ok],
            yerr=[med[ok] - lo[ok], hi[ok] - med[ok]],
            fmt="o",
            color="C0",
            capsize=3,
            label="measured (median, seeds' range)",
        )
    pk = np.isfinite(data["pred_step"])
    if pk.any():
        a2.plot(x[pk], data["pred_step"][pk], "s--", color="k", mfc="none", label="predicted")
    if ok.any() or pk.any():
        a2.set_yscale("log")
        a2.legend(fontsize=8)
    a2.set_ylabel("transition step")
    a2.set_title("transition step", fontsize=10)
    for ax in (a1, a2):
        ax.set_xticks(x, [f"{v:g}" for v in xv], fontsize=8)
        ax.set_xlim(-0.5, n - 0.5)
        ax.set_xlabel(xn)
    return fig


def _transition_scatter(data: dict[str, Any]) -> Figure:
    """Measured against predicted transition step, calibration cells marked."""
    med, lo, hi, pred, ok = _transition_points(data)
    calib = np.array([c in data["calib"] for c in range(data["C"])])
    fig, ax = plt.subplots(figsize=(6.0, 5.2), constrained_layout=True)
    if ok.any():
        for mask, style in (
            (ok & ~calib, dict(fmt="o", color="C0", label="held-out cell")),
            (ok & calib, dict(fmt="s", color="C1", mfc="none", mew=1.5, label="calibration cell")),
        ):
            if mask.any():
                ax.errorbar(
                    pred[mask], med[mask], yerr=[med[mask] - lo[mask], hi[mask] - med[mask]], capsize=3, ms=6, **style
                )
        vals = np.concatenate([pred[ok], lo[ok], hi[ok]])
        a, b = float(vals.min()) / 1.5, float(vals.max()) * 1.5
        ax.plot([a, b], [a, b], "k--", lw=1, label="y = x")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(a, b)
        ax.set_ylim(a, b)
        ax.legend(fontsize=8, loc="upper left")
    else:
        ax.text(
            0.5,
            0.5,
            "no cell has both a measured and a predicted transition",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    ax.set_xlabel("predicted transition step")
    ax.set_ylabel("measured transition step (median over seeds)")
    ax.set_title("measured vs predicted transition step", fontsize=10)
    return fig


def _cell_curves(data: dict[str, Any]) -> Figure:
    """The per-cell curves: one panel per cell, in a grid."""
    arrays = data["arrays"]
    values = np.asarray(arrays["values"], dtype=np.float64)  # (C, S, measure, step)
    measures = [str(m) for m in arrays["measures"]]
    steps = np.asarray(arrays["steps"], dtype=np.float64)
    m = measures.index(data["headline"]) if data["headline"] in measures else 0
    C, S = values.shape[0], values.shape[1]
    last = len(data["axes"][-1][1])
    ncols = last if len(data["axes"]) >= 2 and 2 <= last <= 8 else max(1, math.ceil(math.sqrt(C)))
    nrows = math.ceil(C / ncols)
    width, height = 2.3 * ncols + 0.5, 1.9 * nrows + 0.7
    fig, grid = plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False, sharex=True, sharey=True)
    # fixed margins in inches (a constrained layout of many panels costs seconds): y label and ticks on the left,
    # two title lines above each panel, x label and legend below
    fig.subplots_adjust(
        left=0.7 / width, right=1 - 0.1 / width, bottom=0.75 / height, top=1 - 0.4 / height, wspace=0.08, hspace=0.5
    )
    horizon = float(steps.max()) if steps.size else 0.0
    for c in range(nrows * ncols):
        ax = grid[c // ncols, c % ncols]
        if c >= C:
            ax.axis("off")
            continue
        for s in range(S):
            ax.plot(steps, values[c, s, m], lw=1, color=f"C{s % 10}")
            tr = data["measured"][c, s] if s < data["measured"].shape[1] else math.nan
            if np.isfinite(tr):
                ax.axvline(tr, color=f"C{s % 10}", ls="--", lw=0.8)
        pt = data["pred_step"][c] if c < len(data["pred_step"]) else math.nan
        if np.isfinite(pt) and pt <= horizon:
            ax.axvline(pt, color="k", lw=1.2)
        meas = _majority(data["phases"][c]) if c < len(data["phases"]) else ""
        pred = data["pred_phase"][c] if c < len(data["pred_phase"]) else ""
        tag = " (calib)" if c in data["calib"] else ""
        beyond = " >T" if np.isfinite(pt) and pt > horizon else ""
        ax.set_title(
            f"{_cell_label(data['axes'], data['shape'], c)}{tag}\nmeas {meas} / pred {pred}{beyond}",
            fontsize=7,
            color="black" if meas == pred else "red",
        )
        ax.set_ylim(-0.02, 1.02)
        if steps.size:
            ax.set_xlim(float(steps.min()), horizon)
        ax.tick_params(labelsize=6)
    handles = [Line2D([], [], color=f"C{s % 10}", lw=1) for s in range(S)]
    handles += [Line2D([], [], color="k", lw=1.2), Line2D([], [], color="grey", ls="--", lw=0.8)]
    seeds = data["seeds"] if len(data["seeds"]) == S else list(range(S))
    labels = [f"seed {s}" for s in seeds] + ["predicted transition", "measured transition"]
    fig.legend(handles, labels, loc="lower center", ncols=min(len(labels), 6), fontsize=7, frameon=False)
    for ax in grid[-1]:
        ax.set_xlabel("step", fontsize=8)
    fig.supylabel(data["headline"], fontsize=9, x=0.15 / width)
    return fig


def _nanmean(a: np.ndarray) -> np.ndarray:
    return _nanreduce(np.nanmean, a)


def _nanreduce(fn: Any, a: np.ndarray) -> np.ndarray:
    """fn over the seeds (axis 1), NaN where a cell has no finite value (without the all-NaN warning)."""
    a = np.asarray(a, dtype=np.float64)
    out = np.full(a.shape[0], np.nan)
    has = np.isfinite(a).any(axis=1)
    if has.any():
        out[has] = fn(a[has], axis=1)
    return out
