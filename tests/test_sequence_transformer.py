"""The sequence transformer's interface: registry, shapes, dtypes, dropout, padding, and the loss."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from study.data import reserved_ids
from study.models import losses, registry, sequence_transformer
from tests.device_env import cpu_devices_env
from tests.test_attention_masks import random_classroom_rows

POLICIES = ("individual", "study", "study_two_stream")


def small_config(attention, **overrides):
    config = sequence_transformer.default_config()
    config.update(dict(
        attention=attention, vocab_size=30, row_length=16, num_layers=2, emb_dim=16, num_heads=2,
        mlp_dim=32,
    ))
    config.update(overrides)
    return config


def _init(model, batch):
    """Random-init variables (op by op: the small ops' compilations are shared by all tests here)."""
    return model.init(jax.random.key(0), batch, train=False)


def _batch(seed=0, batch_size=4, row_length=16):
    rows = random_classroom_rows(np.random.default_rng(seed), batch_size, row_length)
    return {name: jnp.asarray(value) for name, value in rows.items()}


def test_default_config_matches_official_sizes():
    config = sequence_transformer.default_config()
    assert (config.num_layers, config.emb_dim, config.num_heads, config.mlp_dim) == (6, 256, 8, 1024)
    assert (config.vocab_size, config.row_length, config.num_grades) == (2003, 65, 13)
    assert config.dropout_rate == 0.1
    # Shapes only (no compute): the item table and the output layer cover the vocabulary.
    model = registry.build_model(config)
    batch = _batch(row_length=65)
    shapes = jax.eval_shape(lambda: _init(model, batch))
    params = jax.tree.map(lambda x: x.shape, shapes["params"])
    assert params["item_embedding"]["embedding"].value == (2003, 256)
    assert params["output"]["kernel"].value == (256, 2003)
    assert params["layer_5"]["mlp"]["wi"]["kernel"].value == (256, 1024)
    assert params["layer_5"]["attention"]["query_kernel"].value == (256, 8, 32)
    assert "layer_6" not in params


def test_registry_builds_each_policy_and_rejects_unknown_names():
    for policy in POLICIES:
        assert registry.build_model(small_config(policy)).attention == policy
        assert registry.reads_classmates(small_config(policy)) == (policy != "individual")
    config = small_config("study")
    config.name = "no_such_model"
    with pytest.raises(ValueError, match="no_such_model"):
        registry.build_model(config)
    del config["name"]
    with pytest.raises(ValueError, match="model.name"):  # one way to choose a model: no fallback
        registry.build_model(config)


def test_parameters_carry_only_the_agreed_logical_axis_names():
    model = registry.build_model(small_config("study_two_stream", use_grade=True))
    variables = jax.eval_shape(lambda: _init(model, _batch()))  # shapes and axis names only
    boxes = jax.tree.leaves(variables, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
    assert boxes and all(isinstance(box, nn.LogicallyPartitioned) for box in boxes)
    names = {name for box in boxes for name in box.names}
    assert names <= {"vocab", "embed", "mlp", "heads", "kv", None}
    assert all(len(box.names) == box.value.ndim for box in boxes)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_logits_shape_dtype_and_finite(policy, dtype):
    model = registry.build_model(small_config(policy, dtype=dtype, use_grade=True))
    batch = _batch()
    # A fully padded row in the batch must not produce NaN anywhere.
    for name in ("item_ids", "timestamps", "positions"):
        batch[name] = batch[name].at[0].set(0)
    batch["student_index"] = batch["student_index"].at[0].set(-1)
    variables = _init(model, batch)
    logits = model.apply(variables, batch, train=False)
    assert logits.shape == (4, 16, 30) and logits.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(logits)))
    params = jax.tree.leaves(nn.meta.unbox(variables))
    assert all(p.dtype == jnp.float32 for p in params)
    loss_sum, weight_sum = losses.next_item_loss(logits, batch)
    assert np.isfinite(float(loss_sum)) and float(weight_sum) > 0


@pytest.mark.parametrize("policy", POLICIES)
def test_dropout_is_active_in_training_only(policy):
    model = registry.build_model(small_config(policy))
    batch = _batch()
    variables = _init(model, batch)
    apply = model.apply
    evaluation = apply(variables, batch, train=False)
    np.testing.assert_array_equal(evaluation, apply(variables, batch, train=False))
    first = apply(variables, batch, train=True, rngs={"dropout": jax.random.key(1)})
    second = apply(variables, batch, train=True, rngs={"dropout": jax.random.key(2)})
    assert not np.allclose(first, evaluation)
    assert not np.allclose(first, second)


def test_grade_embedding_is_used_only_when_enabled():
    batch = _batch()
    other_grade = dict(batch, grade=(batch["grade"] + 1) % 13)
    for use_grade in (False, True):
        model = registry.build_model(small_config("study", use_grade=use_grade))
        variables = _init(model, batch)
        apply = model.apply
        same = np.allclose(apply(variables, batch), apply(variables, other_grade))
        assert same != use_grade


