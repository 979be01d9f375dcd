"""Bayesian item response models in NumPyro: 2PL, latent factorization, hierarchical factorization.

For student ``i`` and question ``j`` (Shi & Athey 2021):

* ``2pl``:            ``P(correct) = sigmoid(alpha_j * (theta_i - beta_j))``, scalars;
* ``factorization``:  ``P(correct) = sigmoid(theta_i . alpha_j - beta_j)``, ``theta_i, alpha_j`` of length k;
* ``hierarchical``:   as factorization with ``alpha_j`` replaced by ``concat(alpha_j, H_alpha X_j)``: ``X_j [C]``
  the question's covariates (one-hot labels, multi-hot skills), ``H_alpha [C, M]`` zero outside the blocks
  that map each covariate group to its own latent block of width ``m_g`` (:func:`block_mask`); ``theta_i``
  has length ``k + M``. Each block is its own latent site ``h_alpha_<group> [C_g, m_g]``.

Every latent site has an independent Normal prior (mean 0, sd 1 by default, or a fitted posterior: the
``prior`` argument) and the mean-field Normal guide :func:`guide` with a learnable mean and scale per entry.
The variational parameters are a plain pytree ``{site: {"loc": [...], "log_scale": [...]}}`` so the training
loop's optimizer, frozen paths, ``init_from`` and checkpoints apply to them; :func:`negative_elbo` is the
loss: ``TraceMeanField_ELBO`` (closed-form KL of the Normal sites) with the likelihood of a mini-batch of
responses scaled to ``num_responses`` (``numpyro.handlers.scale`` by ``num_responses / B``).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import TraceMeanField_ELBO

KINDS = ("2pl", "factorization", "hierarchical")
INIT_SCALE = 0.1  # the guide's initial standard deviation (as numpyro's AutoNormal)


@dataclasses.dataclass(frozen=True)
class Dims:
    """The shape of a model: ``kind`` (``KINDS``), the universe, the latent length ``k`` (2PL: 1) and, for
    ``hierarchical``, ``covariate_groups`` ``((name, width), ...)`` in covariate column order with the latent
    width ``block_widths[g]`` of each group's block."""

    kind: str
    num_students: int
    num_questions: int
    k: int = 1
    covariate_groups: tuple = ()
    block_widths: tuple = ()

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown IRT model {self.kind!r}; choose one of {KINDS}")
        if self.kind == "hierarchical" and len(self.block_widths) != len(self.covariate_groups):
            raise ValueError(f"block_widths {self.block_widths} must give one latent width per covariate group "
                             f"{[name for name, _ in self.covariate_groups]}")

    @property
    def theta_width(self) -> int:
        return self.k + (sum(self.block_widths) if self.kind == "hierarchical" else 0)


def site_shapes(dims: Dims) -> dict:
    """``{latent site: shape}`` of the model."""
    if dims.kind == "2pl":
        return {"theta": (dims.num_students,), "alpha": (dims.num_questions,), "beta": (dims.num_questions,)}
    shapes = {"theta": (dims.num_students, dims.theta_width), "alpha": (dims.num_questions, dims.k),
              "beta": (dims.num_questions,)}
    if dims.kind == "hierarchical":
        for (name, width), block in zip(dims.covariate_groups, dims.block_widths):
            shapes[f"h_alpha_{name}"] = (width, block)
    return shapes


def block_mask(covariate_groups, block_widths) -> np.ndarray:
    """``[C, M]`` 0/1: the entries of ``H_alpha`` that may be non-zero (covariate group ``g``'s rows times
    latent block ``g``'s columns)."""
    rows = np.repeat(np.arange(len(covariate_groups)), [width for _, width in covariate_groups])
    columns = np.repeat(np.arange(len(block_widths)), block_widths)
    return (rows[:, None] == columns[None, :]).astype(np.float32)


def h_alpha(values: dict, dims: Dims) -> jnp.ndarray:
    """The full ``H_alpha [C, M]`` assembled from the block sites (zero outside the blocks)."""
    blocks = [values[f"h_alpha_{name}"] for name, _ in dims.covariate_groups]
    return jax.scipy.linalg.block_diag(*blocks)


def question_vectors(values: dict, dims: Dims, question, covariates=None) -> jnp.ndarray:
    """``[B, D]`` latent vectors of the questions ``question [B]`` (hierarchical: with ``H_alpha X_j``)."""
    alpha = values["alpha"][question]
    if dims.kind != "hierarchical":
        return alpha
    return jnp.concatenate([alpha, jnp.asarray(covariates)[question] @ h_alpha(values, dims)], axis=-1)


def response_logits(values: dict, dims: Dims, student, question, covariates=None) -> jnp.ndarray:
    """``[B]`` logits of a correct answer of ``student [B]`` to ``question [B]`` under latent ``values``."""
    if dims.kind == "2pl":
        return values["alpha"][question] * (values["theta"][student] - values["beta"][question])
    vectors = question_vectors(values, dims, question, covariates)
    return jnp.sum(values["theta"][student] * vectors, axis=-1) - values["beta"][question]


