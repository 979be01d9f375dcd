"""The item vocabulary (STUDY appendix B): top-v raw items by training interaction count.

Ties are broken by raw item id ascending; ids start at ``FIRST_ITEM_ID`` in that order; every
other item is ``OOV``. The result is a ``study.data.vocabulary.Vocabulary`` (also written as
``vocab.json``), used as a side input by the row builders.
"""

import collections
import json

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from study.data import vocabulary as vocabulary_lib


class CountTrainItems(beam.CombineFn):
    """Arrays of training raw items -> ``{raw item: number of training interactions}``."""

    def create_accumulator(self):
        return collections.Counter()

    def add_input(self, counts, train_items):
        counts.update(train_items.tolist())
        return counts

    def merge_accumulators(self, accumulators):
        accumulators = iter(accumulators)
        merged = next(accumulators)
        for counts in accumulators:
            merged.update(counts)
        return merged

    def extract_output(self, counts):
        return dict(counts)


def train_items(batch, boundary: int):
    """``student_sequences.HistoryBatch`` -> ``[n]`` raw items of the training period
    (timestamp < boundary)."""
    return batch.items[batch.timestamps < boundary]


class BuildVocabulary(beam.PTransform):
    """``(HistoryBatch PCollection, boundary singleton)`` -> singleton PCollection of the Vocabulary."""

    def __init__(self, max_items: int):
        super().__init__()
        self._max_items = max_items

    def expand(self, inputs):
        histories, boundary = inputs
        max_items = self._max_items
        return (
            histories
            | "TrainItems" >> beam.Map(train_items, beam.pvalue.AsSingleton(boundary))
            | "CountTrainItems" >> beam.CombineGlobally(CountTrainItems())
            | "TopItems" >> beam.Map(lambda counts: vocabulary_lib.top_items(counts, max_items))
        )


def write_vocab_json(vocab: vocabulary_lib.Vocabulary, path: str) -> str:
    """Writes ``vocab.json`` through Beam's filesystems (local or remote); returns the path."""
    with FileSystems.create(path) as handle:
        handle.write(json.dumps(vocab.to_json_dict(), indent=1).encode("utf-8"))
    return path
