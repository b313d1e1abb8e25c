"""The HTML report of a finished phase-diagram sweep (:mod:`toy_models.sweep`): one self-contained file.

:func:`write_report` reads ``config.json``, ``arrays.npz``, ``summary.csv`` and ``theory.json`` (and, when present,
the groups' ``result.json`` for their timings) and writes ``report.html`` beside them, the figures embedded as
base64 PNG (no other file is written or referenced). Sections:

1. the sweep: name, axes, seeds, task / model / training settings, time per group;
2. the held-out prediction errors, the calibration constants and the cells that calibrated them;
3. the phase diagram: measured final ICL and IWL accuracy (mean over seeds) over the first two axes, with the
   predicted boundary of in-context learning and the measured phase of every cell (line plots for one axis);
4. measured against predicted transition step (log-log, seeds' range as error bars);
5. per-cell curves of the headline measure, predicted and measured transition steps marked;
6. the summary table (``summary.csv``).

Only numpy and matplotlib are needed (no JAX): the report can be rebuilt anywhere from the run directory.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display is assumed
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from zipfhead.theory._io import atomic_write
from zipfhead.theory.phases import FORMED, LETTERS

__all__ = ["REQUIRED_FILES", "write_report"]

REQUIRED_FILES = ("config.json", "arrays.npz", "summary.csv", "theory.json")

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; color: #222; line-height: 1.4; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.calib td { background: #eef4ff; }
td.mismatch { background: #ffe3e3; }
img { max-width: 100%; height: auto; display: block; margin: 0.5em 0; }
p.note { color: #555; font-size: 0.9em; }
.scroll { max-height: 40em; overflow: auto; }
"""


# --- entry point ---------------------------------------------------------------------------------------------
def write_report(run_dir: str | Path) -> Path:
    """Write ``run_dir/report.html`` for a finished sweep (written to a temporary file, then renamed).

    Args:
        run_dir: the sweep's directory (as written by :func:`toy_models.sweep.finish`).

    Returns:
        The path of the report.

    Raises:
        ValueError: ``run_dir`` is not a finished sweep (a file is missing; the message names it).
    """
    out = Path(run_dir)
    if not out.is_dir():
        raise ValueError(f"{out} is not a finished sweep: the directory does not exist")
    for name in REQUIRED_FILES:
        if not (out / name).is_file():
            raise ValueError(f"{out} is not a finished sweep: {name} is missing")
    data = _load(out)
    sections = [
        _section_sweep(data),
        _section_scores(data),
        _section_phase(data),
        _section_transition(data),
        _section_curves(data),
        _section_summary(data),
    ]
    cfg = data["config"]
    title = f"Sweep report: {html.escape(str(cfg.get('name', out.name)))}"
    doc = "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{title}</title>",
            f"<style>{_CSS}</style></head><body>",
            f"<h1>{title}</h1>",
            # the directory's own name, not where it happened to sit: the report moves with its directory
            f'<p class="note">Run directory: <code>{html.escape(out.resolve().name)}</code></p>',
            *sections,
            "</body></html>",
        ]
    )
    return atomic_write(out / "report.html", lambda f: f.write(doc), mode="w")


# --- loading -------------------------------------------------------------------------------------------------
def _load(out: Path) -> dict[str, Any]:
    """Everything the report shows, read back from a finished run's files (config, theory, arrays, summary)."""
    config = json.loads((out / "config.json").read_text())
    theory = json.loads((out / "theory.json").read_text())
    with np.load(out / "arrays.npz") as z:
        arrays = {k: z[k] for k in z.files}
    with open(out / "summary.csv", newline="") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        rows = list(reader)
    finals = [c for c in columns if c.startswith("final_") and c != "final_iwl_acc"]
    headline = finals[0][len("final_") :] if finals else "icl_acc"
    axes = [(str(n), [float(v) for v in vals]) for n, vals in config["axes"]]
    shape = tuple(len(v) for _, v in axes)
    C = int(np.prod(shape))
    seeds = [int(s) for s in config.get("seeds", [])]
    measured, final_icl, final_iwl, phases = _per_seed(rows, headline, C, seeds)

    preds = theory.get("predictions", [])
    pred_step = np.array([_float(p.get("transition_step")) if p else math.nan for _, p in _pad(preds, C)])
    pred_phase = [str(p.get("phase", "")) if p else "" for _, p in _pad(preds, C)]
    pred_phase_cf = [str(p.get("phase_closed_form", "")) if p else "" for _, p in _pad(preds, C)]

    groups = _group_times(out)
    return {
        "out": out,
        "config": config,
        "theory": theory,
        "arrays": arrays,
        "columns": columns,
        "rows": rows,
        "headline": headline,
        "axes": axes,
        "shape": shape,
        "C": C,
        "seeds": seeds,
        "measured": measured,
        "final_icl": final_icl,
        "final_iwl": final_iwl,
        "phases": phases,
        "pred_step": pred_step,
        "pred_phase": pred_phase,
        "pred_phase_cf": pred_phase_cf,
        "calib": {int(c) for c in theory.get("calibration_cells", [])},
        "groups": groups,
    }


