"""The item vocabulary: raw item ids <-> token ids, as written by the data pipeline in ``vocab.json``.

``vocab.json`` holds::

    {"reserved": {"pad": 0, "oov": 1, "sep": 2}, "first_item_id": 3,
     "vocab_size": v + 3,            # total number of token ids (a model's output layer size)
     "items": [raw ids in id order],  # items[i] has token id first_item_id + i
     "counts": [training interaction counts], "train_oov_interactions": n}

Items are the top-v raw items by training interaction count, ties broken by raw id ascending; every
other item maps to ``OOV``. The same loader serves the trainer, the evaluator and serving.
"""

import dataclasses
import json
import os
from typing import Iterable

import numpy as np

from study.data import reserved_ids


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """Raw item ids in token-id order; token id of ``items[i]`` is ``FIRST_ITEM_ID + i``."""

    items: tuple
    counts: tuple = ()
    train_oov_interactions: int = 0

    @property
    def vocab_size(self) -> int:
        """Total number of token ids, reserved ones included."""
        return reserved_ids.NUM_RESERVED + len(self.items)

    @property
    def raw_to_id(self) -> dict:
        mapping = self.__dict__.get("_raw_to_id")
        if mapping is None:
            mapping = {raw: reserved_ids.FIRST_ITEM_ID + i for i, raw in enumerate(self.items)}
            object.__setattr__(self, "_raw_to_id", mapping)
        return mapping

    def lookup(self, raw_items: Iterable[str]) -> np.ndarray:
        """Raw item ids -> ``[n] int32`` token ids (``OOV`` for items outside the vocabulary)."""
        mapping = self.raw_to_id
        return np.fromiter(
            (mapping.get(raw, reserved_ids.OOV) for raw in raw_items), dtype=np.int32
        )

    def raw_item(self, token_id: int) -> str | None:
        """Token id -> raw item id; ``None`` for reserved ids (pad, OOV, separator)."""
        index = int(token_id) - reserved_ids.FIRST_ITEM_ID
        return self.items[index] if 0 <= index < len(self.items) else None

    def to_json_dict(self) -> dict:
        return {
            "reserved": dict(reserved_ids.RESERVED),
            "first_item_id": reserved_ids.FIRST_ITEM_ID,
            "vocab_size": self.vocab_size,
            "items": list(self.items),
            "counts": [int(c) for c in self.counts],
            "train_oov_interactions": int(self.train_oov_interactions),
        }


def top_items(item_counts: dict, max_items: int) -> Vocabulary:
    """The ``max_items`` most frequent items of ``{raw item: training count}``, ties by raw id ascending."""
    ranked = sorted(item_counts.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = ranked[:max_items]
    return Vocabulary(
        items=tuple(raw for raw, _ in kept),
        counts=tuple(int(c) for _, c in kept),
        train_oov_interactions=int(sum(c for _, c in ranked[max_items:])),
    )


def from_json_dict(payload: dict) -> Vocabulary:
    """Checks the reserved ids of a ``vocab.json`` payload and builds the Vocabulary."""
    if payload.get("reserved") != reserved_ids.RESERVED or payload.get(
        "first_item_id"
    ) != reserved_ids.FIRST_ITEM_ID:
        raise ValueError(
            f"vocab reserved ids {payload.get('reserved')} / first_item_id "
            f"{payload.get('first_item_id')} differ from study.data.reserved_ids "
            f"{reserved_ids.RESERVED} / {reserved_ids.FIRST_ITEM_ID}; rebuild the dataset."
        )
    vocab = Vocabulary(
        items=tuple(payload["items"]),
        counts=tuple(payload.get("counts", ())),
        train_oov_interactions=int(payload.get("train_oov_interactions", 0)),
    )
    if "vocab_size" in payload and payload["vocab_size"] != vocab.vocab_size:
        raise ValueError(
            f"vocab_size {payload['vocab_size']} != reserved + len(items) = {vocab.vocab_size}"
        )
    return vocab


def load_vocab(path: str) -> Vocabulary:
    """Reads a ``vocab.json`` (local path or any filesystem tf.io.gfile / Beam can open)."""
    if "://" in path:  # remote filesystems (gs://, s3:// ...) through Beam's filesystem layer
        from apache_beam.io.filesystems import FileSystems

        with FileSystems.open(path) as handle:
            payload = json.loads(handle.read().decode("utf-8"))
    else:
        with open(path, "r", encoding="utf-8") as handle:
            payload = json.load(handle)
    return from_json_dict(payload)


def save_vocab(vocab: Vocabulary, path: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(vocab.to_json_dict(), handle)


def read_vocab_size(data_dir: str) -> int:
    """``vocab_size`` (items + reserved ids) of the processed dataset in ``data_dir`` (its ``vocab.json``)."""
    path = os.path.join(data_dir, "vocab.json")
    if not data_dir or not os.path.exists(path):
        raise FileNotFoundError(
            f"no vocab.json in data_dir {data_dir!r}; set --config.data_dir to a processed dataset (the output of "
            "study preprocess) or set --config.model.vocab_size")
    with open(path, encoding="utf-8") as handle:
        vocab = json.load(handle)
    if "vocab_size" not in vocab:
        raise KeyError(f"{path} has no 'vocab_size' key; re-run the data pipeline")
    return int(vocab["vocab_size"])
