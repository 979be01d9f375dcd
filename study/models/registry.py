"""One table from model name to builder, so the trainer, evaluator and serving never special-case a model.

Every sequence recommender registered here is a ``flax.linen.Module`` with the same call::

    logits = module.apply(variables, batch, train=False)                       # evaluation
    logits = module.apply(variables, batch, train=True, rngs={"dropout": key})  # training

``batch`` is a dict of device arrays (``item_ids``, ``timestamps``, ``student_index``, ``positions``
``[batch, length] int32``; ``grade [batch] int32``; other keys are ignored) and ``logits`` is
``[batch, length, vocab_size] float32``: ``logits[b, i]`` scores the item at position ``i``.
The training loss is ``loss_for(model_config)``: ``next_item_loss(logits, batch) -> (loss_sum, weight_sum)``
unless the model registered its own (SAMN: BPR with sampled negatives).

Usage::

    config = default_model_config()
    config.attention = "study"
    model = build_model(config)
    variables = model.init(jax.random.key(0), batch, train=False)
"""

import functools
from typing import Callable

import flax.linen as nn
import ml_collections

from study.models import samn
from study.models import srgnn
from study.models.losses import next_item_loss  # re-exported: the one loss of the sequence models
from study.models.sequence_transformer import ATTENTION_POLICIES, SequenceTransformer

__all__ = [
    "MODEL_BUILDERS",
    "build_model",
    "default_model_config",
    "loss_for",
    "next_item_loss",
    "register_model",
]


def default_model_config() -> ml_collections.ConfigDict:
    """Defaults of the STUDY / Individual transformer (as the official STUDY code).

    Fields: ``model_name`` (a key of ``MODEL_BUILDERS``; empty means "use ``attention``"),
    ``vocab_size`` (including the reserved ids), ``row_length`` (positions embedded), ``num_layers``,
    ``emb_dim``, ``num_heads``, ``mlp_dim``, ``dropout_rate``, ``attention`` ("individual" | "study" |
    "study_two_stream"), ``use_grade``, ``num_grades``, ``dtype`` ("float32" | "bfloat16", compute only),
    ``label_smoothing`` (used by the trainer when it calls ``next_item_loss``).
    """
    config = ml_collections.ConfigDict()
    config.model_name = ""
    config.vocab_size = 2003  # 2000 items + PAD, OOV, SEP
    config.row_length = 65
    config.num_layers = 6
    config.emb_dim = 256
    config.num_heads = 8
    config.mlp_dim = 1024
    config.dropout_rate = 0.1
    config.attention = "study"
    config.use_grade = False
    config.num_grades = 13
    config.dtype = "float32"
    config.label_smoothing = 0.0
    return config


def _transformer_builder(attention: str) -> Callable[[ml_collections.ConfigDict], nn.Module]:
    def build(model_config: ml_collections.ConfigDict) -> nn.Module:
        return SequenceTransformer.from_config(model_config, attention=attention)

    return build


# name -> builder(model_config) -> flax module. Other families (KNN, SAMN, SRGNN) add entries here.
MODEL_BUILDERS: dict[str, Callable[[ml_collections.ConfigDict], nn.Module]] = {
    policy: _transformer_builder(policy) for policy in ATTENTION_POLICIES
}


# Recommenders that are fitted, not trained (no flax module): name -> how to run them.
UNTRAINED_MODELS = {
    "knn": "`study eval --config=configs/knn.py --workdir=DIR --config.data_dir=DATA` fits and evaluates it "
           "(study.models.knn)",
}

# name -> loss_builder(model_config) -> loss_fn(logits, batch[, rng=key]) -> (loss_sum, weight_sum); a model
# without an entry trains with next_item_loss. A loss with ``needs_rng = True`` is given a key by the trainer.
LOSS_BUILDERS: dict[str, Callable[[ml_collections.ConfigDict], Callable]] = {}


def register_model(
    name: str,
    builder: Callable[[ml_collections.ConfigDict], nn.Module],
    loss_builder: Callable[[ml_collections.ConfigDict], Callable] | None = None,
) -> None:
    """Adds a model family to the registry; ``builder(model_config)`` returns a flax module and the optional
    ``loss_builder(model_config)`` its training loss (default :func:`next_item_loss`)."""
    if name in MODEL_BUILDERS:
        raise ValueError(f"model {name!r} is already registered; pick another name")
    MODEL_BUILDERS[name] = builder
    if loss_builder is not None:
        LOSS_BUILDERS[name] = loss_builder


def loss_for(model_config: ml_collections.ConfigDict) -> Callable:
    """The training loss of the model named by ``model_config`` (as :func:`build_model` names it):
    its registered loss, else ``next_item_loss`` with ``model_config.label_smoothing``."""
    name = model_config.get("model_name", "") or model_config.get("attention", "")
    if name in LOSS_BUILDERS:
        return LOSS_BUILDERS[name](model_config)
    return functools.partial(next_item_loss, label_smoothing=model_config.get("label_smoothing", 0.0))


def build_model(model_config: ml_collections.ConfigDict) -> nn.Module:
    """The flax module named by ``model_config.model_name`` (or, when that is empty/absent, by
    ``model_config.attention``), built from ``model_config``."""
    name = model_config.get("model_name", "") or model_config.get("attention", "")
    if name in UNTRAINED_MODELS:
        raise ValueError(f"model {name!r} is not a trained network: {UNTRAINED_MODELS[name]}")
    if name not in MODEL_BUILDERS:
        raise ValueError(
            f"unknown model {name!r} (config field model_name / attention); "
            f"choose one of {sorted(MODEL_BUILDERS)}"
        )
    return MODEL_BUILDERS[name](model_config)


register_model("samn", samn.SAMN.from_config, loss_builder=samn.bpr_loss_for)
register_model("srgnn", srgnn.SRGNN.from_config)