def _per_seed(rows: list[dict[str, str]], headline: str, C: int, seeds: list[int]):
    """(measured transition, final headline, final iwl) as (C, S) arrays and the C lists of measured phases, from
    summary.csv's rows (NaN and empty where a row is missing or malformed)."""
    S = max(1, len(seeds))
    measured = np.full((C, S), np.nan)
    final_icl = np.full((C, S), np.nan)
    final_iwl = np.full((C, S), np.nan)
    phases: list[list[str]] = [[] for _ in range(C)]
    seed_pos = {s: k for k, s in enumerate(seeds)}
    for r in rows:
        c = int(r["cell"])
        if not 0 <= c < C:
            continue
        s = seed_pos.get(int(r["seed"]), len(phases[c]) % S)
        measured[c, s] = _float(r.get("measured_transition_step"))
        final_icl[c, s] = _float(r.get(f"final_{headline}"))
        final_iwl[c, s] = _float(r.get("final_iwl_acc"))
        phases[c].append(r.get("measured_phase", "") or "")
    return measured, final_icl, final_iwl, phases


def _group_times(out: Path) -> list[tuple[str, Any, int]]:
    """(group, training seconds, cells) of each finished group whose result.json reads."""
    groups = []
    gdir = out / "groups"
    if gdir.is_dir():
        for d in sorted(gdir.glob("g[0-9]*")):
            rj = d / "result.json"
            if rj.is_file():
                try:
                    info = json.loads(rj.read_text())
                except (OSError, ValueError):
                    continue
                groups.append((d.name, info.get("seconds"), len(info.get("cells", []))))
    return groups


def _pad(items: list[Any], n: int) -> list[tuple[int, Any]]:
    return [(i, items[i] if i < len(items) else None) for i in range(n)]


def _float(x: Any) -> float:
    if x is None or x == "":
        return math.nan
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


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


