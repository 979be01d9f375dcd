"""Export a trained sequence recommender as a self-contained serving artifact (``docs/serving.md``).

The artifact is a directory that a fresh process loads with ``study.serve.serving_artifact`` alone,
without the model or training code:

==========================  ===================================================================
file                        content
==========================  ===================================================================
``model.jax_exported``      ``jax.export`` serialization of ``batch -> top-k`` with the
                            parameters baked in as constants (StableHLO; no pickles)
``model_query.jax_exported``  the same model, ranking only at ``query_index`` (what ``study serve`` calls)
``saved_model/``            with ``saved_model=True``: a TensorFlow SavedModel (``study.serve.saved_model``)
``manifest.json``           format version, jax version, input / output shapes and dtypes, top-k
``model_config.json``       the model config (``ml_collections.ConfigDict.to_dict()``)
``vocab.json``              the pipeline's vocabulary (raw item id of every item id)
``reserved_ids.json``       ``{"pad": 0, "oov": 1, "sep": 2, "first_item_id": 3}``
==========================  ===================================================================

The exported function takes the model batch (``item_ids``, ``timestamps``, ``student_index``,
``positions``: ``[batch, row_length] int32``; ``grade``: ``[batch] int32``) and returns, for every
position, the ``top_k`` candidate items (ids ``>= FIRST_ITEM_ID``, so PAD / OOV / SEP are never
ranked) with their log-probabilities under the model:
``top_ids [batch, row_length, top_k] int32`` and ``top_scores [batch, row_length, top_k] float32``.
The batch dimension is symbolic by default, so one artifact serves any batch size. The query function
takes the same batch plus ``query_index [batch] int32`` and returns ``[batch, top_k]`` ids and scores.

Usage::

    export_model(model_config, params, "processed/vocab.json", "artifacts/study")
"""

import datetime
import json
import os
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from study.data import reserved_ids, vocabulary

FORMAT_NAME = "study-serving"
FORMAT_VERSION = 1
DEFAULT_TOP_K = 100

EXPORTED_FILE = "model.jax_exported"
QUERY_EXPORTED_FILE = "model_query.jax_exported"
MANIFEST_FILE = "manifest.json"
MODEL_CONFIG_FILE = "model_config.json"
VOCAB_FILE = "vocab.json"
RESERVED_IDS_FILE = "reserved_ids.json"

# Per-position model inputs, all [batch, row_length] int32 (timestamps: seconds, only compared).
SEQUENCE_INPUTS = ("item_ids", "timestamps", "student_index", "positions")


def _config_to_dict(model_config) -> dict:
    """ConfigDict or mapping -> plain JSON-able dict (dtypes and other objects become strings)."""
    as_dict = model_config.to_dict() if hasattr(model_config, "to_dict") else dict(model_config)
    return json.loads(json.dumps(as_dict, default=str))


def top_k_candidates(logits: jax.Array, top_k: int) -> tuple[jax.Array, jax.Array]:
    """``[..., vocab] float`` logits -> top-k over candidate items only, as log-probabilities.

    Returns ``(ids [..., top_k] int32, scores [..., top_k] float32)``; ids are vocabulary ids
    ``>= FIRST_ITEM_ID`` in decreasing score order. Scores are ``log_softmax`` over the full vocabulary
    (what the model was trained on), so they are comparable across requests.
    """
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    candidate_scores = log_probs[..., reserved_ids.FIRST_ITEM_ID :]
    scores, offsets = jax.lax.top_k(candidate_scores, top_k)
    return offsets.astype(jnp.int32) + reserved_ids.FIRST_ITEM_ID, scores


def logits_at_query(module, params, batch: dict[str, jax.Array]) -> jax.Array:
    """The model's logits at each row's ``batch["query_index"]`` (``[batch] int32``): ``[batch, vocab]``.

    A model whose last layer is a ``nn.Dense`` named ``output`` at its top level (the transformers) gets that
    layer's input cut to the query position first: the output projection over every position is most of the
    serving cost (``row_length`` x ``emb_dim`` x ``vocab_size`` per row) and only one position is read.
    Other models are run in full and their logits gathered at the query.
    """
    model_batch = {name: batch[name] for name in (*SEQUENCE_INPUTS, "grade")}
    query = batch["query_index"].astype(jnp.int32)[:, None, None]
    cut = []

    def project_query_only(next_fun, args, kwargs, context):
        module_ = context.module
        if (isinstance(module_, nn.Dense) and context.method_name == "__call__"
                and module_.scope is not None and module_.scope.path == ("output",)):
            cut.append(True)
            hidden = jnp.take_along_axis(args[0], query, axis=1)  # [batch, 1, emb]
            return next_fun(hidden, *args[1:], **kwargs)
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(project_query_only):
        logits = module.apply({"params": params}, model_batch, train=False)
    if cut:
        return logits[:, 0]  # [batch, 1, vocab] -> [batch, vocab]
    return jnp.take_along_axis(logits, query, axis=1)[:, 0]


