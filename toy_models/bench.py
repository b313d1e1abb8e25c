"""The training part of ``zipfhead bench``: matmul efficiency, batched engine vs a loop, data cost, and the JAX toy
against its PyTorch-eager twin.

All ratios are taken in one run on one machine, after a warm-up call (compilation excluded), as medians.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import statistics as pystats
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from zipfhead.theory.distributions import ClassificationTask, TokenStreamTask
from zipfhead.toy_models.config import io_shape
from zipfhead.toy_models.model import ModelConfig
from zipfhead.toy_models.sweep import format_profile, preset
from zipfhead.toy_models.tasks import derive_seed
from zipfhead.toy_models.train import (
    RunConfig,
    TrainConfig,
    data_streams,
    device_sampler_consts,
    engine_for,
    sharders,
    stack_chunks,
)

__all__ = ["bench_sweep", "bench_training", "format_sweep", "matmul_peak", "model_flops"]


def _median(fn: Callable[[], Any], repeats: int) -> float:
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return pystats.median(times)


def _paired(f: Callable[[], Any], g: Callable[[], Any], repeats: int) -> tuple[list[float], list[float]]:
    """Wall times of f and g, called alternately after one warm-up call each."""
    jax.block_until_ready(f())
    jax.block_until_ready(g())
    tf, tg = [], []
    for _ in range(repeats):
        for fn, times in ((f, tf), (g, tg)):
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            times.append(time.perf_counter() - t0)
    return tf, tg


def matmul_peak(n: int = 1024, repeats: int = 5) -> float:
    """float32 GFLOP/s of a jitted n x n matmul on the default device."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
    f = jax.jit(jnp.dot)
    return 2 * n**3 / _median(lambda: f(a, b), repeats) / 1e9


def model_flops(cfg: ModelConfig, batch: int, T: int) -> float:
    """Matmul FLOPs of one training step (forward + backward ~ 3 x forward) of one model."""
    H, d, e = cfg.n_heads, cfg.d_model, cfg.d_head
    per_layer = 2 * batch * T * d * H * e * 4 + 2 * 2 * batch * H * T * T * e  # Q, K, V, O; scores, mixing
    unembed = 2 * batch * T * d * cfg.d_vocab_out
    return 3.0 * (cfg.n_layers * per_layer + unembed)


def _setup(run: RunConfig, steps: int):
    eng = engine_for(run)
    streams = data_streams(run)
    means = [s.means() for s in streams]
    keys = jnp.stack([jax.random.PRNGKey(derive_seed(s, "init")) for s in run.model_seeds])
    state = eng.init(keys, jnp.asarray(run.model_lrs, jnp.float32), jnp.asarray(run.model_weight_decays, jnp.float32))
    data = stack_chunks([s.train_chunk(m, 0, steps, run.train.batch_size) for s, m in zip(streams, means, strict=True)])
    on_models, on_scan = sharders(len(streams))  # as train() places them: models split over the devices
    return eng, on_models(state), on_scan(data)


def _steps_per_second(run: RunConfig, steps: int, repeats: int) -> float:
    eng, state, data = _setup(run, steps)
    holder = {"state": state}

    def go():
        holder["state"], loss = eng.run_chunk(holder["state"], data)
        return loss

    return steps / _median(go, repeats)


def _token_run(batch: int, models: int = 1) -> RunConfig:
    task = TokenStreamTask(V=64, T=65)
    model = ModelConfig(n_ctx=64, d_vocab=64, d_vocab_out=64, n_layers=2, d_model=64)
    return RunConfig(task=task, model=model, train=TrainConfig(batch_size=batch), seeds=tuple(range(models)))


def _classification_run(models: int = 1) -> RunConfig:
    task = ClassificationTask()
    n_ctx, d_vocab, d_vocab_out = io_shape(task)
    model = ModelConfig(n_ctx=n_ctx, d_vocab=d_vocab, d_vocab_out=d_vocab_out, d_model=128, positional="onehot")
    return RunConfig(task=task, model=model, train=TrainConfig(batch_size=64), seeds=tuple(range(models)))


