"""The KNN baseline (``study.models.knn``) as a task: fitted in one pass over the train split, no gradients.

``config.task = "knn"``. State: every indexed training occurrence so far (``keys [n, K]``, ``targets [n]``)
and the item counts (``popularity [V]``), NumPy arrays that grow by each batch's occurrences (a host update,
``jit_update = False``); the data is every Individual row of the train split once, so the run ends with the
split, and a killed run resumes from its last checkpoint like any other. The index is built from the state
when evaluated or exported. Evaluators: ``hits`` (ranked lists). Export: the index files
(``study.models.knn.save_index``).
"""

import numpy as np

from study.data import input_pipeline, vocabulary
from study.eval import evaluators as evaluators_lib
from study.models import knn
from study.train.task import UpdateTask


class NearestContextsTask(UpdateTask):
    family = "knn"
    jit_update = False

    def __init__(self, config, mesh=None):
        super().__init__(config, mesh)
        if not config.model.vocab_size:
            config.model.vocab_size = vocabulary.read_vocab_size(config.data_dir)

    def _batches(self, split, max_batches=None):
        files = input_pipeline.dataset_files(self.config.data_dir, self.config.dataset, split)
        return input_pipeline.eval_batches(files, self.config.batch_size, row_length=self.config.model.row_length,
                                           max_batches=max_batches, process_index=0, process_count=1)

    def train_batches(self, start_batch):
        batches = self._batches("train")
        for _ in range(start_batch):
            next(batches, None)
        return batches

    def example_batch(self, batch_size):
        return input_pipeline.device_batch(input_pipeline.empty_batch(batch_size, self.config.model.row_length))

    def init_state(self, rng):
        del rng
        model = self.config.model
        return {"keys": np.zeros((0, model.context_size), np.int32), "targets": np.zeros((0,), np.int32),
                "popularity": np.zeros((model.vocab_size,), np.int64)}

    def update(self, state, batch, rng):
        del rng
        found = knn.occurrences(batch, self.config.model.vocab_size, self.config.model.context_size)
        new_state = {"keys": np.concatenate([state["keys"], found["keys"]]),
                     "targets": np.concatenate([state["targets"], found["targets"]]),
                     "popularity": state["popularity"] + found["popularity"]}
        return new_state, {"occurrences": float(len(new_state["targets"]))}

    def index(self, state) -> knn.KnnIndex:
        table = state.params
        return knn.index_from_occurrences(table["keys"], table["targets"], table["popularity"],
                                          self.config.model.context_size)

    def predictor(self, state):
        model = self.config.model
        return knn.NearestContexts(self.index(state), top_k=model.top_k, cache_size=model.cache_size).predict

    def evaluators(self):
        return {"hits": evaluators_lib.HitsEvaluator(self.predictor, self._batches, model_name=self.name,
                                                     output="top_k", seed=self.config.seed)}

    def export(self, state, out_dir, **unused):
        del unused
        knn.save_index(self.index(state), out_dir, data_dir=self.config.data_dir, dataset=self.config.dataset)
        return out_dir
