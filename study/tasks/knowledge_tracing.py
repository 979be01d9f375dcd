"""Knowledge tracing (DKVMN, DQKT, DKT, BKT) as a task on the one loop: ``config.task = "knowledge_tracing"``.

Data: a DKVMN release (``study.data.kt_sequences``; ``config.data.dataset`` "assist2009", "statics2011" or
"synthetic", ``config.data_dir`` its folder, empty = ``../shared/data/kt/...``) with fold ``config.data.fold``:
training on ``_train<k>``, validation on ``_valid<k>``, test on ``_test``. Sequences are cut into windows of
``config.data.window`` answers (DKVMN's ``seqlen``; each window starts from a fresh memory, in training and in
evaluation alike). Training batches are ``config.batch_size`` windows of an endless stream of seeded epochs,
a pure function of the batch index (exact resume); ``config.data.epochs`` > 0 ends the stream after that many
epochs (the loop then stops when the data ends; set ``steps`` <= 0).

Models (``config.model.name``): "dkvmn", "dqkt" (``study.models.kt_memory``), "dkt" (``study.models.dkt``),
"bkt" (``study.models.bkt``; ``config.model.skills`` "question": one HMM per question id, or "qmatrix": per
statics2011 Q-matrix skill, the first one of each question). The loss is the binary cross-entropy of every
answer of the batch (``weight_sum`` = answers), so the logged loss is per answer.

Evaluators: ``correctness`` (AUC, F1, accuracy, log-loss of every answer of the split) and ``loss``.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from study.data import kt_sequences, responses
from study.eval import evaluators as evaluators_lib
from study.models.bkt import BKT
from study.models.dkt import DKT
from study.models.kt_memory import KeyValueMemory
from study.train import gradient_step
from study.train.task import GradientTask

MODELS = ("dkvmn", "dqkt", "dkt", "bkt")


def skill_map(config, spec: kt_sequences.DatasetSpec, directory: str) -> tuple[tuple, int]:
    """``(skill_of [Q + 1] as a tuple, number of skills)`` for BKT."""
    if config.model.get("skills", "question") == "question":
        return tuple(range(spec.num_questions + 1)), spec.num_questions + 1
    path = os.path.join(directory, "Qmatrix.csv")
    if not os.path.exists(path):
        raise FileNotFoundError(f"config.model.skills='qmatrix' needs {path} (the statics2011 release's Q-matrix)")
    q_matrix = np.loadtxt(path, delimiter=",", ndmin=2)
    if q_matrix.shape[0] != spec.num_questions:
        raise ValueError(f"{path}: {q_matrix.shape[0]} rows, but the data set has {spec.num_questions} questions")
    return (0,) + tuple(int(s) for s in np.argmax(q_matrix, axis=1)), q_matrix.shape[1]


def build_model(config, spec, directory):
    model, q = config.model, spec.num_questions
    if model.name in ("dkvmn", "dqkt"):
        return KeyValueMemory(q, model.memory_size, model.key_dim, model.value_dim, model.summary_dim,
                              kind=model.name, init_std=model.init_std)
    if model.name == "dkt":
        return DKT(q, model.hidden_dim, model.embed_dim)
    if model.name == "bkt":
        skill_of, num_skills = skill_map(config, spec, directory)
        return BKT(skill_of, num_skills)
    raise ValueError(f"unknown config.model.name {model.name!r}; choose one of {', '.join(MODELS)}")


class KnowledgeTracingTask(GradientTask):
    family = "knowledge_tracing"

    def __init__(self, config, mesh=None):
        super().__init__(config, mesh)
        data = config.data
        if data.dataset not in kt_sequences.DATASETS:
            raise ValueError(f"unknown config.data.dataset {data.dataset!r}; choose one of "
                             f"{sorted(kt_sequences.DATASETS)}")
        self.spec = kt_sequences.DATASETS[data.dataset]
        self.directory = config.get("data_dir", "") or self.spec.default_dir
        self.windows = {}
        for split in ("train", "validation", "test"):
            path = kt_sequences.fold_path(self.spec, self.directory, split, data.fold)
            sequences = kt_sequences.read_sequences(path, self.spec.num_questions)
            self.windows[split] = kt_sequences.padded(sequences, data.window)
        self.model = build_model(config, self.spec, self.directory)
        self._logits = jax.jit(lambda params, question, answer: self.model.apply(params, question, answer))

    # ---- the loop's interface

    def init_params(self, rng):
        window = self.config.data.window
        return self.model.init(rng, jnp.ones((1, window), jnp.int32), jnp.zeros((1, window), jnp.int32))

    def loss(self, params, batch, rng):
        del rng
        logits = self.model.apply(params, batch["question"], batch["answer"])
        target = batch["answer"].astype(jnp.float32)
        mask = batch["mask"].astype(jnp.float32)
        nll = optax.sigmoid_binary_cross_entropy(logits, target)
        correct = ((logits > 0) == (target > 0.5)).astype(jnp.float32)
        return jnp.sum(nll * mask), jnp.sum(mask), {"accuracy": jnp.sum(correct * mask)}

    def batches_per_epoch(self) -> int:
        return -(-len(self.windows["train"]["question"]) // self.config.batch_size)

    def train_batches(self, start_batch):
        train = self.windows["train"]
        size = len(train["question"])
        if size == 0:
            raise ValueError("the training split holds no sequence")
        epochs = self.config.data.get("epochs", 0)
        end = epochs * self.batches_per_epoch() if epochs > 0 else None
        index = start_batch
        while end is None or index < end:
            rows = responses.stream_rows(size, index, self.config.batch_size, self.config.seed)
            yield {name: train[name][rows] for name in ("question", "answer", "mask")}
            index += 1

    def example_batch(self, batch_size):
        window = self.config.data.window
        return {"question": np.zeros((batch_size, window), np.int32),
                "answer": np.zeros((batch_size, window), np.int8), "mask": np.zeros((batch_size, window), bool)}

    def eval_batches(self, split, max_batches=None):
        if split not in self.windows:
            raise FileNotFoundError(f"the knowledge-tracing data has no {split} split")
        windows = self.windows[split]
        size = self.config.get("eval_batch_size", 64)
        count = -(-len(windows["question"]) // size)
        for b in range(count if max_batches is None else min(count, max_batches)):
            rows = np.arange(b * size, (b + 1) * size)
            real = rows < len(windows["question"])
            rows = np.where(real, rows, 0)
            # Padded rows keep one batch shape (one compilation) and are masked out.
            mask = windows["mask"][rows] & real[:, None]
            yield {"question": np.where(real[:, None], windows["question"][rows], 0),
                   "answer": windows["answer"][rows], "mask": mask,
                   "correct": windows["answer"][rows].astype(np.float32)}

    def device_batch(self, batch):
        return {name: batch[name] for name in ("question", "answer", "mask")}

    # ---- predictions and evaluators

    def probabilities(self, params, question, answer) -> np.ndarray:
        """``[B, T]`` predicted P(correct) at every step (padding steps included; mask them)."""
        return np.asarray(jax.nn.sigmoid(self._logits(params, jnp.asarray(question), jnp.asarray(answer))))

    def predictor(self, state):
        return lambda batch: self.probabilities(state.params, batch["question"], batch["answer"])

    def q_matrix(self, params) -> np.ndarray:
        """``[Q, C]`` correlation weights of every question (DKVMN / DQKT only)."""
        if not isinstance(self.model, KeyValueMemory):
            raise ValueError(f"the {self.config.model.name} model has no Q-matrix (only dkvmn and dqkt do)")
        return np.asarray(self.model.apply(params, method=KeyValueMemory.q_matrix))

    def evaluators(self):
        return {"correctness": evaluators_lib.CorrectnessEvaluator(self.predictor, self.eval_batches,
                                                                     seed=self.config.seed),
                "loss": gradient_step.LossEvaluator(self)}
