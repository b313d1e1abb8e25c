"""The batched training engine: many toys at once, one compilation.

A *run* trains M models that share a model shape and a task shape but differ in seed and learning rate (and,
through their data streams, in distribution parameters). One training step is a pure function of one model's
state and batch; ``vmap`` lifts it to the M models and ``lax.scan`` runs a chunk of steps inside one ``jit``,
so the whole run compiles once. Learning rates live in the optimiser state (``optax.inject_hyperparams``):
a sweep over them does not recompile.

Data are streamed from the Numba samplers by offset (see :mod:`toy_models.tasks`): the batch of step s is a
function of (seed, s), so an interrupted run resumed from a checkpoint sees exactly the data it would have
seen, and gives the same numbers. With ``TrainConfig.sampler = "device"`` the batches are instead drawn inside
the compiled chunk by the JAX twins of :mod:`toy_models.device_samplers`, from fold_in(key(seed), s): still a
function of (seed, s), with nothing generated or transferred on the host (for accelerators).

Evaluation runs every ``eval_every`` steps on fixed evaluation sets, and every ``eval_every / dense_factor``
steps while any model's headline measure is moving fast (densely logged around the transition). A model
whose loss becomes NaN or inf, or exceeds :data:`DIVERGENCE_FACTOR` times the loss of a uniform guess
(ln d_vocab_out), is marked diverged and frozen before that step's update; its batch-mates go on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from zipfhead.theory._io import atomic_write, remove
from zipfhead.theory.distributions import ClassificationTask, MarkovTask, TokenStreamTask
from zipfhead.toy_models import measures as ms
from zipfhead.toy_models.config import RunConfig, TrainConfig, headline_measure, shape_signature, task_kind
from zipfhead.toy_models.model import ModelConfig, forward, init_params
from zipfhead.toy_models.tasks import (
    ClassificationStream,
    DataStream,
    MarkovStream,
    TokenStream,
    classification_inputs,
    derive_seed,
)

__all__ = [
    "RunConfig",
    "TrainConfig",
    "data_stream",
    "data_streams",
    "engine_for",
    "shape_signature",
    "sharders",
    "stack_chunks",
    "train",
]

#: the parts of a run's wall time that :attr:`RunResult.timings` records, in the loop's order
TIMING_PARTS = ("setup", "first_chunk", "data", "train_wait", "evaluate", "checkpoint", "other")


# --- optimiser -----------------------------------------------------------------------------------------------
def _attention_mask(params: Any) -> Any:
    """True on the attention weights (every leaf under ``blocks[i]["attn"]``), False elsewhere."""

    def fill(tree: Any, value: bool) -> Any:
        return jax.tree_util.tree_map(lambda _: value, tree)

    return {
        k: [{n: fill(b, n == "attn") for n, b in blk.items()} for blk in v] if k == "blocks" else fill(v, False)
        for k, v in params.items()
    }


def _adamw(mask: Callable | None, beta2: float = 0.999) -> Callable:
    # optax.adamw's numeric arguments, defaults included, so that the injected state keeps the layout of
    # inject_hyperparams(optax.adamw) (checkpoints written before the mask existed still load)
    def factory(learning_rate, b1=0.9, b2=beta2, eps=1e-8, eps_root=0.0, weight_decay=1e-4):
        return optax.adamw(learning_rate, b1, b2, eps, eps_root, weight_decay=weight_decay, mask=mask)

    return factory


def _sgdw(mask: Callable | None) -> Callable:
    def factory(learning_rate, momentum, weight_decay):
        decay = optax.add_decayed_weights(weight_decay, mask)
        return optax.chain(decay, optax.sgd(learning_rate, momentum=momentum))

    return factory


def make_optimizer(
    tcfg: TrainConfig, lr: float | jnp.ndarray, weight_decay: float | jnp.ndarray | None = None
) -> optax.GradientTransformation:
    """The optimiser with its learning rate and weight decay injected as state (so they may differ across vmapped
    models); ``weight_decay`` None means ``tcfg.weight_decay``."""
    mask = _attention_mask if tcfg.decay_on == "attention" else None
    wd = tcfg.weight_decay if weight_decay is None else weight_decay
    if tcfg.optimizer == "adam":
        base = optax.inject_hyperparams(_adamw(mask, tcfg.beta2))(learning_rate=lr, weight_decay=wd)
    else:
        base = optax.inject_hyperparams(_sgdw(mask))(learning_rate=lr, momentum=tcfg.momentum, weight_decay=wd)
    if tcfg.warmup_steps:
        warm = tcfg.warmup_steps
        return optax.chain(base, optax.scale_by_schedule(lambda n: jnp.minimum(1.0, (n + 1) / warm)))
    return base


#: a model whose training loss exceeds this many times ln(d_vocab_out) (a uniform guess; an initialised toy is
#: near it) is diverged: no trained toy comes near it (confidently wrong on a whole batch), and an lr of 50
#: sent the loss to 1e14 while staying finite
DIVERGENCE_FACTOR = 10.0


# --- losses --------------------------------------------------------------------------------------------------
def data_stream(task: ClassificationTask | TokenStreamTask | MarkovTask, seed: int) -> DataStream:
    """The data stream of one model on ``task`` (:mod:`toy_models.tasks`)."""
    cls = {"classification": ClassificationStream, "tokens": TokenStream, "markov": MarkovStream}[task_kind(task)]
    return cls(task, seed)


def data_streams(run: RunConfig) -> list[DataStream]:
    """The data stream of each of the run's M models (its task and seed), in model order."""
    return [data_stream(t, s) for t, s in zip(run.model_tasks, run.model_seeds, strict=True)]