def bench_training(quick: bool = False) -> dict[str, Any]:
    """Matmul efficiency of the token toy and of the demo's toy (its models as the demo trains them), batched-vs-loop
    throughput, the data share of a step, host against device sampling, and the PyTorch twin."""
    repeats = 2 if quick else 5
    steps = 5 if quick else 25
    n_models = 4 if quick else 32
    peak = matmul_peak(512 if quick else 1024, repeats)
    devices = f"{len(jax.devices())} x {jax.devices()[0].platform}"
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    rows: dict[str, Any] = {"devices": devices, "glibc_tunables": tunables, "matmul_peak_gflops": peak}
    rows["efficiency"] = _bench_efficiency(peak, steps, repeats, quick)
    rows["batching"] = [
        _bench_batching(name, make, n_models, steps, repeats)
        for name, make in (("classification (default task)", _classification_run), ("token (d64 ctx64 b32)", None))
    ]
    # Data: the time to draw one step's batch against one step's training, at the default classification size.
    run = _classification_run(1)
    stream = data_streams(run)[0]
    means = stream.means()
    t_data = _median(lambda: stream.train_chunk(means, 0, steps, run.train.batch_size), repeats) / steps
    t_step = 1.0 / _steps_per_second(run, steps, repeats)
    rows["data_fraction"] = {
        "data_ms_per_step": 1e3 * t_data,
        "train_ms_per_step": 1e3 * t_step,
        "fraction": t_data / t_step,
    }
    rows["sampling"] = bench_sampling(_classification_run(n_models), steps, repeats)
    if importlib.util.find_spec("torch") is None:
        rows["torch"] = "skipped: torch is not importable (it comes with the lens extra)"
    else:
        rows["torch"] = bench_torch_twin(_token_run(32), steps, repeats, rows["efficiency"][0]["steps_per_s"])
    return rows


def _bench_efficiency(peak: float, steps: int, repeats: int, quick: bool) -> list[dict[str, Any]]:
    """Model-steps per second and the share of the matmul ``peak`` (GFLOP/s): the token toy at batch 32 and 128,
    and the demo's toy as the demo trains it (its models split over the devices, each group's width as the engine
    picks it, on pre-drawn batches: the data's cost is the data_fraction row and the sweep's profile)."""
    rows = []
    for batch in (32, 128):
        run = _token_run(batch)
        sps = _steps_per_second(run, steps, repeats)
        flops = model_flops(run.model, batch, 64) * sps / 1e9
        rows.append(
            {
                "toy": f"token 2-layer d64 ctx64 batch {batch}",
                "steps_per_s": sps,
                "gflops": flops,
                "of_peak": flops / peak,
            }
        )
    demo = preset("demo")
    n_demo = 4 if quick else len(demo.cells()) * len(demo.seeds)
    task = demo.cell_task(demo.cells()[0])  # every cell of the demo has the same shapes
    run = RunConfig(task=task, model=demo.model, train=demo.train, seeds=tuple(range(n_demo)))
    model_sps = n_demo * _steps_per_second(run, steps, repeats)
    flops = model_flops(run.model, run.train.batch_size, run.model.n_ctx) * model_sps / 1e9
    toy = f"demo toy d{run.model.d_model} ctx{run.model.n_ctx} b{run.train.batch_size}, {n_demo} models"
    rows.append({"toy": toy, "steps_per_s": model_sps, "gflops": flops, "of_peak": flops / peak})
    return rows


def _bench_batching(name: str, make: Any, n_models: int, steps: int, repeats: int) -> dict[str, Any]:
    """The batched engine against a Python loop of the same models, one engine call each (``make(n)``: a run of n
    models; None: the token toy)."""
    batched = make(n_models) if make else _token_run(32, n_models)
    single = make(1) if make else _token_run(32, 1)
    beng, bstate, bdata = _setup(batched, steps)
    width = beng.choose(bstate, bdata, probe=True)  # the execution train() would pick
    held = {"state": bstate}

    def engine():
        held["state"], loss = beng.run_chunk(held["state"], bdata)
        return loss

    eng, state, data = _setup(single, steps)
    states = [jax.tree_util.tree_map(jnp.copy, state) for _ in range(n_models)]  # run_chunk donates its input

    def loop():
        out = None
        for i in range(n_models):
            states[i], out = eng.run_chunk(states[i], data)
        return out

    # Interleaved, so that both see the same machine load; the ratio is the median of paired ratios.
    t_engine, t_loop = _paired(engine, loop, repeats)
    return {
        "toy": name,
        "models": n_models,
        "width": width,
        "vmapped_model_steps_per_s": steps * n_models / pystats.median(t_engine),
        "loop_model_steps_per_s": steps * n_models / pystats.median(t_loop),
        "ratio": pystats.median(b / a for a, b in zip(t_engine, t_loop, strict=True)),
    }


