"""What a model family hands the training loop: a task.

The loop (``study.train.loop``) owns everything families share: the device mesh, ``jax.jit`` with named
shardings and donation, orbax checkpoints with exact resume, ``init_from``, frozen parameters, metrics,
the progress bar and periodic evaluation. A task owns what differs, in one of two shapes:

* :class:`GradientTask`: ``init_params(rng) -> params`` and ``loss(params, batch, rng) -> (loss_sum,
  weight_sum, aux_sums)``. The loop differentiates ``loss_sum``, divides by ``weight_sum`` over the whole
  (possibly accumulated) batch and applies the optimizer of ``config.optimizer`` (``study.train.gradient_step``).
* :class:`UpdateTask`: ``init_state(rng) -> state`` and a pure ``update(state, batch, rng) -> (state,
  metrics)`` (a table updated by a rule, a fitted index, ...). ``jit_update = False`` runs the update on the
  host with NumPy state whose array shapes may change from step to step.

Both give their data as :meth:`Task.train_batches`, an iterator that restarts at any number of consumed
batches (the checkpointed data position), and their evaluators as a name -> :class:`Evaluator` mapping.

Usage (a toy family)::

    class Mean(GradientTask):
        def init_params(self, rng): return {"mean": jnp.zeros(())}
        def loss(self, params, batch, rng): return jnp.sum((batch["x"] - params["mean"]) ** 2), 4.0, {}
        def train_batches(self, start_batch): ...
        def example_batch(self, batch_size): return {"x": np.zeros((batch_size,), np.float32)}

    loop.train(Mean(config), config, workdir)
"""

import abc
import dataclasses
from typing import Any, Iterator, Mapping

import jax.numpy as jnp


@dataclasses.dataclass
class Report:
    """The outcome of one evaluator on one split.

    Attributes:
      evaluator: name of the evaluator that wrote it.
      scalars: ``{name: float}`` logged to ``metrics.jsonl`` / TensorBoard during training.
      metrics: JSON-able dict written as ``metrics.json``.
      markdown: ``summary.md`` (may be empty).
      tables: ``{name: pandas.DataFrame}`` written as ``<name>.csv``.
      figures: ``{name: function(path)}`` each writing ``<name>.png``.
    """

    evaluator: str
    scalars: dict
    metrics: dict
    markdown: str = ""
    tables: dict = dataclasses.field(default_factory=dict)
    figures: dict = dataclasses.field(default_factory=dict)


class Evaluator(abc.ABC):
    """Judges a state on one split; the same object runs during training and in ``study eval``.

    ``evaluate(state, split, max_batches=None, num_bootstrap=0)``: ``state`` is the loop's train state
    (``state.params`` holds the model or table); ``max_batches`` bounds the data read (periodic evaluation),
    ``None`` reads the whole split; ``num_bootstrap`` resamples for intervals (0 = none).
    """

    name: str = ""

    @abc.abstractmethod
    def evaluate(self, state: Any, split: str, *, max_batches: int | None = None, num_bootstrap: int = 0) -> Report:
        """The report of ``state`` on ``split``."""


class Task(abc.ABC):
    """A model family as the loop sees it. ``config`` is the run's full config."""

    #: the family's name in reports (``config.name`` overrides it per run).
    family: str = ""

    def __init__(self, config, mesh=None):
        self.config = config
        self.mesh = mesh

    @property
    def name(self) -> str:
        return self.config.get("name", "") or self.family

    @abc.abstractmethod
    def train_batches(self, start_batch: int) -> Iterator[dict]:
        """This process's training batches (NumPy dicts), starting after ``start_batch`` consumed ones.

        The position is the number of batches consumed: the iterator restarted at ``k`` must yield what
        the uninterrupted one yields after ``k`` batches (exact resume). A finite iterator ends training.
        """

    @abc.abstractmethod
    def example_batch(self, batch_size: int) -> dict:
        """A batch of ``batch_size`` rows of the device arrays of a training batch (shapes and dtypes)."""

    def eval_batches(self, split: str, max_batches: int | None = None) -> Iterator[dict]:
        """This process's share of an evaluation split, every row once (``FileNotFoundError`` when the
        family or dataset has no such split)."""
        raise FileNotFoundError(f"the {self.family} family has no {split} batches")

    def device_batch(self, batch: dict) -> dict:
        """The arrays of a host batch that go to the devices (default: all of them)."""
        return batch

    def evaluators(self) -> Mapping[str, Evaluator]:
        """``{name: Evaluator}`` built from the config (``config.evals``)."""
        return {}

    def export(self, state: Any, out_dir: str) -> str:
        """Writes what serves (or what the next fit reads) from ``state`` to ``out_dir``."""
        raise ValueError(f"the {self.family} family exports nothing (its task defines no export); "
                         "evaluate the run with study eval instead")


class GradientTask(Task):
    """A family trained by gradient descent on a loss (``study.train.gradient_step``)."""

    @abc.abstractmethod
    def init_params(self, rng) -> Any:
        """Initial parameters (leaves may be ``flax.linen.Partitioned`` with logical axis names)."""

    @abc.abstractmethod
    def loss(self, params: Any, batch: dict, rng) -> tuple[jnp.ndarray, jnp.ndarray, dict]:
        """``(loss_sum, weight_sum, aux_sums)`` on one (micro-)batch; pure. ``aux_sums`` are summed like the
        loss and logged divided by ``weight_sum`` (e.g. ``{"correct": ...}`` -> accuracy)."""

    def eval_loss(self, params: Any, batch: dict) -> tuple[jnp.ndarray, jnp.ndarray, dict]:
        """The loss at evaluation (no dropout, a fixed key): default ``loss`` with key 0."""
        import jax

        return self.loss(params, batch, jax.random.key(0))


class UpdateTask(Task):
    """A family whose state changes by a rule, not by gradients."""

    #: False: ``update`` runs on the host with NumPy state (shapes may change between steps).
    jit_update: bool = True

    @abc.abstractmethod
    def init_state(self, rng) -> Any:
        """Initial state pytree."""

    @abc.abstractmethod
    def update(self, state: Any, batch: dict, rng) -> tuple[Any, dict]:
        """``(new state, {metric: scalar})``; pure when ``jit_update``."""