def _loss_fn(cfg: ModelConfig, kind: str, L: int) -> Callable:
    if kind == "classification":

        def loss(params, batch):
            inputs = classification_inputs(batch["items"], batch["labels"], L)
            logits = forward(params, cfg, inputs)[:, -1]
            return ms.cross_entropy(logits, batch["labels"][:, -1])

    else:

        def loss(params, batch):
            tokens = batch["tokens"]
            logits = forward(params, cfg, tokens[:, :-1])
            return ms.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))

    return loss


# --- the engine ----------------------------------------------------------------------------------------------
class Engine:
    """Compiled functions of one run: ``init``, ``run_chunk`` (a scan of vmapped steps) and ``evaluate``."""

    def __init__(self, run: RunConfig):
        self.run = run
        cfg, tcfg = run.model, run.train
        L = run.task.L if run.kind == "classification" else 0
        loss_fn = _loss_fn(cfg, run.kind, L)
        update = make_optimizer(tcfg, 0.0).update  # reads each model's lr and weight decay from its own state
        loss_bound = DIVERGENCE_FACTOR * math.log(max(cfg.d_vocab_out, 2))

        def init_one(key, lr, wd):
            params = init_params(cfg, key)
            return {"params": params, "opt_state": make_optimizer(tcfg, lr, wd).init(params), "diverged": False}

        def step_one(state, batch):
            loss, grads = jax.value_and_grad(loss_fn)(state["params"], batch)
            updates, opt_state = update(grads, state["opt_state"], state["params"])
            params = optax.apply_updates(state["params"], updates)
            healthy = (
                jnp.isfinite(loss)
                & (loss <= loss_bound)
                & jnp.all(jnp.array([jnp.all(jnp.isfinite(g)) for g in jax.tree_util.tree_leaves(grads)]))
            )
            keep = healthy & ~state["diverged"]
            new = {"params": params, "opt_state": opt_state}
            old = {"params": state["params"], "opt_state": state["opt_state"]}
            frozen = jax.tree_util.tree_map(lambda n, o: jnp.where(keep, n, o), new, old)
            return {**frozen, "diverged": state["diverged"] | ~healthy}, loss

        self._step = step_one
        self.device_sampling = tcfg.sampler == "device"
        self._sample = _device_batch_fn(run) if self.device_sampling else None
        self._compiled: dict[tuple, Callable] = {}  # (M, width) -> jitted chunk
        self._width: dict[tuple, int] = {}  # (M, data shapes) -> chosen width
        self.probe_seconds: dict[tuple, dict[int, float]] = {}  # what the timed probes measured
        self.init = jax.jit(jax.vmap(init_one))
        self._eval_one = self._eval_fn()
        self._evaluators: dict[int, Callable] = {}

    def chunk_fn(self, M: int, width: int) -> Callable:
        """The jitted chunk for M models: a scan of steps, the models vmapped in groups of ``width``.

        The model axis is split over every device (shard_map); each device runs its M / n_devices models as
        groups of ``width`` vmapped models, one group after another (``lax.map``), each group a scan of steps.
        ``width`` equal to the per-device count is a plain vmap; 1 is a loop over single models.

        The chunk takes (state, data, consts): ``data`` has a leading step axis then the model axis (host batches,
        or under device sampling each step's number), ``consts`` the model axis only (device sampling: each model's
        sampler parameters and key; host: None).
        """
        if (M, width) in self._compiled:
            return self._compiled[(M, width)]
        step_one, sample = self._step, self._sample
        if sample is None:
            vstep = jax.vmap(lambda state, batch, _: step_one(state, batch))
        else:
            vstep = jax.vmap(lambda state, x, c: step_one(state, sample(x["step"], c)))

        def scan(state, data, consts):
            return jax.lax.scan(lambda st, x: vstep(st, x, consts), state, data)

        def local(state, data, consts):
            m = jax.tree_util.tree_leaves(state)[0].shape[0]
            if width >= m:
                return scan(state, data, consts)
            g = m // width
            state_g, consts_g = jax.tree_util.tree_map(lambda x: x.reshape(g, width, *x.shape[1:]), (state, consts))
            data_g = jax.tree_util.tree_map(
                lambda x: jnp.moveaxis(x.reshape(x.shape[0], g, width, *x.shape[2:]), 1, 0), data
            )
            new, losses = jax.lax.map(lambda args: scan(*args), (state_g, data_g, consts_g))  # losses (g, n, width)
            new = jax.tree_util.tree_map(lambda x: x.reshape(m, *x.shape[2:]), new)
            return new, jnp.moveaxis(losses, 0, 1).reshape(losses.shape[1], m)

        mesh = _mesh(M)
        fn = local
        if mesh is not None:
            fn = jax.shard_map(
                local,
                mesh=mesh,
                in_specs=(PartitionSpec("model"), PartitionSpec(None, "model"), PartitionSpec("model")),
                out_specs=(PartitionSpec("model"), PartitionSpec(None, "model")),
            )
        self._compiled[(M, width)] = jax.jit(fn, donate_argnums=0)
        return self._compiled[(M, width)]

    def widths(self, M: int) -> list[int]:
        """Candidate group widths: powers of two dividing the per-device model count, and that count itself."""
        mesh = _mesh(M)
        per_device = M // (mesh.size if mesh is not None else 1)
        powers = (1 << k for k in range(per_device.bit_length()))
        return sorted({w for w in powers if per_device % w == 0} | {per_device})

    def choose(self, state: Any, data: Any, probe: bool = True, consts: Any = None) -> int:
        """The group width for this (M, data shape): a function of the shape and the platform, so that the same
        config gives the same numbers in every process (widths agree only to float tolerance).

        Off the CPU: a plain vmap over each device's models. On CPU: the largest candidate up to
        :data:`CPU_WIDTH`. ``ZIPFHEAD_VMAP_WIDTH=w`` forces a width (rounded down to a candidate);
        ``ZIPFHEAD_VMAP_WIDTH=probe`` times each candidate once on this chunk (a copy of the state, compiled
        beforehand) and keeps the fastest, when ``probe`` allows it: faster on some machines, but another
        process may pick another width.
        """
        M = jax.tree_util.tree_leaves(state)[0].shape[0]
        key = (M, tuple((k, v.shape[1:]) for k, v in sorted(data.items())))  # any chunk length
        if key in self._width:
            return self._width[key]
        widths = self.widths(M)
        forced = os.environ.get("ZIPFHEAD_VMAP_WIDTH", "")
        on_cpu = jax.devices()[0].platform == "cpu"
        if forced and forced != "probe":
            width = max([w for w in widths if w <= max(1, int(forced))], default=1)
        elif forced == "probe" and probe and on_cpu and len(widths) > 1:
            seconds = {}
            for w in widths:
                compiled = self.chunk_fn(M, w).lower(state, data, consts).compile()
                copy = jax.tree_util.tree_map(jnp.copy, state)
                jax.block_until_ready(copy)
                t0 = time.perf_counter()
                jax.block_until_ready(compiled(copy, data, consts))
                seconds[w] = time.perf_counter() - t0
            width = min(seconds, key=seconds.get)
            self.probe_seconds[key] = seconds
        elif on_cpu:
            width = max(w for w in widths if w <= CPU_WIDTH)  # widths[0] is 1
        else:
            width = widths[-1]
        self._width[key] = width
        return width

    def run_chunk(self, state: Any, data: Any, probe: bool = False, consts: Any = None) -> tuple[Any, jnp.ndarray]:
        """One chunk of steps for all models (state donated); the execution as :meth:`choose` picks it.
        ``data`` and ``consts``: see :meth:`chunk_fn`."""
        M = jax.tree_util.tree_leaves(state)[0].shape[0]
        return self.chunk_fn(M, self.choose(state, data, probe, consts))(state, data, consts)

    def evaluate(self, params: Any, sets: Any) -> dict[str, jnp.ndarray]:
        """Every model's measures on its evaluation sets: params and sets with a leading model axis (M, ...).

        The model axis is split over every device, as in training. Off the CPU each device vmaps its models; on
        CPU it evaluates them one after another inside one compiled program (``lax.map``), which measured 1.8x
        faster than one vmap over the demo's 36 models (1.2 s against 2.2 s an evaluation) and gives each model
        exactly the numbers it would get alone.
        """
        M = jax.tree_util.tree_leaves(params)[0].shape[0]
        if M not in self._evaluators:
            one = self._eval_one
            if jax.devices()[0].platform == "cpu":

                def local(p, s):
                    return jax.lax.map(lambda args: one(*args), (p, s))

            else:
                local = jax.vmap(one)
            mesh = _mesh(M)
            fn = local
            if mesh is not None:
                spec = PartitionSpec("model")
                fn = jax.shard_map(local, mesh=mesh, in_specs=(spec, spec), out_specs=spec)
            self._evaluators[M] = jax.jit(fn)
        return self._evaluators[M](params, sets)

    def _eval_fn(self) -> Callable:
        """One model's evaluation, (params, sets) -> {measure: scalar}, for the run's kind of task."""
        cfg, run = self.run.model, self.run
        if run.kind == "classification":
            return _classification_evaluator(cfg, run.task.L, run.task.D)
        if run.kind == "markov":
            return _markov_evaluator(cfg)
        return _token_evaluator(cfg, run.task.T)