def test_previous_item_ids_follow_each_students_segment():
    rows = random_classroom_rows(np.random.default_rng(3), batch_size=8, row_length=20)
    previous = np.asarray(sequence_transformer.previous_item_ids(
        jnp.asarray(rows["item_ids"]), jnp.asarray(rows["student_index"]), jnp.asarray(rows["positions"])
    ))
    for b in range(8):
        for i in range(20):
            item = rows["item_ids"][b, i]
            # In a pipeline row a segment is contiguous: the previous item sits just before, unless p == 0.
            if item in (reserved_ids.PAD, reserved_ids.SEP) or rows["positions"][b, i] == 0:
                assert previous[b, i] == reserved_ids.SEP
            else:
                assert previous[b, i] == rows["item_ids"][b, i - 1]


def test_rows_longer_than_the_position_table_are_rejected():
    model = registry.build_model(small_config("study", row_length=8))
    with pytest.raises(ValueError, match="row_length"):
        model.init(jax.random.key(0), _batch(row_length=16), train=False)


def test_next_item_loss_by_hand():
    # One row: [item 3, item 1 (OOV), SEP, item 4, PAD]; vocabulary of 5.
    item_ids = jnp.array([[3, 1, 2, 4, 0]])
    logits = jnp.zeros((1, 5, 5)).at[0, 0, 3].set(np.log(3.0))  # position 0: p(3) = 3 / 7
    logits = logits.at[0, 3].set(jnp.array([0.0, 0.0, 0.0, 0.0, np.log(6.0)]))  # p(4) = 6 / 10
    logits = logits.at[0, 2].set(jnp.nan)  # a SEP position with garbage logits is ignored
    loss_sum, weight_sum = losses.next_item_loss(logits, {"item_ids": item_ids})
    expected = -np.log(3 / 7) - np.log(1 / 5) - np.log(6 / 10)
    np.testing.assert_allclose(float(loss_sum), expected, rtol=1e-6)
    assert float(weight_sum) == 3.0
    assert loss_sum.dtype == jnp.float32 and weight_sum.dtype == jnp.float32


def test_next_item_loss_label_smoothing_by_hand():
    item_ids = jnp.array([[3, 0]])
    logits = jnp.zeros((1, 2, 4))  # uniform: every class has log-probability -log 4
    loss_sum, weight_sum = losses.next_item_loss(logits, {"item_ids": item_ids}, label_smoothing=0.2)
    # Smoothed targets sum to one, so the loss is log 4 whatever the smoothing.
    np.testing.assert_allclose(float(loss_sum), np.log(4.0), rtol=1e-6)
    logits = jnp.array([[[0.0, 0.0, 0.0, np.log(5.0)], [0.0] * 4]])  # p = [1, 1, 1, 5] / 8
    loss_sum, _ = losses.next_item_loss(logits, {"item_ids": item_ids}, label_smoothing=0.2)
    # Target weights: 0.05 on each wrong class, 0.85 on class 3.
    expected = -(3 * 0.05 * np.log(1 / 8) + 0.85 * np.log(5 / 8))
    np.testing.assert_allclose(float(loss_sum), expected, rtol=1e-6)
    assert float(weight_sum) == 1.0


_SHARDED_RUN = """
import flax.linen as nn, jax, numpy as np
from study.models import registry, sequence_transformer
from study.train import sharding
from tests.test_attention_masks import random_classroom_rows
config = sequence_transformer.default_config()
config.update(dict(attention="study_two_stream", vocab_size=64, row_length=16, num_layers=1, emb_dim=16,
                   num_heads=2, mlp_dim=32))
model = registry.build_model(config)
batch = {k: jax.numpy.asarray(v) for k, v in random_classroom_rows(np.random.default_rng(0), 8, 16).items()}
init = lambda: model.init(jax.random.key(0), batch, train=False)
mesh = sharding.make_mesh({"data": 4, "model": 2})
shardings = sharding.logical_shardings(jax.eval_shape(init), mesh)
with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_AXIS_RULES):
    variables = jax.jit(lambda: nn.meta.unbox(init()), out_shardings=shardings)()
    logits = jax.jit(lambda v, b: model.apply(v, b, train=False))(variables, batch)
assert variables["params"]["output"]["kernel"].sharding.spec == jax.sharding.PartitionSpec(None, "model")
assert logits.sharding.spec == jax.sharding.PartitionSpec("data", None, "model"), logits.sharding
reference = model.apply(jax.device_get(variables), batch, train=False)
np.testing.assert_allclose(np.asarray(logits), np.asarray(reference), atol=1e-5)
print("sharded ok")
"""


def test_logical_axes_shard_on_a_data_model_mesh():
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[1]
    env = cpu_devices_env(8, PYTHONPATH=str(root))
    result = subprocess.run([sys.executable, "-c", _SHARDED_RUN], env=env, cwd=root,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "sharded ok" in result.stdout, result.stderr[-3000:]
