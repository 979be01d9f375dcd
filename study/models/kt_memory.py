"""Key-value memory knowledge tracing: DKVMN (Zhang et al. 2017) and DQKT (Wang, Sahebi & Brusilovsky 2022).

Both keep a static key matrix ``M_k [C, d_k]`` (one row per latent concept) and a per-student value matrix
``M_v [C, d_v]`` that starts from a learned ``M_v^0``. At step ``t`` (question ``q_t``, answer ``a_t``):

* correlation weights ``w_t = attend(A q_t . M_k^T)`` ``[C]``: softmax for DKVMN, sparsemax for DQKT (so
  ``w_q`` is a sparse row of a learned Q-matrix, :meth:`KeyValueMemory.q_matrix`);
* prediction from the memory BEFORE step ``t``'s write (so answer ``t`` never informs its own prediction):
  DKVMN reads ``r_t = w_t^T M_v`` and predicts ``sigmoid(W_2 tanh(W_1 [r_t, A q_t] + b_1) + b_2)``; DQKT's
  knowledge is ``k_t = M_v 1`` (the value matrix summed over its feature axis, ``[C]``) and it predicts
  ``sigmoid(k_t . w_t)`` (the paper's equations 3-4);
* erase-then-add write with ``v_t = B (q_t, a_t)``, ``e_t = sigmoid(E v_t + b_e)``, ``c_t = tanh(D v_t + b_d)``:
  ``M_v(i) <- M_v(i) * (1 - w_t(i) e_t) + w_t(i) c_t`` (:func:`erase_add`). Padding steps (question 0)
  leave the memory unchanged.

Inputs ``question [B, T] int32`` (1..Q, 0 = padding) and ``answer [B, T]`` in {0, 1}; output logits
``[B, T] float32`` of a correct answer at each step.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from study.models.sparsemax import sparsemax


def erase_add(memory: jnp.ndarray, weights: jnp.ndarray, erase: jnp.ndarray, add: jnp.ndarray,
              keep: jnp.ndarray | None = None) -> jnp.ndarray:
    """One write: ``memory [B, C, d]``, ``weights [B, C]``, ``erase``/``add`` ``[B, d]``; ``keep [B]`` bool
    (False = a padding step: memory unchanged). Returns the new ``[B, C, d]``."""
    written = memory * (1.0 - weights[:, :, None] * erase[:, None, :]) + weights[:, :, None] * add[:, None, :]
    if keep is None:
        return written
    return jnp.where(keep[:, None, None], written, memory)


def memory_reads(initial: jnp.ndarray, weights: jnp.ndarray, erase: jnp.ndarray, add: jnp.ndarray,
                 keep: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """What each step reads from the value memory as it was after steps ``< t`` (before step ``t``'s write).

    ``initial [C, d]``; ``weights [B, T, C]``; ``erase``, ``add`` ``[B, T, d]``; ``keep [B, T]`` bool. Returns
    ``(reads [B, T, d] = w_t^T M_t, knowledge [B, T, C] = M_t 1)``; the per-step memories are never
    materialised (a ``[B, T, C, d]`` array would dominate the cost)."""

    def step(memory, inputs):
        w, e, a, k = inputs
        outputs = (jnp.einsum("bc,bcd->bd", w, memory), jnp.sum(memory, axis=-1))
        return erase_add(memory, w, e, a, k), outputs

    start = jnp.broadcast_to(initial, (weights.shape[0],) + initial.shape)
    moved = [jnp.swapaxes(x, 0, 1) for x in (weights, erase, add, keep)]
    _, (reads, knowledge) = jax.lax.scan(step, start, moved)
    return jnp.swapaxes(reads, 0, 1), jnp.swapaxes(knowledge, 0, 1)


class KeyValueMemory(nn.Module):
    """DKVMN (``kind="dkvmn"``) or DQKT (``kind="dqkt"``); sizes as DKVMN names them."""

    num_questions: int
    memory_size: int = 20  # C, latent concepts
    key_dim: int = 50  # d_k = the question embedding width
    value_dim: int = 200  # d_v = the question-answer embedding width
    summary_dim: int = 50  # DKVMN's final fully connected layer
    kind: str = "dkvmn"
    init_std: float = 0.1

    def setup(self):
        normal = nn.initializers.normal(self.init_std)
        self.question_embedding = nn.Embed(self.num_questions + 1, self.key_dim, embedding_init=normal)
        self.answer_embedding = nn.Embed(2 * self.num_questions + 1, self.value_dim, embedding_init=normal)
        self.key_memory = self.param("key_memory", normal, (self.memory_size, self.key_dim))
        self.initial_value = self.param("initial_value", normal, (self.memory_size, self.value_dim))
        self.erase = nn.Dense(self.value_dim, kernel_init=normal)
        self.add = nn.Dense(self.value_dim, kernel_init=normal)
        if self.kind == "dkvmn":
            self.summary = nn.Dense(self.summary_dim, kernel_init=normal)
            self.output = nn.Dense(1, kernel_init=normal)
        elif self.kind != "dqkt":
            raise ValueError(f"unknown key-value memory kind {self.kind!r}; choose dkvmn or dqkt")

    def attend(self, keys: jnp.ndarray) -> jnp.ndarray:
        """``[..., C]`` correlation weights of question embeddings ``keys [..., d_k]``."""
        scores = keys @ self.key_memory.T
        return sparsemax(scores) if self.kind == "dqkt" else jax.nn.softmax(scores, axis=-1)

    def q_matrix(self) -> jnp.ndarray:
        """``[Q, C]``: the correlation weights of every question id 1..Q (row ``q - 1``)."""
        return self.attend(self.question_embedding(jnp.arange(1, self.num_questions + 1)))

    def memory_states(self, question, answer):
        """``(weights [B, T, C], keys [B, T, d_k], reads [B, T, d_v], knowledge [B, T, C])`` before each step."""
        question = question.astype(jnp.int32)
        keep = question > 0
        keys = self.question_embedding(question)
        weights = self.attend(keys)
        interaction = jnp.where(keep, question + self.num_questions * answer.astype(jnp.int32), 0)
        values = self.answer_embedding(interaction)
        reads, knowledge = memory_reads(self.initial_value, weights, jax.nn.sigmoid(self.erase(values)),
                                        jnp.tanh(self.add(values)), keep)
        return weights, keys, reads, knowledge

    def __call__(self, question, answer):
        weights, keys, reads, knowledge = self.memory_states(question, answer)
        if self.kind == "dqkt":
            return jnp.sum(knowledge * weights, axis=-1)
        hidden = jnp.tanh(self.summary(jnp.concatenate([reads, keys], axis=-1)))
        return self.output(hidden)[..., 0]