def _classification_evaluator(cfg: ModelConfig, L: int, D: int) -> Callable:
    """In-context classification: accuracy and loss on each set, the swap set's in-weights answers, the
    heads' scores on the icl and mix sets, and the norms of the item embedding and the label unembedding."""

    def evaluate(params, sets):
        # RMS norms of the embedding's item rows and of the unembedding's label columns: the scales shared
        # by the in-weights read-out and the induction circuit (match and copy), for the repetition study
        W_E, W_U = params["embed"]["W_E"], params["unembed"]["W_U"]
        out = {
            "item_embed_norm": jnp.sqrt(jnp.mean(jnp.sum(W_E[:D] ** 2, axis=-1))),
            "unembed_norm": jnp.sqrt(jnp.mean(jnp.sum(W_U**2, axis=0))),
        }
        for name, s in sets.items():
            inputs = classification_inputs(s["items"], s["labels"], L)
            logits, cache = forward(params, cfg, inputs, cache=True)
            q = logits[:, -1]
            out[f"{name}_acc"] = ms.accuracy(q, s["labels"][:, -1])
            out[f"{name}_loss"] = ms.cross_entropy(q, s["labels"][:, -1])
            if name == "swap":  # how often the answer is the class's own (in-weights) label
                out["swap_iwl_acc"] = ms.accuracy(q, s["classes"][:, -1] % L)
            if name in ("icl", "mix"):
                pattern = cache["pattern"]  # (layers, B, H, T, T)
                prefix = "" if name == "icl" else "mix_"  # novel classes, or the training mixture
                out[f"{prefix}prev_score"] = jax.vmap(ms.item_to_label_previous_score)(pattern)
                out[f"{prefix}induction_score"] = jax.vmap(ms.query_to_matching_label_score, (0, None))(
                    pattern, s["classes"]
                )
                out[f"{prefix}self_score"] = jax.vmap(ms.query_self_score)(pattern)
        return out

    return evaluate


