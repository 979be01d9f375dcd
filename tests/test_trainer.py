"""The trainer: end-to-end runs with the real model on tiny data, exact resume after SIGKILL, exact
gradient accumulation, half-written checkpoints ignored, configs."""

import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from configs import individual as individual_config
from configs import study as study_config
from study.data import reserved_ids
from study.commands import train
from study.tasks import build_task, next_item
from study.train import checkpointing, gradient_step, schedules
from study.train.train_state import TrainState
from tests.test_input_pipeline import random_row, write_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROW_LENGTH = 12
VOCAB_SIZE = 23


def progress_at(step: int) -> dict:
    """The data position a checkpoint of ``step`` records (no early stopping configured)."""
    return {"step": step, "batches_consumed": step, "seed": 0,
            "early_stopping": {"metric": "", "best_value": None, "best_step": None, "evaluations_since_best": 0}}


def tiny_config(data_dir: str):
    """The smoke preset shrunk further: a 1-layer, 16-wide model on 12-position rows."""
    config = study_config.get_config("smoke")
    config.data_dir = str(data_dir)
    config.model.row_length = ROW_LENGTH
    config.model.num_layers = 1
    config.model.emb_dim = 16
    config.model.num_heads = 2
    config.model.mlp_dim = 32
    config.model.dropout_rate = 0.1
    config.optimizer.peak_lr = 1e-2
    config.optimizer.warmup_steps = 3
    config.batch_size = 8
    config.steps = 8
    config.checkpoint_every = 2
    config.keep_checkpoints = 10
    config.evals.loss.every = 0
    config.evals.loss.max_batches = 2
    config.log_every = 4
    config.shuffle_buffer = 64
    return config


def random_device_batch(batch_size, row_length=ROW_LENGTH, vocab_size=VOCAB_SIZE, seed=0):
    """A device batch (int32, relative timestamps) of random STUDY-like rows."""
    rng = np.random.default_rng(seed)
    rows = [random_row(rng, i, row_length, vocab_size) for i in range(batch_size)]
    batch = {}
    for name in ("item_ids", "student_index", "positions", "history_len", "is_novel", "is_continuation"):
        batch[name] = np.stack([r[name] for r in rows]).astype(np.int32)
    stamps = np.stack([r["timestamps"] for r in rows])
    items = reserved_ids.is_item(batch["item_ids"])
    earliest = np.where(items, stamps, np.iinfo(np.int64).max).min(axis=1, keepdims=True)
    batch["timestamps"] = np.where(items, stamps - earliest, 0).astype(np.int32)
    batch["grade"] = np.array([r["grade"] for r in rows], np.int32)
    batch["wealth"] = np.array([r["wealth"] for r in rows], np.int32)
    batch["row_valid"] = np.ones((batch_size,), np.int32)
    return batch


def checkpoint_leaves(workdir: str, step: int | None = None) -> tuple[dict, dict]:
    """({leaf path: array} of a saved train state, progress JSON), read without the trainer."""
    directory = os.path.join(workdir, "checkpoints")
    step = step if step is not None else max(int(d) for d in os.listdir(directory) if d.isdigit())
    path = os.path.join(directory, str(step), "state")
    checkpointer = ocp.PyTreeCheckpointer()
    tree = checkpointer.metadata(path).item_metadata.tree
    as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    state = checkpointer.restore(path, restore_args=as_numpy)
    with open(os.path.join(directory, str(step), "progress", "metadata")) as f:
        progress = json.load(f)
    flat = jax.tree_util.tree_flatten_with_path(state)[0]
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in flat}, progress


