"""The training engine: vmapped batches equal separate runs, determinism, resumption, divergence, the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from tests._devices import run_on_two_host_devices
from zipfhead.cli import main
from zipfhead.theory.distributions import ClassificationTask, TokenStreamTask
from zipfhead.toy_models.model import ModelConfig
from zipfhead.toy_models.train import RunConfig, TrainConfig, train

TASK = ClassificationTask(K=64, N=4, D=8, L=8, B=2, p_B=1.0, eps=0.1, alpha=0.0)
MODEL = ModelConfig(n_ctx=9, d_vocab=16, d_vocab_out=8, n_layers=2, d_model=32, positional="onehot")
TRAIN = TrainConfig(steps=48, eval_every=16, batch_size=16, eval_size=64, lr=3e-3)
# Float tolerance between a vmapped batch and single runs: XLA may pick different kernels (and summation
# orders) for batched matmuls, ~1e-7 relative per op in float32, grown by 48 Adam steps; 1e-4 covers it.
VMAP_ATOL = 1e-4


def run_of(seeds, lrs=(), task=TASK, model=MODEL, tcfg=TRAIN):
    return RunConfig(task=task, model=model, train=tcfg, seeds=tuple(seeds), lrs=tuple(lrs))


def test_vmapped_batch_equals_separate_runs():
    """A batch of 3 models (one compilation) gives each model's curves and parameters as run alone."""
    batch = train(run_of([0, 1, 2]), progress=False)
    for m, seed in enumerate((0, 1, 2)):
        alone = train(run_of([seed]), progress=False)
        # Dense evaluations follow the batch's fastest mover, so the schedules differ; evaluation never
        # changes training, so the curves must agree wherever both evaluated (always at 0, 16, 32, 48).
        common, ib, ia = np.intersect1d(batch.steps, alone.steps, return_indices=True)
        assert {0, 16, 32, 48} <= set(common.tolist())
        for name, curve in batch.curves.items():
            np.testing.assert_allclose(curve[m, ib], alone.curves[name][0, ia], atol=VMAP_ATOL, err_msg=name)
        np.testing.assert_allclose(batch.train_loss[m], alone.train_loss[0], atol=VMAP_ATOL)
        w_batch = np.asarray(batch.state["params"]["blocks"][1]["attn"]["W_Q"][m])
        w_alone = np.asarray(alone.state["params"]["blocks"][1]["attn"]["W_Q"][0])
        np.testing.assert_allclose(w_batch, w_alone, atol=VMAP_ATOL)


def test_same_seed_gives_identical_metrics():
    """Two runs of one config and seed are bit-identical; another seed differs."""
    a = train(run_of([5]), progress=False)
    b = train(run_of([5]), progress=False)
    c = train(run_of([6]), progress=False)
    for name in a.curves:
        np.testing.assert_array_equal(a.curves[name], b.curves[name])
    np.testing.assert_array_equal(a.train_loss, b.train_loss)
    assert not np.array_equal(a.train_loss, c.train_loss)


def test_resume_from_checkpoint_equals_uninterrupted(tmp_path):
    """Stop after 24 steps, resume from the checkpoint: the final numbers equal an uninterrupted run's."""
    run = run_of([0, 1])
    full = train(run, progress=False)
    train(run, tmp_path, progress=False, stop_after=24)
    resumed = train(run, tmp_path, progress=False)
    np.testing.assert_array_equal(resumed.steps, full.steps)
    for name in full.curves:
        np.testing.assert_array_equal(resumed.curves[name], full.curves[name], err_msg=name)
    np.testing.assert_array_equal(resumed.train_loss, full.train_loss)


def _assert_same_run(a, b) -> None:
    np.testing.assert_array_equal(a.steps, b.steps)
    for name in b.curves:
        np.testing.assert_array_equal(a.curves[name], b.curves[name], err_msg=name)
    np.testing.assert_array_equal(a.train_loss, b.train_loss)


def test_a_kill_between_payload_and_manifest_resumes_from_the_previous_checkpoint(tmp_path):
    """The state a kill leaves after a new payload was written and before the manifest named it: the manifest
    still names the previous (complete) payload, so the resume starts there and ends equal to an uninterrupted
    run; the orphan payload is removed at the next checkpoint."""
    run = run_of([0, 1])
    full = train(run, progress=False)
    killed, later = tmp_path / "killed", tmp_path / "later"
    train(run, killed, progress=False, stop_after=16)
    shutil.copytree(killed, later)
    train(run, later, progress=False, stop_after=24)  # writes the next payload and manifest
    newer = json.loads((later / "checkpoint.json").read_text())["payload"]
    assert newer != json.loads((killed / "checkpoint.json").read_text())["payload"]
    shutil.copy(later / newer, killed / newer)  # the payload landed, the manifest did not
    _assert_same_run(train(run, killed, progress=False), full)
    assert len(list(killed.glob("checkpoint*.npz"))) == 1


