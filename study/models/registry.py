"""The next-item models by name: ``config.model.name`` is the one way to choose one.

Every model here is a ``flax.linen.Module`` with the same call::

    logits = module.apply(variables, batch, train=False)                       # evaluation
    logits = module.apply(variables, batch, train=True, rngs={"dropout": key})  # training

``batch`` is a dict of device arrays (``item_ids``, ``timestamps``, ``student_index``, ``positions``
``[batch, length] int32``; ``grade [batch] int32``; other keys are ignored) and ``logits`` is
``[batch, length, vocab_size] float32``: ``logits[b, i]`` scores the item at position ``i``. Its training
loss is ``loss_for(model_config)(logits, batch, rng) -> (loss_sum, weight_sum)``.

=================  ==========================================================================================
name               model (its config fields: the module's ``from_config``)
=================  ==========================================================================================
``transformer``    STUDY / Individual / two-stream decoder (``study.models.sequence_transformer``; the policy is
                   its ``attention`` field); softmax cross-entropy (``label_smoothing``)
``samn``           Social Attentional Memory Network (``study.models.samn``); BPR with sampled negatives
``srgnn``          SR-GNN (``study.models.srgnn``); cross-entropy over every click (``loss = "next_item"``) or
                   over every click but a student's first (``loss = "session"``, the paper's test cases)
=================  ==========================================================================================

Usage::

    model = build_model(config.model)
    loss = loss_for(config.model)
"""

import dataclasses
import functools
from typing import Callable

import flax.linen as nn
import ml_collections

from study.models import samn, srgnn
from study.models.losses import next_item_loss
from study.models.sequence_transformer import SequenceTransformer

Loss = Callable  # (logits, batch, rng) -> (loss_sum, weight_sum)


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """How to build a model from its config, its training loss, and whether it reads classmates' rows."""

    build: Callable[[ml_collections.ConfigDict], nn.Module]
    loss: Callable[[ml_collections.ConfigDict], Loss]
    reads_classmates: Callable[[ml_collections.ConfigDict], bool]


def _cross_entropy(loss_fn=next_item_loss):
    def build(model_config):
        smoothing = model_config.get("label_smoothing", 0.0)

        def loss(logits, batch, rng):
            del rng
            return loss_fn(logits, batch, label_smoothing=smoothing)

        return loss

    return build


def _srgnn_loss(model_config):
    losses = {"next_item": next_item_loss, "session": srgnn.session_next_item_loss}
    name = model_config.get("loss", "next_item")
    if name not in losses:
        raise ValueError(f"unknown SR-GNN loss {name!r} (config field model.loss); choose one of {sorted(losses)}")
    return _cross_entropy(losses[name])(model_config)


def _bpr(model_config):
    return functools.partial(samn.bpr_loss, num_negatives=model_config.get("num_negatives", 1))


MODELS: dict[str, ModelEntry] = {
    "transformer": ModelEntry(SequenceTransformer.from_config, _cross_entropy(),
                              lambda config: config.attention != "individual"),
    "samn": ModelEntry(samn.SAMN.from_config, _bpr, lambda config: True),
    "srgnn": ModelEntry(srgnn.SRGNN.from_config, _srgnn_loss, lambda config: False),
}


def _entry(model_config: ml_collections.ConfigDict) -> ModelEntry:
    name = model_config.get("name", "")
    if name not in MODELS:
        raise ValueError(f"unknown next-item model {name!r} (config field model.name); choose one of {sorted(MODELS)}")
    return MODELS[name]


def build_model(model_config: ml_collections.ConfigDict) -> nn.Module:
    """The flax module named by ``model_config.name``, built from ``model_config``."""
    return _entry(model_config).build(model_config)


def loss_for(model_config: ml_collections.ConfigDict) -> Loss:
    """The training loss ``(logits, batch, rng) -> (loss_sum, weight_sum)`` of ``model_config``'s model."""
    return _entry(model_config).loss(model_config)


def reads_classmates(model_config: ml_collections.ConfigDict) -> bool:
    """Whether the model's scores depend on classmates' interactions (serving then asks for them)."""
    return bool(_entry(model_config).reads_classmates(model_config))
