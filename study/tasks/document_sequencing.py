"""GNN-RL (Vassoyan et al. 2024) on the one loop: document-sequencing policies trained on simulated students.

``config.task = "gnn_rl"``. One loop update is one *collect then K updates*: the update runs
``graphs_per_collect`` courses x ``students_per_collect`` new students for a whole episode each with the current
policy (``study.sims.document_students.rollout``, inside the jitted update), then ``updates_per_collect``
optimizer steps of ``config.optimizer`` (the loop's optimizer and schedule,
``study.train.schedules.make_optimizer``), each on a minibatch of ``minibatch_size`` collected decisions
(consecutive slices of shuffled passes over the collect). The task is an :class:`~study.train.task.UpdateTask`
because the data of an update depends on the parameters; its state is ``{"policy": parameters, "opt_state":
...}``, so the loop's checkpoints, exact resume, ``init_from`` (``init_from.params = ["policy/.*"]``:
fine-tuning from a pre-trained run) and frozen parameters apply as to any family.

``model.algorithm``: "imitation" (maximise the probability of the oracle's set of documents at the right level,
on states the current policy visits), "reinforce" (discounted returns, standardised over the collect when
``normalize_returns``; entropy bonus) or "ppo" (clipped surrogate + value loss, GAE). ``model.policy``: "graph"
(the graph transformer, ``study.models.graph_transformer``), "mlp" (``study.models.feedback_mlp``, one course
only) or "linear_ts" (``study.models.linear_thompson``: no gradient; an update runs ``students_per_collect``
episodes one after the other, updating the posterior after every recommendation; ``algorithm`` is not read).

Evaluator ``policy_return``: the episodic return of test students (validation seeds 0..n-1, test seeds 10^6 +
0..n-1), each on course ``seed mod number of courses``, sampling from the policy.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np

from study.eval import evaluators as evaluators_lib
from study.models import feedback_mlp, graph_transformer, linear_thompson as lts, policy_gradient as pg
from study.sims import course_corpora as cc
from study.sims import document_students as ds
from study.train import schedules
from study.train.task import UpdateTask

ALGORITHMS = ("imitation", "reinforce", "ppo")
POLICIES = ("graph", "mlp", "linear_ts")
TEST_SEED_OFFSET = 1_000_000


def course_folders(names) -> list:
    """``model.courses`` with "sequential" expanded to the 14 sequential courses and "intro_to_ml" to its
    folder; other entries are folders relative to the corpora root."""
    folders = []
    for name in names:
        folders.extend({"sequential": list(cc.SEQUENTIAL_CORPORA), "intro_to_ml": [cc.INTRO_TO_ML]}.get(name, [name]))
    if not folders:
        raise ValueError("config.model.courses is empty: name courses (e.g. 'sequential', 'intro_to_ml')")
    return folders


class DocumentSequencingTask(UpdateTask):
    family = "gnn_rl"

    def __init__(self, config, mesh=None):
        super().__init__(config, mesh)
        model = self.model = config.model
        if model.algorithm not in ALGORITHMS:
            raise ValueError(f"config.model.algorithm={model.algorithm!r}: choose one of {', '.join(ALGORITHMS)}")
        if model.policy not in POLICIES:
            raise ValueError(f"config.model.policy={model.policy!r}: choose one of {', '.join(POLICIES)}")
        root = cc.corpora_root(model.corpora_dir)
        self.courses = [cc.load_course(os.path.join(root, folder), model.episode_length or None)
                        for folder in course_folders(model.courses)]
        if model.policy in ("mlp", "linear_ts") and len(self.courses) != 1:
            raise ValueError(f"config.model.policy={model.policy!r} is tied to one course's documents: give one course")
        self.dims = cc.common_dims(self.courses)
        arrays = [cc.padded(course, self.dims) for course in self.courses]
        self.stacked = {name: np.stack([a[name] for a in arrays]) for name in arrays[0]}
        self.lengths = np.array([course.episode_length for course in self.courses], np.int32)
        self.horizon = int(self.lengths.max())
        self.tx = schedules.make_optimizer(config)
        self.network = (graph_transformer.GraphRecommender(model.hidden, model.heads) if model.policy == "graph"
                        else feedback_mlp.FeedbackActorCritic(self.dims.docs, model.hidden, model.mlp_layers))
        self._eval = None

    # -- the policy ---------------------------------------------------------------------------------------
    def course(self, index) -> dict:
        """The arrays of course ``index``; with one course, the same arrays for any index, unbatched under
        ``vmap``, so that the student-independent part of the graph network is computed once per batch."""
        if len(self.courses) == 1:
            index = 0
        return {name: jnp.asarray(value)[index] for name, value in self.stacked.items()}

    def apply(self, params, course: dict, feedback):
        """``(logits [D], value [])`` for one student (the graph policy has no value: 0)."""
        if self.model.policy == "graph":
            graph = graph_transformer.course_graph(course)
            return self.network.apply({"params": params}, graph, feedback), jnp.zeros(())
        return self.network.apply({"params": params}, feedback)

    def init_state(self, rng):
        if self.model.policy == "linear_ts":
            return {"policy": lts.init(self.dims.docs), "opt_state": ()}
        feedback = jnp.full((self.dims.docs,), ds.NOT_SEEN, jnp.int32)
        if self.model.policy == "graph":
            args = (graph_transformer.course_graph(self.course(0)), feedback)
        else:
            args = (feedback,)
        params = self.network.init(rng, *args)["params"]
        return {"policy": params, "opt_state": self.tx.init(params)}

    def episodes(self, params, key, course_index, num_students: int) -> dict:
        """``rollout`` records of ``num_students`` students on course ``course_index`` plus ``valid [T, S]``."""
        course = self.course(course_index)

        def policy(observation, t, policy_key):
            del t, policy_key
            return jax.vmap(lambda o: self.apply(params, course, o)[0])(observation)

        records = ds.rollout(course, policy, key, num_students, self.horizon, self.model.scenario,
                             self.model.preference_p, self.model.background_p)
        valid = jnp.arange(self.horizon)[:, None] < jnp.asarray(self.lengths)[course_index]
        records["valid"] = jnp.broadcast_to(valid, records["rewards"].shape)
        return records

    # -- collect then K updates --------------------------------------------------------------------------
    def collect(self, params, key) -> dict:
        """Decisions of one collect, flattened to ``[N]`` rows (``course``, ``observations [N, D]``,
        ``actions``, ``weights``, ``oracle [N, D]``, ``advantages``, ``returns``, ``old_log_probs``) and the
        mean episodic return."""
        model = self.model
        choose_key, run_key = jax.random.split(key)
        num_courses = len(self.courses)
        chosen = jax.random.choice(choose_key, num_courses, (model.graphs_per_collect,),
                                   replace=model.graphs_per_collect > num_courses)
        records = jax.vmap(lambda g, k: self.episodes(params, k, g, model.students_per_collect))(
            chosen, jax.random.split(run_key, model.graphs_per_collect))  # [G, T, S, ...]
        valid = records["valid"]
        rewards = jnp.where(valid, records["rewards"], 0.0)
        episode_return = jnp.sum(rewards, axis=1)  # [G, S]
        course_rows = jnp.broadcast_to(chosen[:, None, None], valid.shape)
        observations = records["observations"]
        flat = lambda x: x.reshape((-1,) + x.shape[3:])  # noqa: E731  [G, T, S, ...] -> [N, ...]
        data = {"course": flat(course_rows), "observations": flat(observations), "actions": flat(records["actions"]),
                "weights": flat(valid.astype(jnp.float32)), "oracle": flat(records["oracle"])}
        if model.algorithm == "reinforce":
            returns = jax.vmap(lambda r, v: pg.discounted_returns(r, v, model.discount))(rewards, valid)
            mean = jnp.sum(returns) / jnp.sum(valid)
            std = jnp.sqrt(jnp.sum(jnp.where(valid, (returns - mean) ** 2, 0.0)) / jnp.sum(valid))
            data["advantages"] = flat((returns - mean) / (std + 1e-8)) if model.normalize_returns else flat(returns)
        if model.algorithm == "ppo":
            outputs = jax.vmap(jax.vmap(jax.vmap(lambda g, o: self.apply(params, self.course(g), o))))
            logits, values = outputs(course_rows, observations)
            mask = jnp.asarray(self.stacked["doc_mask"])[course_rows]
            log_probs = pg.masked_log_softmax(logits, mask)
            data["old_log_probs"] = flat(jnp.take_along_axis(log_probs, records["actions"][..., None], -1)[..., 0])
            advantages = jax.vmap(lambda r, v, ok: pg.generalized_advantages(r, v, ok, model.discount,
                                                                             model.gae_lambda))(rewards, values, valid)
            data["returns"] = flat(advantages + values)
            data["advantages"] = flat(advantages)
        return data, jnp.mean(episode_return)

    def minibatch_loss(self, params, batch):
        model = self.model
        outputs = jax.vmap(lambda g, o: self.apply(params, self.course(g), o))(batch["course"], batch["observations"])
        logits, values = outputs
        mask = jnp.asarray(self.stacked["doc_mask"])[batch["course"]]
        if model.algorithm == "imitation":
            return pg.imitation_loss(logits, mask, batch["oracle"], batch["weights"])
        if model.algorithm == "reinforce":
            return pg.reinforce_loss(logits, mask, batch["actions"], batch["advantages"], batch["weights"],
                                     model.entropy_coef)
        return pg.ppo_loss(logits, values, mask, batch["actions"], batch["old_log_probs"], batch["advantages"],
                           batch["returns"], batch["weights"], model.ppo_clip, model.value_coef, model.entropy_coef)

    def bandit_episode(self, posterior, key, learn: bool):
        """One student taught by Thompson sampling on course 0: ``(posterior after, episodic return)``."""
        course = self.course(0)
        student_key, run_key = jax.random.split(key)
        # The same student as ``rollout`` draws from ``key``: every method meets the same test students.
        student = ds.sample_student(course, jax.random.split(student_key, 1)[0], self.model.scenario,
                                    self.model.preference_p, self.model.background_p)
        zeros = jnp.zeros(self.dims.docs, jnp.float32)

        def one_step(carry, t):
            posterior, student, recommended, understood = carry
            x = lts.contexts(recommended, understood)
            scores = lts.sample_scores(posterior, x, jax.random.fold_in(run_key, t))
            doc = jnp.argmax(jnp.where(course["doc_mask"], scores, -jnp.inf))
            student, feedback, reward = ds.step(course, student, doc)
            if learn:
                posterior = lts.observe(posterior, x, doc, reward)
            recommended = recommended.at[doc].add(1.0)
            understood = understood.at[doc].add((feedback == ds.RIGHT_LEVEL).astype(jnp.float32))
            return (posterior, student, recommended, understood), reward

        (posterior, *_), rewards = jax.lax.scan(one_step, (posterior, student, zeros, zeros),
                                                jnp.arange(self.horizon))
        return posterior, jnp.sum(rewards)

    def bandit_update(self, state, rng):
        def episode(posterior, key):
            return self.bandit_episode(posterior, key, learn=True)

        posterior, returns = jax.lax.scan(episode, state["policy"],
                                          jax.random.split(rng, self.model.students_per_collect))
        return {"policy": posterior, "opt_state": ()}, {"collect_return": jnp.mean(returns)}

    def update(self, state, batch, rng):
        del batch  # the position is the loop's step; the randomness is its per-update key
        model = self.model
        if model.policy == "linear_ts":
            return self.bandit_update(state, rng)
        collect_key, shuffle_key = jax.random.split(rng)
        data, collect_return = self.collect(state["policy"], collect_key)
        rows, size, steps = data["weights"].shape[0], model.minibatch_size, model.updates_per_collect
        passes = -(-steps * size // rows)  # minibatches run through shuffled passes over the collect
        order = jnp.concatenate([jax.random.permutation(k, rows) for k in jax.random.split(shuffle_key, passes)])
        order = order[:steps * size].reshape(steps, size)

        def one_update(carry, index):
            params, opt_state = carry
            minibatch = {name: value[index] for name, value in data.items()}

            def loss_of(p):
                loss_sum, weight_sum, aux = self.minibatch_loss(p, minibatch)
                return loss_sum / jnp.maximum(weight_sum, 1.0), (weight_sum, aux)

            (loss, (weight, aux)), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
            updates, opt_state = self.tx.update(grads, opt_state, params)
            params = jax.tree.map(jnp.add, params, updates)
            return (params, opt_state), (loss, weight, aux)

        (params, opt_state), (losses, weights, aux) = jax.lax.scan(one_update, (state["policy"], state["opt_state"]),
                                                                    order)
        total = jnp.maximum(jnp.sum(weights), 1.0)
        metrics = {"loss": jnp.sum(losses * weights) / total, "collect_return": collect_return}
        metrics.update({name: jnp.sum(value) / total for name, value in aux.items()})
        return {"policy": params, "opt_state": opt_state}, metrics

    # -- data position and evaluation --------------------------------------------------------------------
    def train_batches(self, start_batch):
        for collect in range(start_batch, self.model.num_collects):
            yield {"collect": np.full((1,), collect, np.int32)}

    def example_batch(self, batch_size):
        return {"collect": np.zeros((batch_size,), np.int32)}

    def returns(self, params, seeds) -> np.ndarray:
        """``[len(seeds)]`` episodic return of one test student per seed, on course ``seed mod courses``."""
        if self._eval is None:
            def one(p, seed, base_key):  # the run's key is an argument: one compiled program for every seed
                key = jax.random.fold_in(jax.random.wrap_key_data(base_key), seed)
                if self.model.policy == "linear_ts":
                    return self.bandit_episode(p, key, learn=False)[1]
                records = self.episodes(p, key, seed % len(self.courses), 1)
                return jnp.sum(jnp.where(records["valid"], records["rewards"], 0.0))

            self._eval = jax.jit(jax.vmap(one, in_axes=(None, 0, None)))
        base_key = jax.random.key_data(jax.random.key(self.config.seed))
        return np.asarray(self._eval(params, jnp.asarray(seeds, jnp.int32), base_key))

    def evaluators(self):
        n = self.model.test_episodes

        def rollout(state, seeds):
            return self.returns(getattr(state, "params", state)["policy"], seeds)

        return {"policy_return": evaluators_lib.PolicyReturnEvaluator(
            rollout, {"validation": range(n), "test": range(TEST_SEED_OFFSET, TEST_SEED_OFFSET + n)})}
