"""The model-row contract between the Beam pipeline and every consumer (trainer, evaluator, serving).

A *row* is one training or evaluation example of fixed length ``row_length`` (c = 65 by default).
Individual rows hold one student's chunk; STUDY rows hold segments of several students of one
classroom joined by ``SEP`` tokens (``study.data.reserved_ids``). Padding is at the end and explicit.

Per-position features, each ``[row_length]``:

==================  =======  ===========================================================================
name                dtype    meaning (value at PAD and SEP positions)
==================  =======  ===========================================================================
item_ids            int32    vocabulary id of the interaction's item; ``OOV`` outside the top-v; ``PAD``/``SEP``
timestamps          int64    seconds since the Unix epoch (0)
student_index       int32    index of the student within the row, 0..k-1 in order of appearance (-1)
positions           int32    position within the student's segment in this row, 0-based (0)
student_hash        int64    ``student_hash(student_id)``, to join per-student tables (0)
history_len         int32    number of the student's interactions before this one, over all splits (0)
is_novel            int32    1 if the student had never interacted with this raw item before (0)
is_continuation     int32    1 if the raw item equals the student's previous interaction's item (0)
==================  =======  ===========================================================================

Per-row features (scalars):

==================  =======  ===========================================================================
classroom           string   classroom key, ``classroom_id`` or ``school|grade|school_year``
grade               int32    1..12, 0 for "Other"/unknown (``GRADE_CODES``)
wealth              int32    school wealth indicator, 1..5 for A..E, 0 for Unknown (``WEALTH_CODES``)
==================  =======  ===========================================================================

The pipeline writes rows as ``tf.train.Example`` records in TFRecord files with tfds metadata, so
``tfds.builder_from_directory(path)`` loads them; the trainer parses them in batches with
``parse_spec()``. Integer features are stored as int64 lists (as tfds stores them) and cast back.
"""

import hashlib

import numpy as np

DEFAULT_ROW_LENGTH = 65

# name -> NumPy dtype, for per-position features.
SEQUENCE_FEATURES = {
    "item_ids": np.int32,
    "timestamps": np.int64,
    "student_index": np.int32,
    "positions": np.int32,
    "student_hash": np.int64,
    "history_len": np.int32,
    "is_novel": np.int32,
    "is_continuation": np.int32,
}
# Values written at PAD / SEP positions.
FILL_VALUES = {name: 0 for name in SEQUENCE_FEATURES}
FILL_VALUES["student_index"] = -1

GRADE_CODES = {str(g): g for g in range(1, 13)}  # anything else ("Other", "", "K" ...) -> 0
WEALTH_CODES = {"A": 1, "B": 2, "C": 3, "D": 4, "E": 5}  # anything else ("Unknown") -> 0
GRADE_NAMES = {0: "Other"} | {g: str(g) for g in range(1, 13)}
WEALTH_NAMES = {0: "Unknown"} | {v: k for k, v in WEALTH_CODES.items()}

SPLITS = ("train", "validation", "test")
DATASETS = ("individual", "study")  # sub-folders of a processed directory, one tfds dataset each


def grade_code(grade) -> int:
    """Roster grade ("1".."12", "Other", 7, "07") -> 0..12."""
    text = str(grade).strip()
    if text.isdigit():
        text = str(int(text))
    return GRADE_CODES.get(text, 0)


def wealth_code(wealth) -> int:
    """Wealth indicator "A".."E" -> 1..5, anything else -> 0."""
    return WEALTH_CODES.get(str(wealth).strip().upper(), 0)


def student_hash(student_id: str) -> int:
    """Stable non-negative 63-bit id of a student, the same on every machine and run."""
    digest = hashlib.sha256(str(student_id).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def tfds_features(row_length: int = DEFAULT_ROW_LENGTH):
    """The ``tfds.features.FeaturesDict`` describing a row (for metadata and tfds loading)."""
    import tensorflow_datasets as tfds

    features = {
        name: tfds.features.Tensor(shape=(row_length,), dtype=np.dtype(dtype))
        for name, dtype in SEQUENCE_FEATURES.items()
    }
    features["classroom"] = tfds.features.Text()
    features["grade"] = tfds.features.Tensor(shape=(), dtype=np.int32)
    features["wealth"] = tfds.features.Tensor(shape=(), dtype=np.int32)
    return tfds.features.FeaturesDict(features)


def parse_spec(row_length: int = DEFAULT_ROW_LENGTH):
    """``tf.io.parse_example`` spec for a batch of serialized rows (all ints parsed as int64)."""
    import tensorflow as tf

    spec = {
        name: tf.io.FixedLenFeature([row_length], tf.int64) for name in SEQUENCE_FEATURES
    }
    spec["classroom"] = tf.io.FixedLenFeature([], tf.string)
    spec["grade"] = tf.io.FixedLenFeature([], tf.int64)
    spec["wealth"] = tf.io.FixedLenFeature([], tf.int64)
    return spec


def empty_row(row_length: int = DEFAULT_ROW_LENGTH) -> dict:
    """A row of padding only, as a dict of NumPy arrays (per-row fields empty/zero)."""
    row = {
        name: np.full((row_length,), FILL_VALUES[name], dtype=dtype)
        for name, dtype in SEQUENCE_FEATURES.items()
    }
    row.update(classroom=b"", grade=np.int32(0), wealth=np.int32(0))
    return row
