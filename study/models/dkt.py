"""Deep Knowledge Tracing (Piech et al. 2015): an LSTM over (question, answer) interactions.

The input at step ``t`` is the embedding of interaction ``q_t + Q a_t`` (a learned stand-in for DKT's one-hot
vector); the LSTM state after steps ``< t`` scores every question, and step ``t``'s logit is its score for
``q_t``. The state before step 0 is zero, so the first prediction is the output bias. Inputs ``question [B, T]
int32`` (1..Q, 0 = padding, right-padded only) and ``answer [B, T]`` in {0, 1}; output logits ``[B, T]``.
"""

import flax.linen as nn
import jax.numpy as jnp


class DKT(nn.Module):
    num_questions: int
    hidden_dim: int = 200
    embed_dim: int = 200

    @nn.compact
    def __call__(self, question, answer):
        question = question.astype(jnp.int32)
        interaction = jnp.where(question > 0, question + self.num_questions * answer.astype(jnp.int32), 0)
        inputs = nn.Embed(2 * self.num_questions + 1, self.embed_dim, name="interaction_embedding")(interaction)
        hidden = nn.RNN(nn.OptimizedLSTMCell(self.hidden_dim), name="lstm")(inputs)  # [B, T, H]: after step t
        # The state that predicts step t is the one after step t - 1 (zeros before step 0).
        before = jnp.concatenate([jnp.zeros_like(hidden[:, :1]), hidden[:, :-1]], axis=1)
        scores = nn.Dense(self.num_questions + 1, name="output")(before)  # column 0: padding, never read
        return jnp.take_along_axis(scores, question[..., None], axis=-1)[..., 0]
