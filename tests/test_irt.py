"""The IRT family's pieces against hand-worked numbers: the models' logits and ELBO, the block zero pattern of
the hierarchical model, the response-log readers and batches, the simulators, the convergence rule and the
parameter-retrieval metrics."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from study.data import responses
from study.eval import retrieval_metrics
from study.models import irt
from study.sims import irt_responses
from study.train.convergence import ConvergenceRule

STATICS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data", "kt",
                       "statics2011_dkvmn")


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_2pl_and_factorization_logits_by_hand():
    two = irt.Dims("2pl", 2, 2)
    values = {"theta": jnp.array([0.5, -1.0]), "alpha": jnp.array([2.0, 0.5]), "beta": jnp.array([0.0, 1.0])}
    # alpha_j (theta_i - beta_j): (s0, q1) = 0.5 * (0.5 - 1) = -0.25; (s1, q0) = 2 * (-1 - 0) = -2.
    np.testing.assert_allclose(irt.response_logits(values, two, jnp.array([0, 1]), jnp.array([1, 0])), [-0.25, -2.0])
    fact = irt.Dims("factorization", 2, 2, k=2)
    values = {"theta": jnp.array([[1.0, 2.0], [0.0, -1.0]]), "alpha": jnp.array([[0.5, 0.5], [1.0, -1.0]]),
              "beta": jnp.array([0.25, -0.5])}
    # theta_i . alpha_j - beta_j: (s0, q0) = 1.5 - 0.25 = 1.25; (s1, q1) = 1 + 0.5 = 1.5.
    np.testing.assert_allclose(irt.response_logits(values, fact, jnp.array([0, 1]), jnp.array([0, 1])), [1.25, 1.5])


def test_hierarchical_model_maps_each_covariate_group_to_its_own_block():
    dims = irt.Dims("hierarchical", 1, 2, k=1, covariate_groups=(("label", 2), ("skill", 3)), block_widths=(1, 2))
    mask = irt.block_mask(dims.covariate_groups, dims.block_widths)
    np.testing.assert_array_equal(mask, [[1, 0, 0], [1, 0, 0], [0, 1, 1], [0, 1, 1], [0, 1, 1]])
    assert irt.site_shapes(dims)["theta"] == (1, 4)  # k + 1 + 2
    values = {"theta": jnp.array([[1.0, 2.0, -1.0, 0.5]]), "alpha": jnp.array([[0.5], [-1.0]]),
              "beta": jnp.array([0.1, 0.2]), "h_alpha_label": jnp.array([[0.3], [0.7]]),
              "h_alpha_skill": jnp.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])}
    h = np.asarray(irt.h_alpha(values, dims))
    np.testing.assert_array_equal(h * (1 - mask), 0.0)
    # q0: label 0, skills 1 and 2; q1: label 1, skill 0.
    covariates = jnp.array([[1, 0, 0, 1, 1], [0, 1, 1, 0, 0]], jnp.float32)
    # q0 vector: [0.5, 0.3, (0,2)+(1,1) = 1, 3]; logit = 0.5 + 0.6 - 1 + 1.5 - 0.1 = 1.5
    # q1 vector: [-1, 0.7, 1, 0];                logit = -1 + 1.4 - 1 + 0 - 0.2 = -0.8
    got = irt.response_logits(values, dims, jnp.array([0, 0]), jnp.array([0, 1]), covariates)
    np.testing.assert_allclose(got, [1.5, -0.8], rtol=1e-6)


def test_negative_elbo_is_kl_plus_scaled_batch_nll():
    """With a guide of negligible spread the sample is its mean: -ELBO = closed-form KL + (N / B) * NLL."""
    dims = irt.Dims("2pl", 2, 2)
    log_scale = np.log(1e-4)
    params = {"theta": {"loc": jnp.array([0.5, -1.0]), "log_scale": jnp.full(2, log_scale)},
              "alpha": {"loc": jnp.array([2.0, 0.5]), "log_scale": jnp.full(2, log_scale)},
              "beta": {"loc": jnp.array([0.0, 1.0]), "log_scale": jnp.full(2, log_scale)}}
    batch = {"student": jnp.array([0, 1]), "question": jnp.array([1, 0]), "correct": jnp.array([1.0, 0.0])}
    got = irt.negative_elbo(params, batch, jax.random.key(0), dims, irt.standard_prior(dims), num_responses=10)
    locs = np.array([0.5, -1.0, 2.0, 0.5, 0.0, 1.0])
    kl = np.sum(-log_scale + (1e-8 + locs ** 2) / 2 - 0.5)  # KL(N(m, s) || N(0, 1)) per entry
    nll = -np.log(sigmoid(-0.25)) - np.log(1 - sigmoid(-2.0))
    np.testing.assert_allclose(float(got), kl + 10 / 2 * nll, rtol=1e-4)
    # A fitted posterior as the prior: KL(N(m, s) || N(m, s)) = 0 leaves the scaled likelihood alone.
    same = irt.negative_elbo(params, batch, jax.random.key(0), dims, irt.posterior_as_prior(params), 10)
    np.testing.assert_allclose(float(same), 10 / 2 * nll, rtol=1e-3)


def test_dkvmn_reader_and_statics2011_loader(tmp_path):
    path = tmp_path / "seq.csv"
    path.write_text("3\n5,2,5,\n1,0,1,\n1\n7\n0\n")
    (q0, a0), (q1, a1) = responses.read_dkvmn_sequences(str(path))
    np.testing.assert_array_equal(q0, [5, 2, 5])
    np.testing.assert_array_equal(a0, [1, 0, 1])
    assert q1.tolist() == [7] and a1.tolist() == [0]
    path.write_text("3\n5,2\n1,0\n")
    with pytest.raises(ValueError, match="line 1"):
        responses.read_dkvmn_sequences(str(path))
    assert responses.question_unit("tutor_05_07_q8_i8 UpdateRadioButton") == "tutor_05_07"
    if not os.path.isdir(STATICS):
        pytest.skip("statics2011 is not in ../shared/data")
    log = responses.load_statics2011(STATICS)
    assert (len(log), log.num_students, log.num_questions) == (189_297, 333, 1223)  # the release's data_log
    assert dict(log.covariate_groups)["skill"] == 98
    np.testing.assert_array_equal(log.covariates.sum(axis=1), 2.0)  # one label and one skill per question


def test_csv_reader(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("student_id,question_id,correct\nann,q9,1\nbob,q9,0\nann,q2,1\n")
    log, students, questions = responses.read_response_csv(str(path))
    assert students == ["ann", "bob"] and questions == ["q9", "q2"]
    assert log.student.tolist() == [0, 1, 0] and log.question.tolist() == [0, 0, 1]
    assert log.correct.tolist() == [1, 0, 1]
    path.write_text("student_id,question_id,correct\nann,q9,yes\n")
    with pytest.raises(ValueError, match="line 2"):
        responses.read_response_csv(str(path))


def test_split_and_training_batches():
    log = responses.ResponseLog(np.arange(10) % 3, np.arange(10) % 4, np.arange(10) % 2, 3, 4)
    train, validation, test = responses.random_split(log, (0.8, 0.1, 0.1), seed=1)
    assert (len(train), len(validation), len(test)) == (8, 1, 1)
    pairs = lambda part: set(zip(part.student.tolist(), part.question.tolist()))  # noqa: E731
    assert pairs(train) | pairs(validation) | pairs(test) == pairs(log)
    # Batches of 4 over 10 responses: batches 0-1 and half of 2 are epoch 0, each response exactly once.
    rows = [responses.batch_at(log, b, 4, seed=3) for b in range(5)]
    first_epoch = np.concatenate([r["student"] * 10 + r["question"] for r in rows])[:10]
    np.testing.assert_array_equal(np.sort(first_epoch), np.sort(log.student * 10 + log.question))
    again = responses.batch_at(log, 3, 4, seed=3)  # any position restarts to the same batch
    np.testing.assert_array_equal(again["student"], rows[3]["student"])
    padded = list(responses.eval_batches_of(log, 4))
    assert len(padded) == 3 and padded[-1]["mask"].tolist() == [True, True, False, False]


def test_simulations_have_the_stated_shapes():
    dense = irt_responses.dense(50, 30, seed=0)
    assert len(dense.log) == 1500 and len(set(zip(dense.log.student, dense.log.question))) == 1500
    groups = irt_responses.two_groups(students_per_group=5, shared_questions=2, group_only_questions=3, seed=0)
    group = groups.truth["group"][groups.log.student]
    kind = groups.truth["question_group"][groups.log.question]
    assert len(groups.log) == 10 * 5
    assert np.all((kind == 0) | (kind == group + 1))  # a student sees shared questions and their group's own
    sparse = irt_responses.sparse_log(2000, 1000, density=0.01, seed=0)
    assert abs(len(sparse.log) / (2000 * 1000) - 0.01) < 0.002
    assert np.bincount(sparse.log.student, minlength=2000).min() >= 1
    # The answers follow the truth: P(correct) rises with theta - beta.
    truth = sparse.truth
    margin = truth["theta"][sparse.log.student] - truth["beta"][sparse.log.question]
    assert sparse.log.correct[margin > 1].mean() > 0.75 > 0.25 > sparse.log.correct[margin < -1].mean()


def test_convergence_rule_by_hand():
    rule = ConvergenceRule({"fraction": 0.01, "window": 2})
    # First change |9 - 10| = 1; converged when |L_n - L_{n-2}| / 2 < 0.01.
    for step, loss in zip(range(1, 6), [10.0, 9.0, 8.5, 8.49, 8.49]):
        assert not rule.observe(step, loss) or step == 5
    assert rule.converged_at == 5  # |8.49 - 8.5| / 2 = 0.005 < 0.01 at the fifth window
    restarted = ConvergenceRule({"fraction": 0.01, "window": 2})
    restarted.load(rule.state())
    assert restarted.converged_at == 5
    assert not ConvergenceRule({"fraction": 0.0}).observe(1, 1.0)  # off


def test_retrieval_metrics_by_hand():
    result = retrieval_metrics.retrieval([1.0, 2.0, 4.0], [1.0, 3.0, 2.0], sd=[0.1, 0.2, 0.3])
    # Ranks (1, 2, 3) vs (1, 3, 2): one discordant pair of three, tau = (2 - 1) / 3; rho = 1 - 6 * 2 / 24 = 0.5.
    assert result["kendall"] == pytest.approx(1 / 3)
    assert result["spearman"] == pytest.approx(0.5)
    x, y = np.array([1.0, 2.0, 4.0]), np.array([1.0, 3.0, 2.0])
    dx, dy = x - x.mean(), y - y.mean()
    assert result["pearson"] == pytest.approx(dx @ dy / np.sqrt((dx @ dx) * (dy @ dy)))
    assert result["mean_posterior_sd"] == pytest.approx(0.2)
