"""Bayesian Knowledge Tracing (Corbett & Anderson 1995): one two-state HMM per skill, fitted by gradient.

Per skill ``s``: ``P(L0)`` (known before practice), ``P(T)`` (learns at an opportunity), ``P(G)`` (guesses
right while not knowing), ``P(S)`` (slips while knowing); no forgetting. With ``p = P(known)`` before an
answer to skill ``s``: ``P(correct) = p (1 - S) + (1 - p) G``; after it, Bayes' rule on the answer and then
``p <- p' + (1 - p') T``. Guess and slip lie in [0.001, 0.5] (``0.001 + 0.499 sigmoid``): below 0.5 so
"known" stays the state that answers better (the usual identifiability constraint), above 0.001 so both
answer probabilities stay >= 0.001 and the Bayes-rule divisions stay bounded (without the floor, gradients
through a thousand steps overflow to NaN on Statics2011). The exact log-likelihood of the answers is the
training objective, so the one loop fits it like any other model.

Inputs ``question [B, T] int32`` (1..Q, 0 = padding) and ``answer [B, T]``; ``skill_of`` maps question id
``q`` to its skill index (``skill_of[q]``, entry 0 unused). Output logits ``[B, T]`` of a correct answer.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

EPS = 1e-6
FLOOR = 1e-3  # least guess and slip probability


def bkt_parameters(params) -> dict:
    """``{"prior", "learn", "guess", "slip"}`` probabilities ``[S]`` from the module's unconstrained params."""
    p = params["params"] if "params" in params else params
    return {"prior": jax.nn.sigmoid(p["prior_logit"]), "learn": jax.nn.sigmoid(p["learn_logit"]),
            "guess": FLOOR + (0.5 - FLOOR) * jax.nn.sigmoid(p["guess_logit"]),
            "slip": FLOOR + (0.5 - FLOOR) * jax.nn.sigmoid(p["slip_logit"])}


def bkt_filter(prior, learn, guess, slip, skill, answer, keep):
    """Forward filtering. ``prior, learn, guess, slip [S]``; ``skill [B, T]`` int; ``answer [B, T]``;
    ``keep [B, T]`` bool. Returns ``(P(correct) [B, T], P(known) after the last step [B, S])``."""

    def step(known, inputs):
        s, a, k = inputs
        rows = jnp.arange(known.shape[0])
        p = known[rows, s]
        correct = p * (1 - slip[s]) + (1 - p) * guess[s]
        posterior = jnp.where(a > 0, p * (1 - slip[s]) / jnp.maximum(correct, EPS),
                              p * slip[s] / jnp.maximum(1 - correct, EPS))
        updated = posterior + (1 - posterior) * learn[s]
        known = known.at[rows, s].set(jnp.where(k, updated, p))
        return known, correct

    start = jnp.broadcast_to(prior, (skill.shape[0], prior.shape[0]))
    final, correct = jax.lax.scan(step, start, (skill.T, answer.T.astype(jnp.float32), keep.T))
    return correct.T, final


class BKT(nn.Module):
    skill_of: tuple  # question id -> skill index, length Q + 1
    num_skills: int

    @nn.compact
    def __call__(self, question, answer):
        def init(value):
            return lambda key, shape: jnp.full(shape, value, jnp.float32)

        shape = (self.num_skills,)
        params = {"prior_logit": self.param("prior_logit", init(0.0), shape),
                  "learn_logit": self.param("learn_logit", init(-2.0), shape),
                  "guess_logit": self.param("guess_logit", init(0.0), shape),
                  "slip_logit": self.param("slip_logit", init(-1.0), shape)}
        probabilities = bkt_parameters(params)
        skill = jnp.asarray(np.asarray(self.skill_of, np.int32))[question.astype(jnp.int32)]
        correct, _ = bkt_filter(probabilities["prior"], probabilities["learn"], probabilities["guess"],
                                probabilities["slip"], skill, answer, question > 0)
        correct = jnp.clip(correct, EPS, 1 - EPS)
        return jnp.log(correct) - jnp.log1p(-correct)