def bench_sampling(run: RunConfig, steps: int, repeats: int) -> dict[str, Any]:
    """A chunk of ``steps`` training steps of ``run``'s models end to end: the host path (draw every model's batches
    with the Numba samplers, transfer, train) against the device path (the JAX samplers inside the chunk)."""
    host_eng, host_state, _ = _setup(run, steps)
    streams = data_streams(run)
    means = [s.means() for s in streams]
    on_models, on_scan = sharders(len(streams))
    held = {"host": host_state}

    def host():
        chunks = [s.train_chunk(m, 0, steps, run.train.batch_size) for s, m in zip(streams, means, strict=True)]
        held["host"], loss = host_eng.run_chunk(held["host"], on_scan(stack_chunks(chunks)))
        return loss

    dev_run = dataclasses.replace(run, train=dataclasses.replace(run.train, sampler="device"))
    dev_eng, dev_state, _ = _setup(dev_run, 1)
    consts = on_models(jax.tree_util.tree_map(jnp.asarray, device_sampler_consts(dev_run, means)))
    step_data = on_scan({"step": jnp.broadcast_to(jnp.arange(steps, dtype=jnp.int32)[:, None], (steps, len(streams)))})
    held["device"] = dev_state

    def device():
        held["device"], loss = dev_eng.run_chunk(held["device"], step_data, consts=consts)
        return loss

    t_host, t_device = _paired(host, device, repeats)
    return {
        "toy": f"classification (default task), {len(streams)} models",
        "host_model_steps_per_s": steps * len(streams) / pystats.median(t_host),
        "device_model_steps_per_s": steps * len(streams) / pystats.median(t_device),
        "device_over_host": pystats.median(h / d for h, d in zip(t_host, t_device, strict=True)),
    }


def bench_torch_twin(run: RunConfig, steps: int, repeats: int, jax_steps_per_s: float) -> dict[str, Any]:
    """Steps per second of the PyTorch-eager twin (:mod:`toy_models.torch_twin`) on ``run``'s toy and batch size,
    on pre-drawn batches (no data cost, as the JAX engine's staged chunks), against the JAX toy's measured rate."""
    import torch

    from zipfhead.theory.samplers import sample_token_streams
    from zipfhead.toy_models.model import init_params
    from zipfhead.toy_models.torch_twin import TorchToy, torch_step_fn

    params = init_params(run.model, jax.random.PRNGKey(0))
    step = torch_step_fn(TorchToy(run.model, params), run.train.lr)
    batch = run.train.batch_size
    batches = [sample_token_streams(run.task, batch, 0, offset=batch * i).tokens for i in range(steps)]

    def go():
        return [step(b) for b in batches]

    torch_sps = steps / _median(go, repeats)
    return {
        "toy": f"token 2-layer d{run.model.d_model} ctx{run.model.n_ctx} batch {batch}",
        "torch_threads": torch.get_num_threads(),
        "torch_steps_per_s": torch_sps,
        "jax_steps_per_s": jax_steps_per_s,
        "ratio": jax_steps_per_s / torch_sps,
    }


def format_training(rows: dict[str, Any]) -> str:
    """The training benchmark as a readable table."""
    peak = rows["matmul_peak_gflops"]
    out = [f"\nTraining on {rows['devices']} (float32 matmul peak measured now: {peak:.1f} GFLOP/s)"]
    out.append(f"  glibc allocator tunables: {rows.get('glibc_tunables') or 'none'}")
    for r in rows["efficiency"]:
        out.append(
            f"  {r['toy']:<38} {r['steps_per_s']:8.1f} (model-)steps/s {r['gflops']:7.1f} GFLOP/s "
            f"{r['of_peak']:6.1%} of peak"
        )
    for r in rows["batching"]:
        out.append(
            f"  {r['toy']:<38} {r['models']} models: engine (vmap width {r['width']}) "
            f"{r['vmapped_model_steps_per_s']:8.1f}, loop {r['loop_model_steps_per_s']:8.1f} model-steps/s, "
            f"x{r['ratio']:.2f} (median of paired ratios)"
        )
    d = rows["data_fraction"]
    out.append(
        f"  data per step {d['data_ms_per_step']:.2f} ms vs training step {d['train_ms_per_step']:.2f} ms "
        f"({d['fraction']:.1%})"
    )
    sm = rows["sampling"]
    out.append(
        f"  training data drawn on the host (Numba) against inside the chunk (JAX), {sm['toy']}: "
        f"{sm['host_model_steps_per_s']:.1f} against {sm['device_model_steps_per_s']:.1f} model-steps/s, "
        f"device path x{sm['device_over_host']:.2f}"
    )
    t = rows["torch"]
    if isinstance(t, dict):
        out.append(
            f"  PyTorch eager twin, {t['toy']}: {t['torch_steps_per_s']:.1f} steps/s ({t['torch_threads']} threads) "
            f"against JAX {t['jax_steps_per_s']:.1f}: JAX x{t['ratio']:.2f}"
        )
    else:
        out.append(f"  PyTorch eager twin: {t}")
    return "\n".join(out)


