"""The PPO baseline of GNN-RL (after Bassen et al. 2020): an actor-critic MLP over the student's feedback vector
(each document's last feedback, one-hot, flattened). Tied to one course: its input and output sizes are the
course's number of documents."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from study.sims.document_students import NUM_FEEDBACKS


class FeedbackActorCritic(nn.Module):
    """``__call__(feedback [D] int32) -> (logits [D], value [])``."""

    num_docs: int
    hidden: int = 64
    layers: int = 2

    @nn.compact
    def __call__(self, feedback):
        x = jax.nn.one_hot(feedback, NUM_FEEDBACKS).reshape(-1)
        actor, critic = x, x
        for i in range(self.layers):
            actor = jnp.tanh(nn.Dense(self.hidden, name=f"actor_{i}")(actor))
            critic = jnp.tanh(nn.Dense(self.hidden, name=f"critic_{i}")(critic))
        return nn.Dense(self.num_docs, name="logits")(actor), nn.Dense(1, name="value")(critic)[0]
