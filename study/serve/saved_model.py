"""A TensorFlow SavedModel of a next-item recommender, for TensorFlow Serving or any TF runtime.

Written by ``study.serve.export.export_model(..., saved_model=True)`` into ``<artifact>/saved_model/``; loads
with ``tf.saved_model.load`` (or TF Serving) in a process that has TensorFlow and nothing of ``study`` or JAX.

Why ``jax2tf`` + ``tf.saved_model.save`` directly (not ``orbax-export``): the model is one pure function of
(params, batch); jax2tf's native serialization embeds the same StableHLO as ``model.jax_exported`` in one
``XlaCallModule`` op, the parameters become ``tf.Variable``s (so large models do not hit the 2 GB GraphDef
limit of baked constants), and two ``tf.function``s with explicit input signatures are all a SavedModel needs.
``orbax-export`` adds a dependency for the same two calls.

Signature ``serving_default`` (``B`` = any batch size, ``L`` = the model's ``row_length``), the model row of
``docs/serving.md`` ("How a request becomes a row"):

=================  ==============  ======================================================================
input              shape, dtype    meaning
=================  ==============  ======================================================================
``item_ids``       ``[B, L] int32``  vocabulary ids (``item_ids`` signature), PAD 0 / OOV 1 / SEP 2
``timestamps``     ``[B, L] int32``  seconds since the row's earliest event (0 at PAD / SEP)
``student_index``  ``[B, L] int32``  0 for the first student segment of the row, 1, ...; -1 at PAD / SEP
``positions``      ``[B, L] int32``  position within the student's segment, from 0 (0 at PAD / SEP)
``grade``          ``[B] int32``     0..12, 0 = unknown
``query_index``    ``[B] int32``     the row position whose next item is asked for
``k``              ``[] int32``      1..top_k
=================  ==============  ======================================================================

Outputs: ``top_ids [B, k] int32`` (ids >= 3, best first), ``top_scores [B, k] float32`` (log-probabilities),
``top_items [B, k] string`` (the raw item ids). Signature ``item_ids``: ``raw_items [B, N] string ->
item_ids [B, N] int32`` (unknown items -> OOV), so a client needs no vocabulary file.
"""

import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from study.data import reserved_ids

SAVED_MODEL_DIR = "saved_model"
# Per-position row inputs, all [batch, row_length] int32 (as study.serve.export.SEQUENCE_INPUTS).
ROW_INPUTS = ("item_ids", "timestamps", "student_index", "positions")
RESERVED_NAMES = ("<pad>", "<oov>", "<sep>")


def query_log_probs_function(module):
    """``(params, batch) -> [B, V - FIRST_ITEM_ID] float32``: the candidate items' log-probabilities at
    ``batch["query_index"]`` (log-softmax over the full vocabulary, as ``study.serve.export.top_k_candidates``).

    The top-k itself is taken in TensorFlow: ``jax.lax.top_k`` lowers to a StableHLO composite that the
    ``XlaCallModule`` op of TensorFlow 2.21 cannot deserialize.
    """

    from study.serve import export  # one gather rule for every artifact

    def query_log_probs(params, batch):
        at_query = export.logits_at_query(module, params, batch)  # [B, V]
        log_probs = jax.nn.log_softmax(at_query.astype(jnp.float32), axis=-1)
        return log_probs[:, reserved_ids.FIRST_ITEM_ID :]

    return query_log_probs


def save_saved_model(module, params: Any, raw_items: Sequence[str], out_dir: str, *, row_length: int, top_k: int,
                     platforms: Sequence[str]) -> str:
    """Writes the SavedModel of ``module`` with ``params`` to ``out_dir``; returns ``out_dir``.

    Args:
      module: the flax next-item model (``study.models.registry.build_model``).
      params: its ``"params"`` collection (host arrays); stored as ``tf.Variable``s.
      raw_items: the vocabulary's raw item ids, item id ``FIRST_ITEM_ID + n`` for ``raw_items[n]``.
      row_length: the fixed row length ``L`` of the inputs.
      top_k: the most candidates a call may ask for (``k`` input in 1..top_k).
      platforms: jax2tf native-serialization platforms (e.g. ``("cpu",)``).
    """
    import tensorflow as tf
    from jax.experimental import jax2tf

    params = jax.tree.map(np.asarray, params)
    converted = jax2tf.convert(
        query_log_probs_function(module),
        polymorphic_shapes=(None, "(b, ...)"),  # one symbolic batch size for every input
        with_gradient=False,
        native_serialization_platforms=tuple(platforms),
    )
    vocabulary = np.asarray([*RESERVED_NAMES, *(str(item) for item in raw_items)], dtype=object)
    item_ids = np.arange(reserved_ids.FIRST_ITEM_ID, len(vocabulary), dtype=np.int32)
    signature = {name: tf.TensorSpec([None, row_length], tf.int32, name=name) for name in ROW_INPUTS}
    signature.update(grade=tf.TensorSpec([None], tf.int32, name="grade"),
                     query_index=tf.TensorSpec([None], tf.int32, name="query_index"))

    servable = tf.Module()
    servable.params = tf.nest.map_structure(lambda value: tf.Variable(value, trainable=False), params)
    servable.vocabulary = tf.constant(vocabulary, tf.string)
    servable.item_table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(vocabulary[reserved_ids.FIRST_ITEM_ID:], tf.string),
                                            tf.constant(item_ids)),
        default_value=reserved_ids.OOV)

    @tf.function(input_signature=[*signature.values(), tf.TensorSpec([], tf.int32, name="k")], autograph=False)
    def serve(item_ids, timestamps, student_index, positions, grade, query_index, k):
        tf.debugging.assert_greater_equal(k, 1, message=f"k must be in 1..{top_k}")
        tf.debugging.assert_less_equal(k, top_k, message=f"k must be in 1..{top_k}")
        tf.debugging.assert_less(query_index, row_length, message=f"query_index must be in 0..{row_length - 1}")
        tf.debugging.assert_greater_equal(query_index, 0, message=f"query_index must be in 0..{row_length - 1}")
        batch = dict(item_ids=item_ids, timestamps=timestamps, student_index=student_index, positions=positions,
                     grade=grade, query_index=query_index)
        # tf.math.top_k, like jax.lax.top_k, breaks ties by the lower index.
        top_scores, offsets = tf.math.top_k(converted(servable.params, batch), k=k)
        top_ids = offsets + reserved_ids.FIRST_ITEM_ID
        return {"top_ids": top_ids, "top_scores": top_scores,
                "top_items": tf.gather(servable.vocabulary, top_ids)}

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.string, name="raw_items")], autograph=False)
    def lookup_item_ids(raw_items):
        return {"item_ids": servable.item_table.lookup(raw_items)}

    servable.serve, servable.lookup_item_ids = serve, lookup_item_ids
    os.makedirs(out_dir, exist_ok=True)
    tf.saved_model.save(servable, out_dir, signatures={"serving_default": serve, "item_ids": lookup_item_ids})
    return out_dir