def test_a_payload_that_does_not_match_its_manifest_is_discarded(tmp_path):
    """Arrays that are not the manifest's (the old layout's failure: one checkpoint's arrays, another's history)
    are detected by the hash, discarded with a warning, and the run starts over to the same numbers."""
    run = run_of([0, 1])
    full = train(run, progress=False)
    other = tmp_path / "other"
    train(run, tmp_path, progress=False, stop_after=16)
    train(run, other, progress=False, stop_after=24)
    payload = json.loads((tmp_path / "checkpoint.json").read_text())["payload"]
    newer = json.loads((other / "checkpoint.json").read_text())["payload"]
    (tmp_path / payload).write_bytes((other / newer).read_bytes())
    with pytest.warns(UserWarning, match="does not match its manifest"):
        resumed = train(run, tmp_path, progress=False)
    _assert_same_run(resumed, full)


def test_checkpoint_of_another_config_is_refused(tmp_path):
    """A directory holding another config's checkpoint is not silently reused."""
    train(run_of([0]), tmp_path, progress=False, stop_after=16)
    with pytest.raises(ValueError, match="different config"):
        train(run_of([1]), tmp_path, progress=False)


def test_diverged_model_is_frozen_and_batch_mates_go_on():
    """SGD at lr 1e3 blows up: that model is marked diverged and frozen; its batch-mate is unaffected."""
    sgd = TrainConfig(optimizer="sgd", steps=32, eval_every=16, batch_size=16, eval_size=64, lr=0.05)
    both = train(run_of([0], lrs=(0.05, 1e3), tcfg=sgd), progress=False)
    alone = train(run_of([0], lrs=(0.05,), tcfg=sgd), progress=False)
    assert both.diverged.tolist() == [False, True]
    leaves = jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda x: x[1], both.state["params"]))
    assert all(np.all(np.isfinite(np.asarray(x))) for x in leaves)  # frozen before the first non-finite update
    np.testing.assert_allclose(both.curves["icl_acc"][0], alone.curves["icl_acc"][0], atol=VMAP_ATOL)


def test_token_run_trains_and_reports_measures():
    """A tiny token-stream run: loss falls, and the induction and previous-token scores are reported per head."""
    task = TokenStreamTask(V=16, T=17, alpha=1.0, n_triggers=1)
    model = ModelConfig(n_ctx=16, d_vocab=16, d_vocab_out=16, n_layers=2, n_heads=2, d_model=32)
    res = train(run_of([0], task=task, model=model), progress=False)
    loss = res.curves["loss"][0]
    assert loss[-1] < loss[0]
    assert res.curves["induction_score"].shape == (1, len(res.steps), 2, 2)