# --- sweeps ------------------------------------------------------------------------------------------------------
def bench_sweep(quick: bool = False) -> dict[str, Any]:
    """Sweep throughput against training the same cells one at a time, and the cost of rerunning a finished sweep.

    The sweep: the demo preset's first ``C`` cells (K x p_B) x 1 seed for ``steps`` steps, in a fresh directory
    (compilation included, as a user sees it). The baselines train the same cells one model at a time:
    ``in-process`` (one Python process, the engine compiled once and reused) and ``zipfhead train`` (one process
    per cell, as the CLI does; timed on one cell and multiplied by C). The resume overhead is the wall time of
    ``zipfhead sweep`` rerun on the finished directory (a fresh process: imports included).

    One function (about 80 lines of code) on purpose: the four timings run in sequence on one sweep config, in one
    temporary directory, and each reads what the one before left there.
    """
    import dataclasses
    import json
    import os
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from zipfhead.toy_models.sweep import preset, run_sweep
    from zipfhead.toy_models.train import train

    C, steps = (4, 100) if quick else (16, 400)
    demo = preset("demo")
    Ks, pBs = demo.axes[0][1], demo.axes[1][1]
    n_k = max(1, C // len(pBs))
    cfg = dataclasses.replace(
        demo,
        axes=(("K", Ks[:n_k]), ("p_B", pBs)),
        seeds=(0,),
        train=dataclasses.replace(demo.train, steps=steps, eval_every=100),
    )
    cells = len(cfg.cells())
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sweep"
        t0 = time.perf_counter()
        run_sweep(cfg, out, progress=False)
        sweep_s = time.perf_counter() - t0
        train_s = sum(
            json.loads(p.read_text())["seconds"] for p in out.glob("groups/*/result.json")
        )  # training only (compilation included; aggregation, theory and report excluded)
        profile = json.loads((out / "profile.json").read_text())

        t0 = time.perf_counter()
        for i in range(cells):
            train(cfg.group_run([i]), None, progress=False)
        loop_s = time.perf_counter() - t0

        task = cfg.cell_task(cfg.cells()[0])
        args = [
            "train", "--K", str(task.K), "--N", str(task.N), "--D", str(task.D), "--L", str(task.L), "--B",
            str(task.B), "--p_B", str(task.p_B), "--alpha", str(task.alpha), "--d_model", "64", "--positional",
            "onehot", "--init_scale", "0.3", "--steps", str(steps), "--eval_every", "100", "--eval_size",
            str(cfg.train.eval_size), "--seeds", "0", "--no-progress", "--out", str(Path(tmp) / "one"),
        ]  # fmt: skip
        env = dict(os.environ)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "zipfhead.cli", *args], env=env, check=True, capture_output=True)
        one_cli_s = time.perf_counter() - t0

        cfg_path = Path(tmp) / "grid.json"
        cfg_path.write_text(
            json.dumps(
                {
                    "name": cfg.name,
                    "axes": {n: list(v) for n, v in cfg.axes},
                    "seeds": list(cfg.seeds),
                    "train": {"steps": steps, "eval_every": 100},
                }
            )
        )
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "zipfhead.cli", "sweep", "--grid", str(cfg_path), "--out", str(out),
             "--no-progress"],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        resume_s = time.perf_counter() - t0
    work = cells * steps
    return {
        "cells": cells,
        "steps": steps,
        "sweep_cell_steps_per_s": work / sweep_s,
        "loop_cell_steps_per_s": work / loop_s,
        "cli_cell_steps_per_s": work / (one_cli_s * cells),
        "sweep_training_s": train_s,
        "sweep_total_s": sweep_s,
        "speedup_vs_loop": loop_s / sweep_s,
        "training_speedup_vs_loop": loop_s / train_s,
        "speedup_vs_cli": one_cli_s * cells / sweep_s,
        "resume_overhead_s": resume_s,
        "profile": profile,
    }


def format_sweep(r: dict[str, Any]) -> str:
    """The sweep benchmark as a readable table."""
    return "\n".join(
        [
            f"\nSweep of {r['cells']} cells x 1 seed x {r['steps']} steps (cell-steps per second, compile included)",
            f"  zipfhead sweep (one vmapped batch)    {r['sweep_cell_steps_per_s']:10.1f}",
            f"  one cell at a time, one process       {r['loop_cell_steps_per_s']:10.1f}  x{r['speedup_vs_loop']:.1f}",
            f"  one zipfhead train per cell           {r['cli_cell_steps_per_s']:10.1f}  x{r['speedup_vs_cli']:.1f}",
            f"  rerun of the finished sweep           {r['resume_overhead_s']:10.2f} s",
            f"  sweep wall time {r['sweep_total_s']:.1f} s, of which training {r['sweep_training_s']:.1f} s "
            f"(training alone x{r['training_speedup_vs_loop']:.1f} the one-process loop)",
            "  " + format_profile(r["profile"]).replace("\n", "\n  "),
        ]
    )
