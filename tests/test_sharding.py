"""Layout: mesh construction, logical rules, and one sharded train step (data=4 x model=2 on 8 simulated
CPU devices) equal to the same step on one device."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from study.train import sharding
from tests.device_env import cpu_devices_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_make_mesh_fills_the_free_axis_and_rejects_impossible_shapes():
    mesh = sharding.make_mesh({"data": -1, "model": 1})
    assert mesh.axis_names == ("data", "model") and mesh.devices.size == jax.device_count()
    with pytest.raises(ValueError, match="devices"):
        sharding.make_mesh({"data": jax.device_count() + 1, "model": 1})
    with pytest.raises(ValueError, match="unknown axes"):
        sharding.make_mesh({"data": -1, "tensor": 1})


def test_logical_rules_map_parameter_axes_to_the_model_axis():
    rules = dict(sharding.LOGICAL_AXIS_RULES)
    assert rules["batch"] == "data"
    assert rules["vocab"] == rules["mlp"] == rules["heads"] == "model"
    assert rules["embed"] is rules["kv"] is rules["length"] is None


EIGHT_DEVICE_SCRIPT = textwrap.dedent(
    """
    import json, jax, numpy as np, optax
    import flax.linen as nn
    from jax.sharding import Mesh
    from study.tasks import next_item
    from study.train import gradient_step, loop, sharding, schedules
    from tests.test_trainer import tiny_config, random_device_batch

    config = tiny_config("")
    config.model.vocab_size = 23  # odd: the vocab axis cannot split over model=2 and must fall back
    # SGD with lr 1 (the update is the gradient); Adam's first step, lr * sign(g), would turn rounding
    # noise of near-zero gradients into +-lr differences.
    tx = optax.sgd(1.0)
    schedule = schedules.make_schedule(config)
    batch = random_device_batch(16, config.model.row_length, config.model.vocab_size, seed=1)
    example = {k: v[:2] for k, v in batch.items()}
    rng = np.asarray(jax.random.key_data(jax.random.key(3)))

    def one_step(mesh):
        task = next_item.NextItemTask(config, mesh)
        init_key, run_key = jax.random.split(jax.random.key(0))
        with nn.logical_axis_rules(sharding.LOGICAL_AXIS_RULES):
            boxed = jax.eval_shape(lambda: gradient_step.init_state(task, tx, init_key, run_key))
            shardings = sharding.logical_shardings(boxed, mesh)
            state = jax.jit(lambda: nn.unbox(gradient_step.init_state(task, tx, init_key, run_key)),
                            out_shardings=shardings)()
        step = loop.jit_step(gradient_step.make_train_step(task, tx, schedule),
                             mesh, shardings, sharding.batch_shardings(batch, mesh))
        with loop.mesh_context(mesh):
            new_state, metrics = step(state, sharding.to_global_batch(batch, mesh), rng)
        return new_state, metrics

    big = sharding.make_mesh({"data": 4, "model": 2})
    one = Mesh(np.array(jax.devices()[:1]).reshape(1, 1), ("data", "model"))
    state8, metrics8 = one_step(big)
    state1, metrics1 = one_step(one)
    specs = {jax.tree_util.keystr(p): str(leaf.sharding.spec)
             for p, leaf in jax.tree_util.tree_flatten_with_path(state8.params)[0]}
    local_shapes = {jax.tree_util.keystr(p): [list(s.data.shape) for s in leaf.addressable_shards][:1]
                    for p, leaf in jax.tree_util.tree_flatten_with_path(state8.params)[0]}
    diffs = jax.tree.map(lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))),
                         state8.params, state1.params)
    scale = jax.tree.map(lambda b: float(np.max(np.abs(np.asarray(b)))), state1.params)
    print("RESULT" + json.dumps({
        "devices": jax.device_count(),
        "loss8": float(metrics8["loss"]), "loss1": float(metrics1["loss"]),
        "specs": specs, "local_shapes": local_shapes,
        "global_shapes": {jax.tree_util.keystr(p): list(l.shape)
                          for p, l in jax.tree_util.tree_flatten_with_path(state8.params)[0]},
        "max_diff": max(jax.tree.leaves(diffs)), "max_param": max(jax.tree.leaves(scale)),
        "batch_spec": str(sharding.to_global_batch(batch, big)["item_ids"].sharding.spec),
    }))
    """
)


def test_train_step_on_data4_model2_equals_one_device():
    env = cpu_devices_env(8)
    proc = subprocess.run([sys.executable, "-c", EIGHT_DEVICE_SCRIPT], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    result = json.loads(lines[0][len("RESULT"):])
    assert result["devices"] == 8
    assert result["batch_spec"] == "P('data', None)"
    on_model = [path for path, spec in result["specs"].items() if "'model'" in spec]
    assert on_model, result["specs"]  # model parallelism is really used ...
    for path in on_model:  # ... and each device holds a slice of those parameters
        assert np.prod(result["local_shapes"][path][0]) < np.prod(result["global_shapes"][path])
    vocab_params = [path for path, shape in result["global_shapes"].items() if 23 in shape]
    assert vocab_params and all("'model'" not in result["specs"][p] for p in vocab_params)
    # Same loss and same updated parameters (fp32; only the summation order differs): rtol 1e-5.
    assert result["loss8"] == pytest.approx(result["loss1"], rel=1e-5)
    assert result["max_diff"] <= 1e-5 * max(1.0, result["max_param"])


def test_logical_axis_rules_come_from_the_config_when_set():
    import ml_collections

    from study.train import loop

    config = ml_collections.ConfigDict({"logical_axis_rules": []})
    assert loop.axis_rules(config) == sharding.LOGICAL_AXIS_RULES
    config.logical_axis_rules = [["batch", "data"], ["vocab", "none"], ["mlp", "model"]]
    assert loop.axis_rules(config) == (("batch", "data"), ("vocab", None), ("mlp", "model"))