def run_trainer_subprocess(config_overrides: dict, workdir: str, env=None, check=True):
    args = [sys.executable, "-m", "study.commands.train", "--config=configs/study.py:smoke", f"--workdir={workdir}"]
    args += [f"--config.{key}={value}" for key, value in config_overrides.items()]
    proc = subprocess.run(args, cwd=REPO, env=dict(os.environ, JAX_PLATFORMS="cpu", **(env or {})),
                          capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _flat(config, prefix="") -> dict:
    flat = {}
    for key, value in config.items():
        if hasattr(value, "items"):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def flag_overrides(config) -> dict:
    """``config`` as the --config.* flags that turn the smoke preset of configs/study.py into it."""
    smoke = _flat(study_config.get_config("smoke"))
    overrides = {key: value for key, value in _flat(config).items() if smoke.get(key) != value}
    assert overrides and all(key in smoke for key in overrides), overrides
    return overrides


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("data")
    write_dataset(path, rows_per_split={"train": 44, "validation": 10}, num_shards=3)
    return str(path)


def test_killed_run_resumes_to_exactly_the_uninterrupted_result(data_dir, tmp_path):
    config = tiny_config(data_dir)
    # Uninterrupted: 8 steps, in this process.
    result = train.train(config, str(tmp_path / "straight"))
    assert result["step"] == 8 and np.isfinite(result["train"]["loss"])
    assert 0.0 <= result["validation"]["accuracy_at_1"] <= 1.0
    straight, straight_progress = checkpoint_leaves(str(tmp_path / "straight"))
    # Killed with SIGKILL right after update 5 (checkpoints 2 and 4 exist, 4 possibly still being written).
    killed = str(tmp_path / "killed")
    proc = run_trainer_subprocess(dict(flag_overrides(config), kill_at_step=5), killed, check=False)
    assert proc.returncode == -9, proc.stderr[-3000:]
    saved = sorted(int(d) for d in os.listdir(os.path.join(killed, "checkpoints")) if d.isdigit())
    assert saved and max(saved) <= 4
    # Resume to 8 steps.
    resumed_result = train.train(config, killed)
    assert resumed_result["step"] == 8
    resumed, resumed_progress = checkpoint_leaves(killed)
    assert resumed_progress == straight_progress == progress_at(8)
    assert resumed.keys() == straight.keys()
    for name in straight:  # params, Adam moments, step and RNG: bit-identical
        np.testing.assert_array_equal(resumed[name], straight[name], err_msg=name)
    # The log holds the resumed steps too, and no step twice (the resumed run truncated it).
    with open(os.path.join(killed, "metrics.jsonl")) as f:
        steps = [json.loads(line)["step"] for line in f if '"train"' in line]
    assert steps == [4, 8]


def test_gradient_accumulation_equals_the_full_batch_update():
    config = tiny_config("")
    config.model.vocab_size = VOCAB_SIZE
    config.model.dropout_rate = 0.0
    task = build_task(config)
    # Plain SGD with lr 1: the update IS the gradient. (Adam's first update is lr * sign(g), which turns
    # float-rounding noise of near-zero gradients into +-lr differences.)
    tx = optax.sgd(1.0)
    schedule = schedules.make_schedule(config)
    batch = random_device_batch(8, seed=2)
    rng = np.asarray(jax.random.key_data(jax.random.key(0)))
    results = {}
    for k in (1, 4):
        params = nn.unbox(task.init_params(jax.random.key(0)))
        state = TrainState(step=np.int32(0), params=params, opt_state=tx.init(params), rng=rng)
        step = jax.jit(gradient_step.make_train_step(task, tx, schedule, grad_accum_steps=k))
        results[k] = step(state, batch, rng)
    (state1, metrics1), (state4, metrics4) = results[1], results[4]
    assert float(metrics4["loss"]) == pytest.approx(float(metrics1["loss"]), rel=1e-5)
    assert float(metrics4["targets"]) == float(metrics1["targets"]) == float(reserved_ids.is_item(batch["item_ids"]).sum())
    assert float(metrics4["grad_norm"]) == pytest.approx(float(metrics1["grad_norm"]), rel=1e-4)
    for a, b in zip(jax.tree.leaves(state1.params), jax.tree.leaves(state4.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_unfinished_checkpoint_directory_is_ignored(tmp_path):
    directory = str(tmp_path / "checkpoints")
    ckpt = checkpointing.Checkpointer(directory, every_steps=1, max_to_keep=3, async_save=False)
    state = {"w": np.arange(4, dtype=np.float32), "step": np.int32(3)}
    ckpt.save(3, state, {"step": 3, "batches_consumed": 3, "seed": 0})
    ckpt.close()
    # A save of step 9 killed half-way: orbax's temporary directory with partial content.
    partial = tmp_path / "checkpoints" / "9.orbax-checkpoint-tmp-1795460000"
    (partial / "state").mkdir(parents=True)
    (partial / "state" / "garbage").write_bytes(b"\x00" * 10)
    reopened = checkpointing.Checkpointer(directory, every_steps=1, max_to_keep=3)
    assert reopened.latest_step() == 3
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), state)
    restored, progress = reopened.restore(abstract)
    np.testing.assert_array_equal(restored["w"], state["w"])
    assert progress["batches_consumed"] == 3
    reopened.close()


def test_relative_checkpoint_directory_is_resolved_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt = checkpointing.Checkpointer("run/checkpoints", every_steps=1, async_save=False)
    state = {"w": np.arange(3, dtype=np.float32)}
    ckpt.save(1, state, {"step": 1, "batches_consumed": 1, "seed": 0})
    ckpt.close()
    assert (tmp_path / "run" / "checkpoints" / "1").is_dir()


def test_vocab_size_is_read_from_vocab_json(data_dir):
    config = tiny_config(data_dir)
    config.model.vocab_size = 0
    assert build_task(config).config.model.vocab_size == VOCAB_SIZE
    assert config.model.vocab_size == 0  # the caller's config is not changed
    config = tiny_config("/nonexistent")
    config.model.vocab_size = 0
    with pytest.raises(FileNotFoundError, match="vocab"):
        build_task(config)


def test_presets_carry_the_papers_numbers():
    ally = study_config.get_config("learning_ally")
    assert (ally.optimizer.peak_lr, ally.optimizer.warmup_steps, ally.steps, ally.batch_size) == (
        0.1024, 1000, 3500, 131_072)
    assert ally.mesh_shape.to_dict() == {"data": 32, "model": 1} and ally.schedule == "inverse_sqrt"
    default = study_config.get_config("default")
    assert (default.model.num_layers, default.model.emb_dim, default.model.num_heads, default.model.mlp_dim,
            default.model.row_length) == (6, 256, 8, 1024, 65)
    assert individual_config.get_config("smoke").model.attention == "individual"
    assert individual_config.get_config("smoke").dataset == "individual"
    assert study_config.get_config("smoke").batch_size == 16
    with pytest.raises(ValueError, match="preset"):
        study_config.get_config("huge")


def test_top1_accuracy_never_predicts_reserved_ids_and_counts_oov_as_miss():
    logits = np.full((1, 3, 6), -5.0, np.float32)
    logits[0, 0, reserved_ids.PAD] = 9.0  # best overall, but reserved
    logits[0, 0, 4] = 1.0
    logits[0, 1, reserved_ids.OOV] = 9.0
    logits[0, 1, 5] = 1.0
    logits[0, 2, 3] = 1.0
    batch = {"item_ids": np.array([[4, reserved_ids.OOV, reserved_ids.SEP]]), "row_valid": np.array([1])}
    assert float(next_item.top1_correct(logits, batch)) == 1.0  # of 2 targets: 4 (hit) and OOV (a miss)


def test_damaged_newest_checkpoint_falls_back_to_the_newest_intact_one(tmp_path):
    directory = str(tmp_path / "checkpoints")
    ckpt = checkpointing.Checkpointer(directory, every_steps=1, max_to_keep=3, async_save=False)
    for step in (1, 2):
        ckpt.save(step, {"w": np.full(4, step, np.float32)}, {"step": step, "batches_consumed": step, "seed": 0})
    ckpt.close()
    damaged = tmp_path / "checkpoints" / "2" / "state"
    for path in damaged.rglob("*"):
        if path.is_file():
            path.write_bytes(b"garbage")  # every file of the newest state cut to junk
    messages = []
    reopened = checkpointing.Checkpointer(directory, every_steps=1, max_to_keep=3)
    abstract = {"w": jax.ShapeDtypeStruct((4,), np.float32)}
    restored, progress = reopened.restore(abstract, log=messages.append)
    reopened.close()
    np.testing.assert_array_equal(restored["w"], np.full(4, 1, np.float32))
    assert progress["step"] == 1
    assert len(messages) == 1 and "step 2" in messages[0] and "skipped" in messages[0]
    assert damaged.is_dir()  # never deleted silently


def test_resumed_log_drops_the_steps_after_the_restored_checkpoint(tmp_path):
    from study.train.metrics_logging import MetricsLogger

    logger = MetricsLogger(str(tmp_path))
    for step in (2, 4, 6):
        logger.log(step, "train", {"loss": float(step)})
    logger.log(6, "validation", {"loss": 0.5})
    logger.close()
    with open(tmp_path / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 8, "split": "tra')  # a line cut by a kill mid-write
    resumed = MetricsLogger(str(tmp_path))
    assert resumed.truncate_after(4) == 3  # steps 6 (train, validation) and the cut line
    resumed.log(6, "train", {"loss": 60.0})
    resumed.close()
    with open(tmp_path / "metrics.jsonl") as handle:
        records = [json.loads(line) for line in handle]
    assert [(r["step"], r["split"], r["loss"]) for r in records] == [
        (2, "train", 2.0), (4, "train", 4.0), (6, "train", 60.0)]
