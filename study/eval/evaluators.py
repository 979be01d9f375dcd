"""The evaluators a family's config can name; the same objects run during training and in ``study eval``.

Each is a :class:`study.train.task.Evaluator` built by a task from two functions it owns:

* ``predictor(state) -> predict_fn``: what the state predicts for one host batch;
* ``batches(split, max_batches) -> iterator`` of host batches of the split.

=================  ==========================================================================================
name               what it reports
=================  ==========================================================================================
``hits``           hits@n over all / non-continuation / novel interactions, macro and micro, bootstrap
                   intervals, breakdowns (``study.eval.evaluate``); ``predict_fn`` gives ``[B, L, V]`` scores
                   or ``[B, L, K]`` ranked ids
``session``        SR-GNN's P@K / MRR@K over next-click test cases (``study.eval.session_metrics``)
``correctness``    AUC, F1, accuracy, log-loss of binary correctness, overall and by group
                   (``study.eval.correctness_metrics``); ``predict_fn`` gives ``[N]`` probabilities, batches
                   hold ``correct [N]``, optional ``group [N]`` and ``mask [N]``
``retrieval``      Pearson / Kendall / Spearman correlation of estimated parameters (posterior means) with
                   the true ones of a simulation (``study.eval.retrieval_metrics``), with the mean posterior
                   standard deviation; ``estimates(state) -> {name: (mean [n], sd [n])}``
``policy_return``  mean episodic return with its standard error and t interval over seeds, and the mean
                   learning curve (``study.eval.policy_metrics``); ``rollout(state, seeds) -> returns``
=================  ==========================================================================================

The loss of gradient families is ``study.train.gradient_step.LossEvaluator``. Reports are written by
``study.eval.report_writer``.
"""

from typing import Callable, Iterable, Iterator

import numpy as np

from study.eval import correctness_metrics, evaluate, metrics as hits_metrics, policy_metrics, reports
from study.eval import retrieval_metrics, session_metrics
from study.train.task import Evaluator, Report

Batches = Callable[[str, int | None], Iterator[dict]]
Predictor = Callable[[object], Callable[[dict], object]]


class HitsEvaluator(Evaluator):
    """hits@n of a next-item recommender (README, "Evaluation"); scalars: macro hits@n of all interactions."""

    name = "hits"

    def __init__(self, predictor: Predictor, batches: Batches, *, model_name: str, ns=hits_metrics.DEFAULT_NS,
                 output: str = "auto", seed: int = 0):
        self.predictor, self.batches = predictor, batches
        self.model_name, self.ns, self.output, self.seed = model_name, tuple(ns), output, seed

    def evaluate(self, state, split, *, max_batches=None, num_bootstrap=0) -> Report:
        result = evaluate.evaluate(self.predictor(state), self.batches(split, max_batches), ns=self.ns,
                                   num_bootstrap=num_bootstrap, seed=self.seed, output=self.output)
        return hits_report(result, self.model_name)


def hits_report(result: evaluate.EvalResult, model_name: str) -> Report:
    """The report of one hits@n evaluation: ``metrics.json``, ``summary.md``, ``per_student.csv`` and the
    ``hits_by_history.png`` plot (``study.eval.reports``); scalars: macro hits@n of all interactions."""
    metrics = result.metrics
    overall = metrics["overall"]["all"]["macro"]
    scalars = {f"{hits}_macro": entry["value"] for hits, entry in overall.items()}
    plot_ns = tuple(n for n in reports.PLOT_NS if n in metrics["ns"]) or tuple(metrics["ns"][:1])
    return Report(
        HitsEvaluator.name, scalars, metrics, markdown=reports.summary_markdown(metrics, model_name),
        tables={"per_student": result.per_student},
        figures={"hits_by_history": lambda path: reports.plot_hits_by_history({model_name: metrics}, path,
                                                                              ns=plot_ns)})


class SessionEvaluator(Evaluator):
    """P@K and MRR@K over the next-click test cases (every click with an earlier one of its student)."""

    name = "session"

    def __init__(self, predictor: Predictor, batches: Batches, *, k: int = 20):
        self.predictor, self.batches, self.k = predictor, batches, k

    def evaluate(self, state, split, *, max_batches=None, num_bootstrap=0) -> Report:
        del num_bootstrap
        predict = self.predictor(state)
        ranks = []
        for batch in self.batches(split, max_batches):
            item_ids = np.asarray(batch["item_ids"])
            batch_ranks = evaluate.batch_ranks(predict(batch), item_ids, max_n=self.k)
            cases = session_metrics.next_click_mask(item_ids, batch["positions"])
            cases &= np.asarray(batch.get("row_valid", np.ones(len(item_ids))), bool)[:, None]
            ranks.append(batch_ranks[cases])
        values = session_metrics.session_metrics(np.concatenate(ranks) if ranks else np.zeros(0, int), self.k)
        scalars = {name: float(value) for name, value in values.items()}
        lines = "\n".join(f"| {name} | {value:.4f} |" for name, value in scalars.items())
        return Report(self.name, scalars, {"split": split, **values},
                      markdown=f"# Session metrics on {split}\n\n| metric | value |\n|---|---|\n{lines}\n")


