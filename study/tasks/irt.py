"""Bayesian IRT (2PL, latent factorization, hierarchical factorization; ``study.models.irt``) as a task.

``config.task = "irt"``. Params: the mean-field guide's ``{site: {"loc", "log_scale"}}`` (sites ``theta``,
``alpha``, ``beta``, ``h_alpha_<group>``); the loss is the negative ELBO of a mini-batch of training responses
with the likelihood scaled to the whole training log (``weight_sum`` = number of training responses, so the
logged loss is per response). The loop's optimizer, schedule, ``frozen`` (e.g. ``["alpha/.*", "beta/.*"]``: all
question parameters fixed), ``init_from``, ``convergence`` and checkpoints apply unchanged.

Batch update (posterior as prior): ``config.model.prior_from = <fitted run>`` makes the prior of every site
the fitted guide's Normal (its mean and standard deviation); with ``init_from.workdir`` the same run, the guide
also starts there, and the new run reads only the new responses (its ``config.data``).

Data (``config.data.source``):

* ``statics2011``: ``config.data_dir`` = the DKVMN statics2011 folder (``study.data.responses``);
* ``csv``: ``config.data_dir`` = a CSV ``student_id, question_id, correct``;
* ``npz``: ``config.data_dir`` = a folder of ``train.npz`` [+ ``validation.npz``, ``test.npz``] response logs
  (``study.data.responses.save_npz``), used as the splits they are;
* ``dense``, ``two_groups``, ``sparse``: simulations (``study.sims.irt_responses``) with ``config.data.sim``.

Whole logs are split at random into ``config.data.split`` fractions of train / validation / test responses
(seed ``config.data.split_seed``). Evaluators: ``correctness`` (AUC, F1, accuracy, log-loss overall and by
``config.data.group_by``: "skill", "question" or a covariate group such as "label"), ``loss`` (validation
log-loss at the posterior means) and, on simulations, ``retrieval`` (correlations of posterior means with the
truth). Export: the posterior (``posterior.npz``: ``<site>/loc``, ``<site>/scale``) and ``model.json``.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from study.data import responses
from study.eval import evaluators as evaluators_lib
from study.models import irt
from study.sims import irt_responses
from study.train import gradient_step, loop
from study.train.task import GradientTask

SPLITS = ("train", "validation", "test")
SIMULATIONS = ("dense", "two_groups", "sparse")


def load_logs(config) -> tuple[dict, dict | None]:
    """``({split: ResponseLog}, truth or None)`` of ``config.data``."""
    data, source = config.data, config.data.source
    truth = None
    if source == "npz":
        logs = {split: responses.load_npz(os.path.join(config.data_dir, f"{split}.npz")) for split in SPLITS
                if os.path.exists(os.path.join(config.data_dir, f"{split}.npz"))}
        if "train" not in logs:
            raise FileNotFoundError(f"config.data_dir={config.data_dir} holds no train.npz")
        return logs, None
    if source == "statics2011":
        whole = responses.load_statics2011(config.data_dir)
    elif source == "csv":
        whole = responses.read_response_csv(config.data_dir)[0]
    elif source in SIMULATIONS:
        sim = data.sim
        if source == "dense":
            simulation = irt_responses.dense(sim.num_students, sim.num_questions, sim.seed)
        elif source == "two_groups":
            simulation = irt_responses.two_groups(sim.students_per_group, sim.shared_questions,
                                                  sim.group_only_questions, sim.seed)
        else:
            simulation = irt_responses.sparse_log(sim.num_students, sim.num_questions, sim.density, sim.kind, sim.k,
                                                  sim.seed)
        whole, truth = simulation.log, simulation.truth
    else:
        raise ValueError(f"unknown config.data.source {source!r}; choose one of npz, statics2011, csv, "
                         f"{', '.join(SIMULATIONS)}")
    parts = responses.random_split(whole, tuple(data.split), data.split_seed)
    return {split: part for split, part in zip(SPLITS, parts) if len(part) or split == "train"}, truth


def model_dims(config, log: responses.ResponseLog) -> irt.Dims:
    model = config.model
    if model.name != "hierarchical":
        return irt.Dims(model.name, log.num_students, log.num_questions, 1 if model.name == "2pl" else model.k)
    blocks = dict(model.blocks)
    groups = tuple((name, width) for name, width in log.covariate_groups if name in blocks)
    missing = sorted(set(blocks) - {name for name, _ in log.covariate_groups})
    if missing or not groups:
        raise ValueError(f"config.model.blocks names covariate groups {missing or sorted(blocks)} that the data "
                         f"does not have; its groups are {[name for name, _ in log.covariate_groups]}")
    return irt.Dims("hierarchical", log.num_students, log.num_questions, model.k, groups,
                    tuple(int(blocks[name]) for name, _ in groups))


def chosen_covariates(log: responses.ResponseLog, dims: irt.Dims) -> np.ndarray | None:
    """The covariate columns of the groups the model uses, in ``dims.covariate_groups`` order."""
    if dims.kind != "hierarchical":
        return None
    starts = np.cumsum([0] + [width for _, width in log.covariate_groups])
    columns = {name: np.arange(start, start + width) for (name, width), start in zip(log.covariate_groups, starts)}
    return log.covariates[:, np.concatenate([columns[name] for name, _ in dims.covariate_groups])]


class IrtTask(GradientTask):
    family = "irt"

    def __init__(self, config, mesh=None):
        super().__init__(config, mesh)
        self.logs, self.truth = load_logs(config)
        train = self.logs["train"]
        self.dims = model_dims(config, train)
        covariates = chosen_covariates(train, self.dims)
        self.covariates = None if covariates is None else jnp.asarray(covariates)
        self.num_train = len(train)
        self.prior = irt.standard_prior(self.dims)
        if config.model.get("prior_from", ""):
            fitted = loop.checkpoint_params(config.model.prior_from)
            self.prior = irt.posterior_as_prior(fitted)
            shapes = irt.site_shapes(self.dims)
            found = {name: tuple(p["loc"].shape) for name, p in self.prior.items()}
            if found != shapes:
                raise ValueError(f"config.model.prior_from={config.model.prior_from}: its posterior has sites "
                                 f"{found}, this model needs {shapes} (fit the prior with the same model and data "
                                 "universe)")
        self._probabilities = jax.jit(lambda params, student, question: irt.mean_probabilities(
            params, self.dims, student, question, self.covariates))

    # ---- the loop's interface

    def init_params(self, rng):
        return irt.init_params(rng, self.dims)

    def loss(self, params, batch, rng):
        value = irt.negative_elbo(params, batch, rng, self.dims, self.prior, self.num_train, self.covariates)
        return value, jnp.asarray(float(self.num_train)), {}

    def eval_loss(self, params, batch):
        p = irt.mean_probabilities(params, self.dims, batch["student"], batch["question"], self.covariates)
        p = jnp.clip(p, 1e-7, 1 - 1e-7)
        nll = -(batch["correct"] * jnp.log(p) + (1 - batch["correct"]) * jnp.log1p(-p))
        mask = batch["mask"].astype(jnp.float32)
        correct = ((p >= 0.5) == (batch["correct"] > 0.5)).astype(jnp.float32)
        return jnp.sum(nll * mask), jnp.sum(mask), {"accuracy": jnp.sum(correct * mask)}

    def train_batches(self, start_batch):
        index = start_batch
        while True:
            yield responses.batch_at(self.logs["train"], index, self.config.batch_size, self.config.seed)
            index += 1

    def example_batch(self, batch_size):
        return {"student": np.zeros(batch_size, np.int32), "question": np.zeros(batch_size, np.int32),
                "correct": np.zeros(batch_size, np.float32)}

    def eval_batches(self, split, max_batches=None):
        if split not in self.logs:
            raise FileNotFoundError(f"the IRT data ({self.config.data.source}) has no {split} split")
        log = self.logs[split]
        group_of = self._question_groups(log)
        for batch in responses.eval_batches_of(log, self.config.get("eval_batch_size", 8192), max_batches):
            if group_of is not None:
                batch["group"] = group_of[batch["question"]]
            yield batch

    def _question_groups(self, log) -> np.ndarray | None:
        """``[Q]`` the report group of each question by ``config.data.group_by``: "skill" (the main skill),
        "question", or a covariate group's name (e.g. "label": the first column set in that group)."""
        by = self.config.data.get("group_by", "skill")
        if by == "skill" and log.skill is not None:
            return log.skill
        if by == "question":
            return np.arange(log.num_questions)
        starts = np.cumsum([0] + [width for _, width in log.covariate_groups])
        for (name, width), start in zip(log.covariate_groups, starts):
            if name == by:
                return np.argmax(log.covariates[:, start:start + width], axis=1)
        return None

    def device_batch(self, batch):
        return {name: batch[name] for name in ("student", "question", "correct", "mask") if name in batch}

    # ---- predictions, evaluators, export

    def probabilities(self, params, student, question) -> np.ndarray:
        return np.asarray(self._probabilities(params, jnp.asarray(student), jnp.asarray(question)))

    def predictor(self, state):
        return lambda batch: self.probabilities(state.params, batch["student"], batch["question"])

    def estimates(self, state) -> dict:
        """``{name: (posterior mean, posterior sd)}`` of the parameters the truth names (the latent vectors of
        factorizations are only identified up to rotation, so only ``beta`` is compared for them)."""
        params = jax.device_get(state.params)
        names = ("theta", "alpha", "beta") if self.dims.kind == "2pl" else ("beta",)
        return {name: (np.asarray(params[name]["loc"]), np.exp(np.asarray(params[name]["log_scale"])))
                for name in names}

    def evaluators(self):
        found = {"correctness": evaluators_lib.CorrectnessEvaluator(self.predictor, self.eval_batches,
                                                                     seed=self.config.seed),
                 "loss": gradient_step.LossEvaluator(self)}
        if self.truth is not None:
            truth = {name: self.truth[name] for name in ("theta", "alpha", "beta")
                     if np.ndim(self.truth[name]) == 1}
            found["retrieval"] = evaluators_lib.RetrievalEvaluator(self.estimates, truth)
        return found

    def attempted(self, student: int) -> np.ndarray:
        """``[Q] bool``: the questions ``student`` answered in any split of the data."""
        seen = np.zeros(self.dims.num_questions, bool)
        for log in self.logs.values():
            seen[log.question[log.student == student]] = True
        return seen

    def export(self, state, out_dir, **unused):
        del unused
        os.makedirs(out_dir, exist_ok=True)
        params = jax.device_get(state.params)
        arrays = {}
        for name, p in params.items():
            arrays[f"{name}/loc"] = np.asarray(p["loc"])
            arrays[f"{name}/scale"] = np.exp(np.asarray(p["log_scale"]))
        if self.covariates is not None:
            arrays["covariates"] = np.asarray(self.covariates)
        np.savez(os.path.join(out_dir, "posterior.npz"), **arrays)
        with open(os.path.join(out_dir, "model.json"), "w", encoding="utf-8") as handle:
            json.dump({"kind": self.dims.kind, "num_students": self.dims.num_students,
                       "num_questions": self.dims.num_questions, "k": self.dims.k,
                       "covariate_groups": self.dims.covariate_groups, "block_widths": self.dims.block_widths},
                      handle, indent=1)
        return out_dir