def standard_prior(dims: Dims) -> dict:
    """``{site: {"loc": 0, "scale": 1}}`` of the model's shapes."""
    return {name: {"loc": jnp.zeros(shape), "scale": jnp.ones(shape)} for name, shape in site_shapes(dims).items()}


def posterior_as_prior(params: dict) -> dict:
    """The prior of the next fit from a fitted guide: ``{site: {"loc": loc, "scale": exp(log_scale)}}``."""
    return {name: {"loc": jnp.asarray(p["loc"]), "scale": jnp.exp(jnp.asarray(p["log_scale"]))}
            for name, p in params.items()}


def model(batch: dict, dims: Dims, prior: dict, num_responses: int, covariates=None) -> None:
    """The generative model of one mini-batch ``{"student", "question", "correct"}`` (``[B]`` each, optional
    ``mask [B]``) drawn from ``num_responses`` responses."""
    values = {name: numpyro.sample(name, dist.Normal(prior[name]["loc"], prior[name]["scale"]).to_event(len(shape)))
              for name, shape in site_shapes(dims).items()}
    batch_size = batch["correct"].shape[0]
    # The batch's likelihood counts num_responses / B times: an unbiased estimate of the whole log's (a
    # subsampled plate, written as a scale so that batches larger than a small log still work).
    with numpyro.plate("responses", batch_size), numpyro.handlers.scale(scale=num_responses / batch_size):
        logits = response_logits(values, dims, batch["student"], batch["question"], covariates)
        with numpyro.handlers.mask(mask=batch.get("mask", True)):
            numpyro.sample("correct", dist.Bernoulli(logits=logits), obs=batch["correct"])


def guide(batch: dict, dims: Dims, prior: dict, num_responses: int, covariates=None) -> None:
    """Mean-field Normal guide; its parameters ``<site>_loc``, ``<site>_scale`` come from :func:`param_map`."""
    del batch, prior, num_responses, covariates
    for name, shape in site_shapes(dims).items():
        loc = numpyro.param(f"{name}_loc", jnp.zeros(shape))
        scale = numpyro.param(f"{name}_scale", jnp.full(shape, INIT_SCALE))
        numpyro.sample(name, dist.Normal(loc, scale).to_event(len(shape)))


def init_params(rng, dims: Dims) -> dict:
    """Initial guide parameters: means ~ N(0, 0.1) (factorizations need asymmetric starts), 2PL ``alpha``
    means 1 (the sign convention: larger ``theta`` is more able), scales ``INIT_SCALE``."""
    params = {}
    for key, (name, shape) in zip(jax.random.split(rng, len(site_shapes(dims))), site_shapes(dims).items()):
        loc = 0.1 * jax.random.normal(key, shape)
        if dims.kind == "2pl" and name == "alpha":
            loc = loc + 1.0
        params[name] = {"loc": loc, "log_scale": jnp.full(shape, np.log(INIT_SCALE), jnp.float32)}
    return params


def param_map(params: dict) -> dict:
    """The guide's named parameters from the pytree (scales are ``exp(log_scale)``)."""
    named = {}
    for name, p in params.items():
        named[f"{name}_loc"] = p["loc"]
        named[f"{name}_scale"] = jnp.exp(p["log_scale"])
    return named


_ELBO = TraceMeanField_ELBO()


def negative_elbo(params: dict, batch: dict, rng, dims: Dims, prior: dict, num_responses: int,
                  covariates=None) -> jnp.ndarray:
    """One-sample estimate of ``-ELBO`` of all ``num_responses`` responses from the mini-batch ``batch``:
    closed-form KL of every site plus ``num_responses / B`` times the batch's expected log-likelihood."""
    return _ELBO.loss(rng, param_map(params), model, guide, batch, dims, prior, num_responses, covariates)


def posterior_means(params: dict) -> dict:
    """``{site: mean}`` of the guide."""
    return {name: p["loc"] for name, p in params.items()}


def posterior_sds(params: dict) -> dict:
    """``{site: standard deviation}`` of the guide."""
    return {name: jnp.exp(p["log_scale"]) for name, p in params.items()}


def mean_probabilities(params: dict, dims: Dims, student, question, covariates=None) -> jnp.ndarray:
    """``[B]`` P(correct) at the posterior means (the plug-in prediction)."""
    return jax.nn.sigmoid(response_logits(posterior_means(params), dims, student, question, covariates))


def student_probabilities(params: dict, dims: Dims, student: int, covariates=None) -> jnp.ndarray:
    """``[Q]`` P(correct) of one student on every question at the posterior means."""
    question = jnp.arange(dims.num_questions)
    return mean_probabilities(params, dims, jnp.full_like(question, student), question, covariates)
