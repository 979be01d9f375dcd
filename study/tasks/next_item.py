"""The next-item recommenders trained by gradient (STUDY, Individual, two-stream, SAMN, SR-GNN) as one task.

``config.task = "next_item"``; ``config.model.name`` picks the model (``study.models.registry``). Data: the
processed dataset's TFRecord rows of ``config.dataset`` (``study.data.input_pipeline``). Update: the model's
loss (``registry.loss_for``) on dropout-on logits. Evaluators: ``loss`` (validation loss and accuracy@1,
reduced on the devices), ``hits`` (hits@n reports), ``session`` (P@K / MRR@K). Export: the serving artifact
(``study.serve.export``).
"""

import os

import jax
import jax.numpy as jnp

from study.data import input_pipeline, reserved_ids, vocabulary
from study.eval import evaluators as evaluators_lib
from study.models import registry
from study.serve import export as export_lib
from study.train import gradient_step
from study.train.task import GradientTask


def top1_correct(logits, batch):
    """Next-item accuracy@1 numerator: the number of target positions whose best-scored candidate
    (reserved ids never predicted) is the target; targets are the item positions of valid rows, so an OOV
    target is always a miss. float32 scalar."""
    targets = batch["item_ids"]
    weights = reserved_ids.is_item(targets)
    if "row_valid" in batch:
        weights &= batch["row_valid"][:, None] > 0
    scores = jnp.asarray(logits, jnp.float32).at[..., : reserved_ids.FIRST_ITEM_ID].set(-jnp.inf)
    return jnp.sum((jnp.argmax(scores, axis=-1) == targets) & weights, dtype=jnp.float32)


class NextItemTask(GradientTask):
    family = "next_item"

    def __init__(self, config, mesh=None):
        super().__init__(config, mesh)
        if not config.model.vocab_size:
            config.model.vocab_size = vocabulary.read_vocab_size(config.data_dir)
        self.model = registry.build_model(config.model)
        self._loss = registry.loss_for(config.model)
        self._predict = jax.jit(lambda params, batch: self.model.apply({"params": params}, batch, train=False))

    @property
    def name(self) -> str:
        model = self.config.model
        return self.config.get("name", "") or (model.attention if model.name == "transformer" else model.name)

    # Data.
    def _files(self, split):
        return input_pipeline.dataset_files(self.config.data_dir, self.config.dataset, split)

    def train_batches(self, start_batch):
        config = self.config
        return input_pipeline.train_batches(
            self._files("train"), config.batch_size, row_length=config.model.row_length, seed=config.seed,
            start_batch=start_batch, shard_by=config.data_sharding, shuffle_buffer=config.shuffle_buffer)

    def eval_batches(self, split, max_batches=None):
        """This process's share of the split's rows (device-reduced evaluators)."""
        return input_pipeline.eval_batches(self._files(split), self.config.batch_size,
                                           row_length=self.config.model.row_length, max_batches=max_batches,
                                           shard_by=self.config.data_sharding)

    def host_batches(self, split, max_batches=None):
        """Every row of the split in this process (evaluators that keep per-interaction records)."""
        return input_pipeline.eval_batches(self._files(split), self.config.batch_size,
                                           row_length=self.config.model.row_length, max_batches=max_batches,
                                           process_index=0, process_count=1)

    def example_batch(self, batch_size):
        return input_pipeline.device_batch(input_pipeline.empty_batch(batch_size, self.config.model.row_length))

    def device_batch(self, batch):
        return input_pipeline.device_batch(batch)

    # Update.
    def init_params(self, rng):
        example = self.example_batch(2)
        return self.model.init({"params": rng, "dropout": rng}, example, train=False)["params"]

    def loss(self, params, batch, rng):
        logits = self.model.apply({"params": params}, batch, train=True, rngs={"dropout": rng})
        loss_sum, weight_sum = self._loss(logits, batch, jax.random.fold_in(rng, 1))
        return loss_sum, weight_sum, {}

    def eval_loss(self, params, batch):
        logits = self.model.apply({"params": params}, batch, train=False)
        loss_sum, weight_sum = self._loss(logits, batch, jax.random.key(0))  # a fixed key: same loss every time
        return loss_sum, weight_sum, {"accuracy_at_1": top1_correct(logits, batch)}

    # Evaluation and export.
    def predictor(self, state):
        params = state.params
        return lambda batch: self._predict(params, input_pipeline.device_batch(batch))

    def evaluators(self):
        return {
            "loss": gradient_step.LossEvaluator(self),
            "hits": evaluators_lib.HitsEvaluator(self.predictor, self.host_batches, model_name=self.name,
                                                 seed=self.config.seed),
            "session": evaluators_lib.SessionEvaluator(self.predictor, self.host_batches),
        }

    def export(self, state, out_dir, *, vocab_path=None, top_k=export_lib.DEFAULT_TOP_K, batch_size=None,
               saved_model=False):
        vocab_path = vocab_path or os.path.join(self.config.data_dir, export_lib.VOCAB_FILE)
        return export_lib.export_model(self.config.model, jax.device_get(state.params), vocab_path, out_dir,
                                       top_k=top_k, batch_size=batch_size, saved_model=saved_model)
