"""The one place that decides how arrays are laid out on devices.

Models name the axes of their parameters and activations with logical names ("vocab", "embed",
"mlp", "heads", "kv", "batch", "length"); :data:`LOGICAL_AXIS_RULES` maps them onto the two named
axes of the device mesh, ``data`` (batch parallelism) and ``model`` (tensor parallelism). The same
code runs on one CPU (a 1x1 mesh), on N simulated devices and on a TPU pod.
"""

import math
from typing import Any, Mapping

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "model")

# logical axis name -> mesh axis (None = replicated).
LOGICAL_AXIS_RULES = (
    ("batch", "data"),
    ("vocab", "model"),
    ("mlp", "model"),
    ("heads", "model"),
    ("embed", None),
    ("kv", None),
    ("length", None),
)


def make_mesh(mesh_shape: Mapping[str, int] | None = None, devices=None) -> Mesh:
    """A ``Mesh`` with axes ("data", "model") over all (or the given) devices.

    Args:
      mesh_shape: {"data": d, "model": m}; at most one size may be -1 (= all remaining devices).
        Default {"data": -1, "model": 1}.
      devices: devices to use (default ``jax.devices()``, every process's devices).
    """
    mesh_shape = dict(mesh_shape or {"data": -1, "model": 1})
    unknown = set(mesh_shape) - set(MESH_AXES)
    if unknown:
        raise ValueError(f"mesh_shape has unknown axes {sorted(unknown)}; allowed: {MESH_AXES}")
    devices = list(jax.devices() if devices is None else devices)
    sizes = [int(mesh_shape.get(name, 1)) for name in MESH_AXES]
    if sizes.count(-1) > 1:
        raise ValueError(f"at most one mesh axis may be -1, got mesh_shape={mesh_shape}")
    if -1 in sizes:
        known = math.prod(s for s in sizes if s != -1)
        if len(devices) % known:
            raise ValueError(f"{len(devices)} devices cannot be split into mesh {mesh_shape}")
        sizes[sizes.index(-1)] = len(devices) // known
    if math.prod(sizes) != len(devices):
        raise ValueError(
            f"mesh {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} devices but {len(devices)} are "
            "available; fix config.mesh_shape (use -1 for 'all remaining')"
        )
    auto = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
    return jax.make_mesh(tuple(sizes), MESH_AXES, axis_types=auto, devices=devices)


def logical_shardings(boxed_tree: Any, mesh: Mesh, rules=LOGICAL_AXIS_RULES) -> Any:
    """NamedShardings for a pytree whose leaves may be ``nn.Partitioned`` boxes (e.g. an abstract train
    state from ``jax.eval_shape``); unannotated leaves are replicated. The result has the structure of
    ``nn.unbox(boxed_tree)``."""
    logical_specs = nn.get_partition_spec(boxed_tree)
    shardings = nn.logical_to_mesh_sharding(logical_specs, mesh, rules)
    return jax.tree.map(lambda value, s: _divisible(s, value.shape, mesh), nn.unbox(boxed_tree), shardings)


def _divisible(named: NamedSharding, shape, mesh: Mesh) -> NamedSharding:
    """``named`` with every dimension that its mesh axes do not divide evenly replicated instead (e.g. a
    vocabulary of 2003 rows on a model axis of 2); jit rejects uneven shardings."""
    spec = list(named.spec) + [None] * (len(shape) - len(named.spec))
    for dim, axes in enumerate(spec):
        if axes is None:
            continue
        names = axes if isinstance(axes, tuple) else (axes,)
        if shape[dim] % math.prod(mesh.shape[name] for name in names):
            spec[dim] = None
    return NamedSharding(mesh, PartitionSpec(*spec))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, ndim: int = 1) -> NamedSharding:
    """Leading (batch) dimension split over "data", the rest replicated."""
    return NamedSharding(mesh, PartitionSpec("data", *([None] * (ndim - 1))))


def batch_shardings(batch: Mapping[str, Any], mesh: Mesh) -> dict:
    """A ``batch_sharding`` per array of a batch dict (arrays or ShapeDtypeStructs)."""
    return {name: batch_sharding(mesh, len(value.shape)) for name, value in batch.items()}


def to_global_batch(local_batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict:
    """Global ``jax.Array``s, batch-sharded on "data", from this process's rows.

    Each process passes its own ``[local_batch, ...]`` rows (processes in ``process_index`` order make up
    the global batch); the result has leading dimension ``local_batch * process_count``.
    """
    return {
        name: jax.make_array_from_process_local_data(batch_sharding(mesh, np.ndim(value)), np.asarray(value))
        for name, value in local_batch.items()
    }