def test_cli_train_writes_its_files(tmp_path, capsys):
    """`zipfhead train` writes config.json, metrics.npz (labelled, no pickle), summary.json and two figures."""
    out = tmp_path / "run"
    flags = ["--K", "64", "--N", "4", "--D", "8", "--L", "8", "--B", "2", "--p_B", "1", "--alpha", "0"]
    flags += ["--steps", "32", "--eval_every", "16", "--batch_size", "16", "--eval_size", "64", "--d_model", "32"]
    assert main(["train", *flags, "--seeds", "0", "1", "--out", str(out), "--json", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    for name in ("config.json", "metrics.npz", "summary.json", "curves.png", "attention.png"):
        assert (out / name).stat().st_size > 0, name
    with np.load(out / "metrics.npz", allow_pickle=False) as m:
        assert m["curves"].shape == (len(m["measures"]), 2, len(m["steps"]))
        assert m["seeds"].tolist() == [0, 1] and "icl_acc" in m["measures"].tolist()
    assert [info["seed"] for info in summary["models"]] == [0, 1]
    config = json.loads((out / "config.json").read_text())
    assert RunConfig.from_dict(config).to_dict() == config


BAD_TRAIN_FLAGS = [
    (["--n_layers", "0"], "n_layers = 0"),
    (["--optimizer", "lion"], "optimizer = 'lion'"),
    (["--eval_every", "10"], "eval_every = 10"),
    (["--lr", "-1"], "lr = -1.0"),
    (["--B", "3"], "B = 3"),
]


@pytest.mark.parametrize(("flags", "needle"), BAD_TRAIN_FLAGS)
def test_cli_train_bad_flags(flags, needle, capsys):
    """Bad training flags: one line naming the parameter, exit status 2, no traceback (in-process; the next test
    runs one from a real process)."""
    from zipfhead.cli import main

    try:
        status = main(["train", *flags, "--no-progress"])
    except SystemExit as exc:  # argparse's own errors
        status = exc.code
    err = capsys.readouterr().err
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err


def test_cli_train_bad_flag_from_the_command_line():
    flags, needle = BAD_TRAIN_FLAGS[0]
    out = subprocess.run(
        [sys.executable, "-m", "zipfhead.cli", "train", *flags, "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in out.stderr, out.stderr


SHARDED_SCRIPT = """
import json, jax, numpy as np
from tests.unit.test_train import run_of
from zipfhead.toy_models.train import train
assert len(jax.devices()) == 2, jax.devices()
res = train(run_of([0, 1]), progress=False)
sharding = res.state["params"]["embed"]["W_E"].sharding
print(json.dumps({"icl_acc": res.curves["icl_acc"].tolist(), "steps": res.steps.tolist(),
                  "train_loss": res.train_loss.tolist(), "n_shards": len(sharding.device_set)}))
"""


def test_sharded_over_two_devices_equals_one_device():
    """With two host devices the model axis is split across them (each core trains half the models) and the
    numbers match the single-device run to float tolerance (VMAP_ATOL: different batched kernel shapes)."""
    sharded = run_on_two_host_devices(SHARDED_SCRIPT)
    assert sharded["n_shards"] == 2
    single = train(run_of([0, 1]), progress=False)
    common, i_s, i_1 = np.intersect1d(sharded["steps"], single.steps, return_indices=True)
    assert {0, 16, 32, 48} <= set(common.tolist())
    np.testing.assert_allclose(np.asarray(sharded["icl_acc"])[:, i_s], single.curves["icl_acc"][:, i_1], atol=VMAP_ATOL)
    np.testing.assert_allclose(sharded["train_loss"], single.train_loss, atol=VMAP_ATOL)


def test_grouped_vmap_widths_equal_plain_vmap(monkeypatch):
    """The engine's executions (4 models as 1, 2 or 4 vmapped at a time) agree to VMAP_ATOL; the timed choice
    (ZIPFHEAD_VMAP_WIDTH=probe) picks one of the candidates and keeps it for the shape."""
    import jax.numpy as jnp

    from zipfhead.toy_models.bench import _setup

    run = run_of([0, 1, 2, 3])
    eng, state, data = _setup(run, 6)
    out = {}
    for w in eng.widths(4):
        copy = jax.tree_util.tree_map(jnp.copy, state)
        new, loss = eng.chunk_fn(4, w)(copy, data, None)
        out[w] = (np.asarray(loss), np.asarray(new["params"]["blocks"][1]["attn"]["W_Q"]))
    assert {1, 4} <= set(out) and out[1][0].shape == (6, 4)
    for w, (loss, w_q) in out.items():
        np.testing.assert_allclose(loss, out[4][0], atol=VMAP_ATOL, err_msg=f"width {w}")
        np.testing.assert_allclose(w_q, out[4][1], atol=VMAP_ATOL, err_msg=f"width {w}")
    monkeypatch.setenv("ZIPFHEAD_VMAP_WIDTH", "probe")
    eng._width.clear()
    chosen = eng.choose(state, data, probe=True)
    assert chosen in eng.widths(4) and eng.choose(state, data, probe=False) == chosen
    eng._width.clear()  # the engine is shared: later tests get the default choice again
    eng.probe_seconds.clear()


def test_the_default_width_is_fixed_by_the_shape_not_timed(monkeypatch):
    """Without ZIPFHEAD_VMAP_WIDTH, a CPU run's width is the largest candidate up to CPU_WIDTH, whatever a timing
    would say (a timed choice differed between processes and so did the numbers); two runs in fresh engines
    are then bit-identical."""
    from zipfhead.toy_models import train as tr
    from zipfhead.toy_models.bench import _setup

    monkeypatch.delenv("ZIPFHEAD_VMAP_WIDTH", raising=False)
    tr._ENGINES.clear()
    run = run_of([0, 1, 2, 3])
    eng, state, data = _setup(run, 6)
    if jax.devices()[0].platform == "cpu":
        assert eng.choose(state, data, probe=True) == max(w for w in eng.widths(4) if w <= tr.CPU_WIDTH)
    assert eng.probe_seconds == {}
    first = train(run, progress=False)
    tr._ENGINES.clear()  # as a new process would start
    second = train(run, progress=False)
    _assert_same_run(first, second)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("decay_on", ["all", "attention"])
def test_weight_decay_shrinks_the_chosen_weights_by_lr_times_decay(optimizer, decay_on):
    """With zero gradients, decoupled decay multiplies each decayed weight by (1 - lr x weight_decay) per step
    (AdamW's convention, and SGD's without momentum: with it the decay term joins the velocity, as in PyTorch);
    ``decay_on='attention'`` leaves the embedding and unembedding alone."""
    from zipfhead.toy_models.model import init_params
    from zipfhead.toy_models.train import make_optimizer

    lr, wd, n = 0.01, 0.5, 7
    tcfg = TrainConfig(optimizer=optimizer, lr=lr, weight_decay=wd, decay_on=decay_on, momentum=0.0)
    params = init_params(MODEL, jax.random.PRNGKey(0))
    opt = make_optimizer(tcfg, lr)
    state = opt.init(params)
    zero = jax.tree_util.tree_map(np.zeros_like, params)
    p = params
    for _ in range(n):
        updates, state = opt.update(zero, state, p)
        p = jax.tree_util.tree_map(lambda a, u: a + u, p, updates)
    shrink = (1 - lr * wd) ** n
    # float32 arithmetic over 7 steps: 1e-6 relative
    for k in ("W_Q", "W_K", "W_V", "W_O"):
        np.testing.assert_allclose(p["blocks"][1]["attn"][k], shrink * params["blocks"][1]["attn"][k], rtol=1e-5)
    expect_embed = shrink if decay_on == "all" else 1.0
    np.testing.assert_allclose(p["unembed"]["W_U"], expect_embed * params["unembed"]["W_U"], rtol=1e-5)
    np.testing.assert_allclose(p["embed"]["W_E"], expect_embed * params["embed"]["W_E"], rtol=1e-5)


def test_per_cell_weight_decays_equal_separate_runs():
    """``weight_decays`` (one per cell, as a sweep's weight_decay axis) gives each model what a run with that
    ``train.weight_decay`` gives alone, in the same compiled batch."""
    import dataclasses

    wds = (0.0, 2.0)
    batch = train(RunConfig(task=TASK, model=MODEL, train=TRAIN, tasks=(TASK, TASK), weight_decays=wds), progress=False)
    for m, wd in enumerate(wds):
        alone = train(run_of([0], tcfg=dataclasses.replace(TRAIN, weight_decay=wd)), progress=False)
        for k in ("W_Q", "W_O"):
            got = np.asarray(batch.state["params"]["blocks"][0]["attn"][k][m])
            want = np.asarray(alone.state["params"]["blocks"][0]["attn"][k][0])
            np.testing.assert_allclose(got, want, atol=VMAP_ATOL)
    # and the decay did act: the decayed model's weights differ from the undecayed one's by more than the tolerance
    w = np.asarray(batch.state["params"]["blocks"][0]["attn"]["W_Q"])
    assert np.abs(w[0] - w[1]).max() > 10 * VMAP_ATOL
    with pytest.raises(ValueError, match="weight_decays has 1 values for 2 tasks"):
        RunConfig(task=TASK, model=MODEL, train=TRAIN, tasks=(TASK, TASK), weight_decays=(0.1,))


def test_optimizer_state_keeps_the_layout_of_earlier_checkpoints():
    """Without a decay mask the optimiser state has the layout that inject_hyperparams(optax.adamw) (and the
    plain SGD chain) gave before decay_on existed, so checkpoints written then still resume."""
    import optax

    from zipfhead.toy_models.model import init_params
    from zipfhead.toy_models.train import make_optimizer

    params = init_params(MODEL, jax.random.PRNGKey(0))
    before = optax.inject_hyperparams(optax.adamw)(learning_rate=1e-3, weight_decay=0.0).init(params)
    now = make_optimizer(TrainConfig(), 1e-3).init(params)
    assert jax.tree_util.tree_structure(before) == jax.tree_util.tree_structure(now)
