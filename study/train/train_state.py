"""The train state: everything a checkpoint must hold to continue a run exactly."""

from typing import Any

import flax.struct
import jax.numpy as jnp


@flax.struct.dataclass
class TrainState:
    """A pytree of arrays (no callables, so orbax saves it as is).

    Attributes:
      step: ``[] int32``, optimizer updates applied so far (= batches consumed).
      params: the model's ``params`` collection (float32).
      opt_state: the optax optimizer state.
      rng: ``[2] uint32``, key data of the run's base PRNG key (``jax.random.key_data``); the dropout
        key of update ``s`` is ``fold_in(base_key, s)``, so resuming needs only this and ``step``.
    """

    step: jnp.ndarray
    params: Any
    opt_state: Any
    rng: jnp.ndarray