class CorrectnessEvaluator(Evaluator):
    """AUC / F1 / accuracy / log-loss of predicted probabilities of a correct response."""

    name = "correctness"

    def __init__(self, predictor: Predictor, batches: Batches, *, seed: int = 0):
        self.predictor, self.batches, self.seed = predictor, batches, seed

    def evaluate(self, state, split, *, max_batches=None, num_bootstrap=0) -> Report:
        predict = self.predictor(state)
        labels, probabilities, groups, masks = [], [], [], []
        for batch in self.batches(split, max_batches):
            labels.append(np.asarray(batch["correct"]).reshape(-1))
            probabilities.append(np.asarray(predict(batch), np.float64).reshape(-1))
            groups.append(np.asarray(batch.get("group", np.zeros(len(labels[-1]), np.int64))).reshape(-1))
            masks.append(np.asarray(batch.get("mask", np.ones(len(labels[-1]), bool)), bool).reshape(-1))
        if not labels:
            raise ValueError(f"the {split} split holds no response to evaluate")
        report = correctness_metrics.correctness_report(
            np.concatenate(labels), np.concatenate(probabilities), np.concatenate(groups),
            weights=np.concatenate(masks), num_bootstrap=num_bootstrap, seed=self.seed)
        overall = report["overall"]
        scalars = {name: float(overall[name]) for name in ("auc", "f1", "accuracy", "log_loss")}
        header = "| group | responses | AUC | F1 | accuracy | log-loss |\n|---|---|---|---|---|---|\n"
        rows = [("all", overall)] + sorted(report["by_group"].items())
        body = "".join(f"| {g} | {m['num_responses']} | {m['auc']:.4f} | {m['f1']:.4f} | {m['accuracy']:.4f} | "
                       f"{m['log_loss']:.4f} |\n" for g, m in rows)
        return Report(self.name, scalars, {"split": split, **report},
                      markdown=f"# Correctness on {split}\n\n{header}{body}")


class PolicyReturnEvaluator(Evaluator):
    """Episodic return of the state's policy over evaluation seeds.

    ``rollout(state, seeds) -> returns [num_seeds]`` or ``[num_seeds, num_points]`` (a learning curve: the
    summary is of the last point). Seeds: ``seeds[split]`` (fixed lists, disjoint between splits).
    """

    name = "policy_return"

    def __init__(self, rollout: Callable, seeds: dict[str, Iterable[int]]):
        self.rollout, self.seeds = rollout, {split: list(values) for split, values in seeds.items()}

    def evaluate(self, state, split, *, max_batches=None, num_bootstrap=0) -> Report:
        del num_bootstrap
        if split not in self.seeds:
            raise FileNotFoundError(f"no evaluation seeds for split {split!r}; splits: {sorted(self.seeds)}")
        seeds = self.seeds[split][: max_batches or None]
        returns = np.asarray(self.rollout(state, np.asarray(seeds)), np.float64)
        metrics = {"split": split, "seeds": seeds}
        if returns.ndim == 2:
            metrics["learning_curve"] = policy_metrics.learning_curve(returns)
            returns = returns[:, -1]
        summary = policy_metrics.return_summary(returns)
        metrics["return"] = summary
        scalars = {"return_mean": float(summary["mean"]), "return_stderr": float(summary["stderr"])}
        return Report(self.name, scalars, metrics,
                      markdown=(f"# Policy return on {split}\n\nmean {summary['mean']:.4f} +- "
                                f"{summary['stderr']:.4f} (standard error over {summary['num_seeds']} seeds)\n"))


class RetrievalEvaluator(Evaluator):
    """Correlations of a state's parameter estimates with known true values (any split: the truth is one).

    ``estimates(state) -> {name: (mean [n], sd [n] or None)}``; ``truth``: ``{name: [n]}`` (names in both are
    compared). Scalars: ``<name>_pearson``, ``<name>_kendall``, ``<name>_spearman``.
    """

    name = "retrieval"

    def __init__(self, estimates: Callable, truth: dict):
        self.estimates, self.truth = estimates, truth

    def evaluate(self, state, split, *, max_batches=None, num_bootstrap=0) -> Report:
        del max_batches, num_bootstrap
        found = self.estimates(state)
        metrics = {name: retrieval_metrics.retrieval(found[name][0], self.truth[name], found[name][1])
                   for name in self.truth if name in found}
        scalars = {f"{name}_{stat}": value[stat] for name, value in metrics.items()
                   for stat in ("pearson", "kendall", "spearman")}
        body = "".join(f"| {name} | {m['pearson']:.3f} | {m['kendall']:.3f} | {m['spearman']:.3f} | {m['rmse']:.3f} | "
                       f"{m.get('mean_posterior_sd', float('nan')):.3f} |\n" for name, m in metrics.items())
        return Report(self.name, scalars, {"split": split, **metrics},
                      markdown=("# Parameter retrieval\n\n| parameter | Pearson | Kendall | Spearman | RMSE | "
                                "mean posterior sd |\n|---|---|---|---|---|---|\n" + body))