def _markov_evaluator(cfg: ModelConfig) -> Callable:
    """In-context Markov chains: loss, progress between the predictors' rungs, previous-token and induction scores."""

    def evaluate(params, sets):
        s = sets["chain"]
        tokens = s["tokens"]
        logits, cache = forward(params, cfg, tokens[:, :-1], cache=True)
        loss = ms.loss_by_position(logits, tokens[:, 1:]).mean()
        uniform, unigram, bigram = s["ref"][0], s["ref"][1], s["ref"][2]
        pattern = cache["pattern"]
        return {
            "loss": loss,
            # 1 at the unigram rung (from 0 at uniform), and 1 at the Bayes bigram (from 0 at the unigram)
            "unigram_progress": (uniform - loss) / (uniform - unigram),
            "bigram_progress": (unigram - loss) / (unigram - bigram),
            "prev_score": jax.vmap(ms.previous_token_score)(pattern),
            # the statistical induction head attends to the states that followed earlier copies of x_t
            "induction_score": jax.vmap(ms.prefix_matching_score, (0, None))(pattern, tokens[:, :-1]),
        }

    return evaluate


def _token_evaluator(cfg: ModelConfig, T: int) -> Callable:
    """Token streams: loss, loss and accuracy at the induction positions, the ICL score, and the heads' scores on
    repeated random tokens."""

    def evaluate(params, sets):
        s = sets["stream"]
        tokens = s["tokens"]
        logits = forward(params, cfg, tokens[:, :-1])
        per_pos = ms.loss_by_position(logits, tokens[:, 1:])
        mask = s["induction"][:, 1:]
        ce = -jnp.take_along_axis(jax.nn.log_softmax(logits), tokens[:, 1:, None], -1)[..., 0]
        hit = jnp.argmax(logits, -1) == tokens[:, 1:]
        n_mask = jnp.maximum(mask.sum(), 1)
        rep = sets["repeated"]["tokens"]
        _, cache = forward(params, cfg, rep[:, :-1], cache=True)
        pattern = cache["pattern"]
        return {
            "loss": per_pos.mean(),
            "induction_loss": jnp.sum(ce * mask) / n_mask,
            "induction_acc": jnp.sum(hit * mask) / n_mask,
            "icl_score": ms.icl_score(per_pos, max(1, (T - 1) // 10), T - 2),
            "prev_score": jax.vmap(ms.previous_token_score)(pattern),
            "induction_score": jax.vmap(ms.prefix_matching_score, (0, None))(pattern, rep[:, :-1]),
        }

    return evaluate


def _device_batch_fn(run: RunConfig) -> Callable:
    """(step, consts) -> one model's training batch, drawn on the device from fold_in(consts key, step)."""
    from zipfhead.toy_models import device_samplers as dsm

    batch = run.train.batch_size
    if run.kind == "classification":
        N, L = run.task.N, run.task.L

        def sample(step, c):
            out = dsm.sample_classification(jax.random.fold_in(c["key"], step), c["prm"], N=N, L=L, batch=batch)
            return {"items": out["items"], "labels": out["labels"]}

    else:
        T = run.task.T

        def sample(step, c):
            out = dsm.sample_token_streams(jax.random.fold_in(c["key"], step), c["prm"], T=T, batch=batch)
            return {"tokens": out["tokens"]}

    return sample


def device_sampler_consts(run: RunConfig, means: Sequence[np.ndarray | None]) -> dict[str, Any]:
    """Every model's device-sampler parameters (padded to the run's largest K or trigger count) and base key
    PRNGKey(derive_seed(seed, "train")), stacked along a leading model axis (numpy)."""
    from zipfhead.toy_models import device_samplers as dsm

    tasks = run.model_tasks
    if run.kind == "classification":
        K_max = max(t.K for t in tasks)
        prms = [dsm.classification_params(t, m, K_max) for t, m in zip(tasks, means, strict=True)]
    else:
        n_max = max(t.n_triggers for t in tasks)
        prms = [dsm.token_params(t, n_max) for t in tasks]
    keys = [np.asarray(jax.random.PRNGKey(derive_seed(s, "train"))) for s in run.model_seeds]
    return {
        "prm": {k: np.stack([p[k] for p in prms]) for k in prms[0]},
        "key": np.stack(keys),
    }


_ENGINES: dict[tuple, Engine] = {}
_PROBE_MIN_CHUNKS = 20  # runs shorter than this many chunks skip the timed probe: it would not pay for itself
#: the group width on CPU: the largest candidate up to this. Fixed rather than timed, so that runs repeat bit for
#: bit (a timed choice differed between processes, and the curves by 5e-7). 1: each device runs its models one
#: after another inside the compiled chunk, as XLA's CPU batched matmuls of these toys are slower per FLOP than one
#: model's. Measured (2 host devices; 50-step chunks compiled beforehand, widths timed alternately, median of 5):
#: the demo's 36 models at widths 1, 2, 18 per device ran 378, 354, 262 model-steps/s; the bench's classification
#: toy (d_model 128, 32 models) at widths 1, 4, 16 ran 110, 98, 86. The demo's sweep end to end: 123.2 s of
#: waiting on training at width 1 against 126.9 s at width 2 (one run each, load 1.7-2.2).
CPU_WIDTH = 1


def engine_for(run: RunConfig) -> Engine:
    """One Engine (and so one compilation) per distinct shape-and-optimiser signature, reused across runs."""
    task_shape = shape_signature(run.task)
    tcfg = dataclasses.replace(  # lr and weight decay live in each model's state; the schedule is not code
        run.train, lr=1.0, weight_decay=0.0, steps=1, eval_every=run.train.dense_factor
    )
    key = (run.kind, task_shape, run.model, tcfg)
    if key not in _ENGINES:
        _ENGINES[key] = Engine(run)
    return _ENGINES[key]


def headline_chance(task: ClassificationTask | TokenStreamTask | MarkovTask) -> float | None:
    """The headline measure's reference level for the one transition rule: guessing a label (1/L) for
    classification; 0 for a Markov toy (bigram progress is 0 at the unigram rung, the stage before the induction
    head: its value at step 0, at the uniform rung below, would put the half-rise inside the unigram stage); None
    for a token toy, whose reference is its own step-0 value."""
    kind = task_kind(task)
    if kind == "classification":
        return 1.0 / task.L
    return 0.0 if kind == "markov" else None


# --- checkpoints ---------------------------------------------------------------------------------------------
CHECKPOINT = "checkpoint.json"  #: the manifest of a run directory's one consistent checkpoint


def save_checkpoint(path: Path, state: Any, step: int, history: dict[str, Any], run: RunConfig) -> None:
    """One consistent checkpoint: the state's leaves as an npz payload named by its step (no pickle), then the
    manifest ``checkpoint.json`` (step, evaluation history, config, the payload's name and SHA-256), each written
    atomically, then the older payloads removed. A kill at any point leaves the manifest naming a complete payload
    (the new one, or the previous one, still there), so a resume never pairs one checkpoint's arrays with another's
    history."""
    leaves = jax.tree_util.tree_leaves(state)
    buf = io.BytesIO()
    np.savez(buf, **{f"leaf_{i:04d}": np.asarray(x) for i, x in enumerate(leaves)})
    data = buf.getvalue()
    payload = f"checkpoint-{step:010d}.npz"
    atomic_write(path / payload, lambda f: f.write(data))
    meta = {
        "step": step,
        "history": history,
        "config": run.to_dict(),
        "n_leaves": len(leaves),
        "payload": payload,
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    atomic_write(path / CHECKPOINT, lambda f: json.dump(meta, f), mode="w")
    for old in sorted(path.glob("checkpoint*.npz*")):
        if old.name != payload:
            remove(old)  # superseded payloads, the old single-file layout, and half-written .tmp


def load_checkpoint(path: Path, template: Any) -> tuple[Any, int, dict[str, Any], dict[str, Any]] | None:
    """(state, step, history, config) of the checkpoint that ``checkpoint.json`` names, or None if there is none.
    A checkpoint whose payload is missing or does not match the manifest's hash is discarded with a warning (the
    run then starts over: correct, only slower). Directories of the older layout (``checkpoint.npz`` beside the
    manifest, no hash) still load."""
    if not (path / CHECKPOINT).exists():
        return None
    meta = json.loads((path / CHECKPOINT).read_text())
    payload = path / meta.get("payload", "checkpoint.npz")
    if not payload.exists():
        warnings.warn(f"{path / CHECKPOINT} names {payload.name}, which is missing: starting over", stacklevel=2)
        return None
    data_bytes = payload.read_bytes()
    if "sha256" in meta and hashlib.sha256(data_bytes).hexdigest() != meta["sha256"]:
        warnings.warn(
            f"{payload} does not match its manifest's hash: checkpoint discarded, starting over", stacklevel=2
        )
        return None
    with np.load(io.BytesIO(data_bytes), allow_pickle=False) as data:
        leaves = [jnp.asarray(data[f"leaf_{i:04d}"]) for i in range(meta["n_leaves"])]
    treedef = jax.tree_util.tree_structure(template)
    return jax.tree_util.tree_unflatten(treedef, leaves), meta["step"], meta["history"], meta["config"]


# --- the training loop ---------------------------------------------------------------------------------------
@dataclass
class RunResult:
    """What a run produced: evaluation curves (measure -> (M, E) or (M, E, layers, heads)), steps (E,), final state."""

    run: RunConfig
    steps: np.ndarray
    curves: dict[str, np.ndarray]
    train_loss: np.ndarray  # (M, steps) every step's training loss
    diverged: np.ndarray  # (M,) bool
    state: Any
    seconds: float  # wall time of the training loop (evaluations included)
    data_seconds: float  # of which drawing training batches on the host (overlapped with training)
    #: where the wall time went (seconds): ``setup`` (evaluation sets, means, initialisation, before the loop),
    #: ``first_chunk`` (the first chunk's dispatch and wait: compilation and the probe), ``data`` (drawing the
    #: next chunk's host batches while the chunk in flight trains), ``train_wait`` (placing those batches on the
    #: devices and waiting for the chunk's results: the training that the drawing did not hide; a CPU device
    #: takes the transfer only after the chunk in flight), ``evaluate`` (evaluations and their transfer),
    #: ``checkpoint`` (writing checkpoints), ``other`` (the rest of the loop: progress bar, bookkeeping)
    timings: dict[str, float] = field(default_factory=dict)


def stack_chunks(chunks: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-model host chunks (n_steps, batch, ...) -> the scan layout (n_steps, M, batch, ...), still on the host
    (place it with :func:`sharders`' second function)."""
    return {k: np.stack([c[k] for c in chunks], axis=1) for k in chunks[0]}


def _mesh(M: int) -> Mesh | None:
    """A one-axis mesh ("model") over every device, or None (one device, or M not a multiple of their count)."""
    devices = jax.devices()
    if len(devices) < 2 or M % len(devices):
        return None
    return Mesh(np.asarray(devices), ("model",))


def sharders(M: int) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """Place pytrees with the model axis split over every JAX device (axis 0, or axis 1 for scan data).

    Several GPUs, or several host devices (``zipfhead`` sets XLA_FLAGS=--xla_force_host_platform_device_count
    to the core count, so each core runs its share of the models), each train M / n_devices models. When M
    is not a multiple of the device count everything stays on the default device.
    """
    mesh = _mesh(M)
    if mesh is None:
        return jax.device_put, jax.device_put

    def place(spec: PartitionSpec) -> Callable[[Any], Any]:
        return lambda tree: jax.device_put(tree, NamedSharding(mesh, spec))

    return place(PartitionSpec("model")), place(PartitionSpec(None, "model"))


def _resume(out: Path | None, run: RunConfig, state: Any, resume: bool) -> tuple[Any, int, dict[str, Any]]:
    """(state, step, history): from ``out``'s checkpoint when resuming the same config, else fresh."""
    history: dict[str, Any] = {"steps": [], "curves": {}, "train_loss": []}
    if out is not None and out.exists() and not out.is_dir():
        raise ValueError(f"out_dir = {str(out)!r} is a file, not a directory: name a directory")
    if out is None:
        return state, 0, history
    out.mkdir(parents=True, exist_ok=True)
    loaded = load_checkpoint(out, state) if resume else None
    if loaded is None:
        return state, 0, history
    try:  # through the dataclass, so that a field added later with its default still matches
        same = RunConfig.from_dict(loaded[3]).to_dict() == run.to_dict()
    except (KeyError, TypeError, ValueError):
        same = False
    if not same:
        raise ValueError(f"{out} holds a checkpoint of a different config: use another directory")
    return loaded[0], loaded[1], loaded[2]


class _Loop:
    """One training run's loop: the engine, data, evaluation sets and state of its M models, and the clock of
    :data:`TIMING_PARTS` (see :func:`train`)."""

    def __init__(self, run: RunConfig, out: Path | None, resume: bool):
        self.t_setup = time.perf_counter()
        self.clock = dict.fromkeys(TIMING_PARTS[1:-1], 0.0)  # the parts between setup and other
        self.run, self.out, self.tcfg = run, out, run.train
        self.streams = data_streams(run)
        self.engine = engine_for(run)
        self.M = len(self.streams)
        self.means = [s.means() for s in self.streams]
        eval_sets = [s.eval_sets(m, self.tcfg.eval_size) for s, m in zip(self.streams, self.means, strict=True)]
        self.on_models, self.on_scan = sharders(self.M)
        self.eval_data = self.on_models(jax.tree_util.tree_map(lambda *xs: jnp.asarray(np.stack(xs)), *eval_sets))
        keys = jnp.stack([jax.random.PRNGKey(derive_seed(s, "init")) for s in run.model_seeds])
        state = self.engine.init(
            keys,
            jnp.asarray(run.model_lrs, dtype=jnp.float32),
            jnp.asarray(run.model_weight_decays, dtype=jnp.float32),
        )
        state, self.step, self.history = _resume(out, run, state, resume)
        self.state = self.on_models(state)
        self.headline = headline_measure(run.kind)
        self.consts = None
        if self.engine.device_sampling:
            consts = device_sampler_consts(run, self.means)
            self.consts = self.on_models(jax.tree_util.tree_map(jnp.asarray, consts))
        if self.step == 0 and not self.history["steps"]:
            self.record(0)

    def record(self, step: int) -> None:
        """Evaluate every model and append its measures to the history."""
        t = time.perf_counter()
        values = jax.device_get(self.engine.evaluate(self.state["params"], self.eval_data))
        self.clock["evaluate"] += time.perf_counter() - t
        self.history["steps"].append(step)
        for k, v in values.items():
            self.history["curves"].setdefault(k, []).append(np.asarray(v, dtype=np.float64).tolist())

    def batches(self, step0: int) -> tuple[int, dict[str, np.ndarray]]:
        """The chunk from ``step0`` on the host, in the scan layout (n_steps, M, ...), timed as ``data``."""
        t = time.perf_counter()
        n = min(self.tcfg.chunk, self.tcfg.steps - step0)
        if self.engine.device_sampling:  # only the step numbers: the batches are drawn inside the chunk
            host = {"step": np.broadcast_to(np.arange(step0, step0 + n, dtype=np.int32)[:, None], (n, self.M))}
        else:
            streams, means, b = self.streams, self.means, self.tcfg.batch_size
            host = stack_chunks([s.train_chunk(m, step0, n, b) for s, m in zip(streams, means, strict=True)])
        self.clock["data"] += time.perf_counter() - t
        return n, host

    def after_chunk(self, losses: np.ndarray, n: int) -> None:
        """Book a finished chunk: its losses, the step, and an evaluation and checkpoint where one is due."""
        self.history["train_loss"].append(losses.T.tolist())  # (M, n) per chunk
        self.step += n
        dense = _moving_fast(self.history["curves"].get(self.headline, []))
        if self.step % self.tcfg.eval_every == 0 or dense or self.step == self.tcfg.steps:  # a grid + dense extras
            self.record(self.step)
            if self.out is not None:
                t = time.perf_counter()
                save_checkpoint(self.out, self.state, self.step, self.history, self.run)
                self.clock["checkpoint"] += time.perf_counter() - t

    def chunks(self, bar: Any, stop_after: int | None) -> None:
        """Train to the end (or ``stop_after``), drawing each chunk on the host while the previous one trains."""
        tcfg, first = self.tcfg, True
        if self.step < tcfg.steps:
            n, host = self.batches(self.step)
            data = self.on_scan(host)
        while self.step < tcfg.steps:
            # The first chunk of a long run may time the candidate executions (see Engine.choose).
            probe = (tcfg.steps - self.step) >= _PROBE_MIN_CHUNKS * tcfg.chunk
            t_chunk, drawn = time.perf_counter(), self.clock["data"]
            self.state, losses = self.engine.run_chunk(self.state, data, probe=probe, consts=self.consts)  # async
            more = self.step + n < tcfg.steps
            if more:  # ... so the next chunk is drawn on the host while this one trains
                n_next, host = self.batches(self.step + n)
            t_wait = time.perf_counter()
            if more:
                # Placing it is waiting: a CPU device takes the transfer only once the chunk in flight is done (the
                # demo's 36 models, measured: 1.86 s of a chunk's 2.06 s of drawing and placing was the placing,
                # 0.24 s the sampling), while an accelerator overlaps it with the chunk.
                data = self.on_scan(host)
            losses = np.asarray(losses, dtype=np.float64)  # waits for the chunk
            if first:  # from the dispatch on, less the next chunk's drawing (already on the data clock)
                self.clock["first_chunk"] += time.perf_counter() - t_chunk - (self.clock["data"] - drawn)
            else:
                self.clock["train_wait"] += time.perf_counter() - t_wait
            first = False
            self.after_chunk(losses, n)
            if bar is not None:
                bar.update(n)
                head = np.asarray(self.history["curves"][self.headline][-1])
                bar.set_postfix(loss=f"{float(np.nanmean(losses[-1])):.3f}", **{self.headline: f"{np.mean(head):.2f}"})
            if stop_after is not None and self.step >= stop_after:
                break
            if more:
                n = n_next

    def result(self, t0: float, setup: float) -> RunResult:
        """The finished run: histories as arrays (curves (M, evaluations) per measure, losses (M, steps))."""
        seconds = time.perf_counter() - t0
        chunks = [np.asarray(c, dtype=np.float64).reshape(self.M, -1) for c in self.history["train_loss"]]
        train_loss = np.concatenate(chunks, axis=1) if chunks else np.zeros((self.M, 0))
        curves = {k: np.moveaxis(np.asarray(v, dtype=np.float64), 0, 1) for k, v in self.history["curves"].items()}
        clock = self.clock
        other = max(time.perf_counter() - self.t_setup - setup - sum(clock.values()), 0.0)
        return RunResult(
            run=self.run,
            steps=np.asarray(self.history["steps"]),
            curves=curves,
            train_loss=train_loss,
            diverged=np.asarray(self.state["diverged"]),
            state=self.state,
            seconds=seconds,
            data_seconds=clock["data"],
            timings={"setup": setup, **clock, "other": other},
        )


def train(
    run: RunConfig,
    out_dir: str | Path | None = None,
    *,
    progress: bool = True,
    resume: bool = True,
    stop_after: int | None = None,
) -> RunResult:
    """Train the run's models together; checkpoint to ``out_dir`` after every evaluation.

    Args:
        run: the run.
        out_dir: where checkpoints go (None: no checkpoints).
        progress: show a tqdm bar (steps/s, loss, headline measure).
        resume: continue from a checkpoint in ``out_dir`` made by the same config.
        stop_after: stop (as if interrupted) once this many steps are done; for tests of resumption.
    """
    loop = _Loop(run, Path(out_dir) if out_dir is not None else None, resume)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=run.train.steps, initial=loop.step, unit="step", dynamic_ncols=True, leave=False)
    t0 = time.perf_counter()
    setup = t0 - loop.t_setup - loop.clock["evaluate"]  # the step-0 evaluation counts as evaluation
    loop.chunks(bar, stop_after)
    if bar is not None:
        bar.close()
    return loop.result(t0, setup)


def _moving_fast(values: list, threshold: float = 0.05) -> bool:
    """Whether any model's headline measure changed by more than ``threshold`` between the last two evaluations."""
    if len(values) < 2:
        return False
    return bool(np.nanmax(np.abs(np.asarray(values[-1]) - np.asarray(values[-2]))) > threshold)