def query_serving_function(module, params, top_k: int):
    """The request-path function: model batch + ``query_index`` -> top-k at the query position only,
    ``{"top_ids" [batch, top_k] int32, "top_scores" [batch, top_k] float32}`` (``row_length`` times less
    ranking work than ``serving_function``, which ranks every position)."""
    params = jax.tree.map(jnp.asarray, params)

    def recommend_at_query(batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        top_ids, top_scores = top_k_candidates(logits_at_query(module, params, batch), top_k)
        return {"top_ids": top_ids, "top_scores": top_scores}

    return recommend_at_query


def serving_function(module, params, top_k: int):
    """The function that gets exported: model batch dict -> ``{"top_ids", "top_scores"}``."""
    params = jax.tree.map(jnp.asarray, params)

    def recommend_top_k(batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        logits = module.apply({"params": params}, batch, train=False)
        top_ids, top_scores = top_k_candidates(logits, top_k)
        return {"top_ids": top_ids, "top_scores": top_scores}

    return recommend_top_k


def input_specs(row_length: int, batch_size: int | None) -> dict[str, jax.ShapeDtypeStruct]:
    """Abstract model batch for export; ``batch_size=None`` makes the batch dimension symbolic."""
    if batch_size is None:
        (batch_dim,) = jax.export.symbolic_shape("batch")
    else:
        batch_dim = int(batch_size)
    specs = {
        name: jax.ShapeDtypeStruct((batch_dim, row_length), jnp.int32) for name in SEQUENCE_INPUTS
    }
    specs["grade"] = jax.ShapeDtypeStruct((batch_dim,), jnp.int32)
    return specs


def query_input_specs(row_length: int, batch_size: int | None) -> dict[str, jax.ShapeDtypeStruct]:
    """``input_specs`` plus ``query_index [batch] int32``."""
    specs = input_specs(row_length, batch_size)
    specs["query_index"] = jax.ShapeDtypeStruct(specs["grade"].shape, jnp.int32)
    return specs


def _shape_json(aval) -> dict:
    return {
        "shape": [dim if isinstance(dim, int) else str(dim) for dim in aval.shape],
        "dtype": str(aval.dtype),
    }


def export_model(
    model_config,
    params: Any,
    vocab_path: str,
    out_dir: str,
    *,
    batch_size: int | None = None,
    row_length: int | None = None,
    top_k: int = DEFAULT_TOP_K,
    platforms: Sequence[str] | None = None,
    saved_model: bool = False,
) -> str:
    """Writes the serving artifact of a sequence recommender to ``out_dir``; returns ``out_dir``.

    Args:
      model_config: the model's ``ml_collections.ConfigDict`` (``study.models.registry`` fields).
      params: the trained parameters (the ``"params"`` collection), baked into the artifact.
      vocab_path: the pipeline's ``vocab.json``; its item list must match ``model_config.vocab_size``.
      out_dir: output directory (created; existing artifact files in it are replaced).
      batch_size: fixed batch size, or None (default) for a symbolic batch dimension.
      row_length: max row length served; default ``model_config.row_length``.
      top_k: number of candidates returned per position (clipped to the number of candidate items).
      platforms: lowering platforms (e.g. ``("cpu", "tpu")``); default the current backend plus cpu.
      saved_model: also write a TensorFlow SavedModel to ``out_dir/saved_model`` (``study.serve.saved_model``).
    """
    from study.models import registry  # the training-side model code is needed only to export

    try:
        vocab = vocabulary.load_vocab(vocab_path)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"vocabulary file {vocab_path} does not exist; pass the vocab.json written by the "
            "data pipeline next to the processed dataset"
        ) from None
    vocab_size = int(model_config.vocab_size)
    if vocab.vocab_size != vocab_size:
        raise ValueError(
            f"{vocab_path} holds {len(vocab.items)} items (+{reserved_ids.NUM_RESERVED} reserved ids) "
            f"but the model config has vocab_size={vocab_size}; export with the vocabulary the model "
            "was trained on"
        )
    first_item_id = reserved_ids.FIRST_ITEM_ID
    row_length = int(row_length or model_config.row_length)
    if row_length > int(model_config.row_length):
        raise ValueError(
            f"row_length={row_length} exceeds the model's row_length={model_config.row_length} "
            "(positions beyond it have no embedding)"
        )
    num_candidates = vocab_size - first_item_id
    if num_candidates < 1:
        raise ValueError(f"vocab_size={vocab_size} leaves no candidate items")
    top_k = max(1, min(int(top_k), num_candidates))
    if platforms is None:
        platforms = tuple(dict.fromkeys((jax.default_backend(), "cpu")))

    module = registry.build_model(model_config)
    function = jax.jit(serving_function(module, params, top_k))
    exported = jax.export.export(function, platforms=tuple(platforms))(
        input_specs(row_length, batch_size)
    )

    query_exported = jax.export.export(jax.jit(query_serving_function(module, params, top_k)),
                                       platforms=tuple(platforms))(query_input_specs(row_length, batch_size))

    os.makedirs(out_dir, exist_ok=True)
    for name, content in ((EXPORTED_FILE, exported), (QUERY_EXPORTED_FILE, query_exported)):
        with open(os.path.join(out_dir, name), "wb") as handle:
            handle.write(content.serialize())
    _write_json(os.path.join(out_dir, VOCAB_FILE), vocab.to_json_dict())
    reserved = dict(reserved_ids.RESERVED, first_item_id=reserved_ids.FIRST_ITEM_ID)
    _write_json(os.path.join(out_dir, RESERVED_IDS_FILE), reserved)
    _write_json(os.path.join(out_dir, MODEL_CONFIG_FILE), _config_to_dict(model_config))
    if saved_model:
        from study.serve import saved_model as saved_model_lib  # TensorFlow: only when asked for

        saved_model_lib.save_saved_model(module, params, vocab.items,
                                         os.path.join(out_dir, saved_model_lib.SAVED_MODEL_DIR),
                                         row_length=row_length, top_k=top_k, platforms=platforms)
    (in_avals,), _ = exported.in_tree.unflatten(exported.in_avals)  # (args, kwargs)
    out_avals = exported.out_tree.unflatten(exported.out_avals)
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "jax_version": jax.__version__,
        "jax_export_calling_convention_version": exported.calling_convention_version,
        "platforms": list(exported.platforms),
        "model_name": str(model_config.name),
        "attention": str(model_config.get("attention", "")),
        "reads_classmates": registry.reads_classmates(model_config),
        "row_length": row_length,
        "batch_size": batch_size,
        "top_k": top_k,
        "vocab_size": vocab_size,
        "use_grade": bool(model_config.get("use_grade", False)),
        "num_grades": int(model_config.get("num_grades", 0)),
        "reserved_ids": reserved,
        "inputs": {name: _shape_json(aval) for name, aval in in_avals.items()},
        "outputs": {name: _shape_json(aval) for name, aval in out_avals.items()},
        "scores": "log-probability of the item under the model (log_softmax over the full vocabulary)",
        "timestamps": "int32 seconds; only compared, so any common offset per row may be subtracted",
        "files": {
            "exported": EXPORTED_FILE,
            "query_exported": QUERY_EXPORTED_FILE,
            "model_config": MODEL_CONFIG_FILE,
            "vocab": VOCAB_FILE,
            "reserved_ids": RESERVED_IDS_FILE,
            **({"saved_model": "saved_model"} if saved_model else {}),
        },
    }
    # The manifest is written last: a directory with a manifest is a complete artifact.
    _write_json(os.path.join(out_dir, MANIFEST_FILE), manifest)
    return out_dir


def _write_json(path: str, content: dict) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(content, handle, indent=2, sort_keys=True)
        handle.write("\n")


def example_batch(row_length: int, batch_size: int = 1) -> dict[str, np.ndarray]:
    """A padding-only model batch (for ``module.init``): ``[batch_size, row_length] int32`` fields."""
    batch = {
        name: np.zeros((batch_size, row_length), np.int32) for name in SEQUENCE_INPUTS
    }
    batch["student_index"][:] = -1
    batch["grade"] = np.zeros((batch_size,), np.int32)
    return batch