# --- html helpers --------------------------------------------------------------------------------------------
def _table(header: list[str], rows: list[list[Any]], row_class: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for k, r in enumerate(rows):
        cls = f' class="{row_class[k]}"' if row_class and row_class[k] else ""
        tds = []
        for v in r:
            if isinstance(v, tuple):  # (text, td class)
                text, tdc = v
                tds.append(f'<td class="{tdc}">{html.escape(text)}</td>')
            else:
                num = isinstance(v, int | float) and not isinstance(v, bool)
                tds.append(
                    f'<td class="num">{html.escape(_fmt(v))}</td>' if num else f"<td>{html.escape(_fmt(v))}</td>"
                )
        body.append(f"<tr{cls}>{''.join(tds)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _img(fig: Figure, alt: str, dpi: int = 100) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    b64 = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def _kv(d: dict[str, Any], skip: tuple[str, ...] = ()) -> str:
    return ", ".join(f"{k} = {_fmt(v)}" for k, v in d.items() if k not in skip)


# --- sections ------------------------------------------------------------------------------------------------
def _section_sweep(data: dict[str, Any]) -> str:
    cfg = data["config"]
    axes = data["axes"]
    rows: list[list[Any]] = [
        ["name", str(cfg.get("name", ""))],
        ["axes", "; ".join(f"{n} ({len(v)}): {_vals(v)}" for n, v in axes)],
        ["cells x seeds", f"{data['C']} x {len(data['seeds'])} = {data['C'] * len(data['seeds'])} models"],
        ["seeds", ", ".join(str(s) for s in data["seeds"])],
        ["calibration choice", str(cfg.get("calibration", ""))],
        ["headline measure", data["headline"]],
    ]
    task = cfg.get("task", {})
    axis_names = {n for n, _ in axes}
    rows.append([f"task ({task.get('kind', '?')})", _kv(task, skip=("kind", *axis_names))])
    rows.append(["model", _kv(cfg.get("model", {}))])
    rows.append(["train", _kv(cfg.get("train", {}))])
    parts = ["<h2>Sweep</h2>", _table(["setting", "value"], rows)]
    parts.append(
        '<p class="note">Task parameters swept as axes are omitted from the task row; the model\'s shapes '
        "(n_ctx, d_vocab, d_vocab_out) are set per group from each group's task.</p>"
    )
    groups = data["groups"]
    if groups:
        secs = [s for _, s, _ in groups if isinstance(s, int | float)]
        total = f"{sum(secs):.1f} s in all" if secs else "no timings"
        grows = [[name, n, float(s) if isinstance(s, int | float) else None] for name, s, n in groups]
        parts.append(f"<h3>Training time per group ({len(groups)} group{'s' * (len(groups) != 1)}, {total})</h3>")
        parts.append(_table(["group", "cells", "seconds"], grows))
    else:
        parts.append('<p class="note">No group timings found (groups/gNNN/result.json).</p>')
    return "\n".join(parts)


def _section_scores(data: dict[str, Any]) -> str:
    th = data["theory"]
    scores = th.get("scores", {})
    names = {
        "median_relative_error": "median relative error of the transition step",
        "spearman": "Spearman rank correlation (measured vs predicted step)",
        "phase_agreement_percent": "phase agreement (% of held-out cells)",
    }
    rows = []
    for key, label in names.items():
        d = scores.get(key) or {}
        rows.append([label, _float(d.get("median")), _float(d.get("min")), _float(d.get("max"))])
    held = th.get("held_out_cells", [])
    ceil = scores.get("noise_ceiling") or {}

    def boot(d: dict[str, Any] | None, value: Any = None) -> list[Any]:
        d = d or {}
        return [_float(d.get("value", value)), _float(d.get("lo")), _float(d.get("hi"))]

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
    ranked = scores.get("ranked_cells", "?")
    parts = [
        "<h2>Held-out prediction errors, beside the noise ceiling</h2>",
        f"<p>The noise ceiling is how well one seed of the toys predicts another on the same held-out cells: the "
        f"{ranked} held-out cells in which every seed made a transition (the theory is ranked on those of them where "
        f"it predicts the head forms: {_fmt((scores.get('spearman_seed_means') or {}).get('cells', '?'))}). "
        "Intervals are bootstrap 90% intervals over the cells.</p>",
        _table(["score", "theory", "lo", "hi", "noise ceiling", "lo", "hi"], ceiling_rows),
        f"<p>Held-out cells: {scores.get('held_out_cells', len(held))}; cells with both a measured and a predicted "
        f"transition, per seed: {html.escape(_fmt(scores.get('pairs_per_seed', [])))}. Each score below is computed "
        "per seed over the held-out cells; the table gives its median and range over the seeds.</p>",
        _table(["score", "median over seeds", "min", "max"], rows),
        "<h3>Calibration</h3>",
        f"<p>{html.escape(str(th.get('calibration_note', '')))}</p>",
    ]
    cal = th.get("calibration", {})
    parts.append(_table(["constant", "value"], [[k, v] for k, v in cal.items()]))
    calib = sorted(data["calib"])
    labels = [f"{c} ({_cell_label(data['axes'], data['shape'], c)})" for c in calib if c < data["C"]]
    parts.append(f"<p>Calibration cells ({len(calib)}): {html.escape('; '.join(labels) or 'none')}</p>")
    return "\n".join(parts)


def _section_phase(data: dict[str, Any]) -> str:
    parts = ["<h2>Phase diagram</h2>"]
    if len(data["axes"]) >= 2:
        fig, note = _phase_2d(data)
    else:
        fig, note = _phase_1d(data)
    parts.append(_img(fig, "phase diagram"))
    parts.append(f'<p class="note">{note}</p>')
    return "\n".join(parts)


def _section_transition(data: dict[str, Any]) -> str:
    fig, note = _transition_scatter(data)
    return "\n".join(
        ["<h2>Measured vs predicted transition step</h2>", _img(fig, "transition steps"), f'<p class="note">{note}</p>']
    )


def _section_curves(data: dict[str, Any]) -> str:
    fig = _cell_curves(data)
    note = (
        f"{html.escape(data['headline'])} against step, one line per seed. Solid black vertical line: predicted "
        "transition step (when within the horizon); dashed lines: measured transition step of each seed (its colour). "
        "Panel titles give the measured (majority over seeds) and predicted phase."
    )
    return "\n".join(["<h2>Per-cell curves</h2>", _img(fig, "per-cell curves", dpi=80), f'<p class="note">{note}</p>'])


def _section_summary(data: dict[str, Any]) -> str:
    cols = data["columns"]
    rows, classes = [], []
    for r in data["rows"]:
        calib = r.get("calibration_cell", "0") in ("1", "True", "true")
        mismatch = r.get("measured_phase") != r.get("predicted_phase")
        out = []
        for c in cols:
            v = r.get(c, "")
            if c in ("measured_phase", "predicted_phase") and mismatch:
                out.append((v, "mismatch"))
            else:
                out.append((v, "num") if _is_number(v) else (v, ""))
        rows.append(out)
        classes.append("calib" if calib else "")
    return "\n".join(
        [
            "<h2>Summary table</h2>",
            '<p class="note">summary.csv: one row per cell and seed. Blue rows: calibration cells; red: measured and '
            "predicted phase differ; empty transition: none.</p>",
            f'<div class="scroll">{_table(cols, rows, classes)}</div>',
        ]
    )


def _is_number(s: str) -> bool:
    try:
        float(s)
    except (TypeError, ValueError):
        return False
    return True


# --- figures -------------------------------------------------------------------------------------------------
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


def _phase_2d(data: dict[str, Any]) -> tuple[Figure, str]:
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
    rest = ""
    if len(extra) > 1:
        rest = (
            " Axes beyond the third are shown at their first value: "
            + ", ".join(f"{n}={v[0]:g}" for n, v in extra[1:])
            + "."
        )
    note = (
        "Colour: measured final accuracy, mean over seeds. Red solid line: predicted boundary of in-context learning "
        "(cells predicted icl, both or transient on one side); red dotted: the same from the closed forms. "
        "Letters: measured phase per cell (I = icl, W = iwl, B = both, N = neither, T = transient, D = diverged; "
        "several letters when seeds differ, most frequent first). Dashed red square: measured (majority) phase "
        "differs from the predicted phase. Orange square: calibration cell. Axes are drawn at index positions, "
        "labelled with their values." + rest
    )
    return fig, note


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


def _phase_1d(data: dict[str, Any]) -> tuple[Figure, str]:
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
    note = (
        "Blue background: cells predicted to learn in context (icl, both or transient). Letters above the left panel: "
        "measured phase (I = icl, W = iwl, B = both, N = neither, T = transient, D = diverged; red when the "
        "majority differs from the predicted phase). Axis values at index positions."
    )
    return fig, note


def _transition_scatter(data: dict[str, Any]) -> tuple[Figure, str]:
    meas = data["measured"]
    med = _nanreduce(np.nanmedian, meas)
    lo, hi = _nanreduce(np.nanmin, meas), _nanreduce(np.nanmax, meas)
    pred = data["pred_step"]
    calib = np.array([c in data["calib"] for c in range(data["C"])])
    ok = np.isfinite(med) & np.isfinite(pred) & (pred > 0) & (med > 0)
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
    only_m = int((np.isfinite(med) & ~np.isfinite(pred)).sum())
    only_p = int((~np.isfinite(med) & np.isfinite(pred)).sum())
    note = (
        f"{int(ok.sum())} cells plotted; error bars: min to max over the seeds with a measured transition. "
        f"Cells with a measured transition but none predicted: {only_m}; predicted but never measured: {only_p}."
    )
    return fig, note


def _cell_curves(data: dict[str, Any]) -> Figure:
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
