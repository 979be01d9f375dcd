"""`study suite`: train (where they train), evaluate and compare several models on one processed dataset.

    python -m study.commands.suite --data_dir=data/processed --workdir=runs/suite \\
        --models=study,individual,study_two_stream,knn,samn,srgnn --preset=default \\
        [--override=steps=1500,batch_size=64] [--split=test] [--num_bootstrap=50]

Each model is a config file of ``configs/`` (``--models=study`` is ``configs/study.py``) at the preset;
``--override`` sets
``KEY=VALUE`` on every model config that has ``KEY`` (dotted paths, e.g. ``model.emb_dim=128``) and reports the
ones that do not apply. Per model the run directory is ``<workdir>/<model>``: training resumes from its
checkpoints, a finished run is not retrained, an existing evaluation is reused unless ``--reevaluate``. Every
model is judged by the same evaluator (``hits``) on the same split.
Writes ``<workdir>/comparison/{comparison.md, comparison.json, comparison_hits_by_history.png}`` and
``<workdir>/suite.json`` (per model: config overrides, train time, final train/validation metrics, the overall
metrics, and the hits@n gap of every model to the first one by history length).
"""

import os
import time

import ml_collections
import numpy as np
import pandas as pd
from absl import flags

from study import cli
from study.eval import bootstrap, metrics, reports

FLAGS = flags.FLAGS

HITS = "hits"  # the evaluator every model of the suite is compared by


def _parse_value(text: str):
    """``"128" -> 128``, ``"1e-3" -> 0.001``, ``"true" -> True``, otherwise the string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_overrides(items) -> dict:
    """``["steps=10", "model.emb_dim=64"]`` -> ``{"steps": 10, "model.emb_dim": 64}``; clear error otherwise."""
    overrides = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--override entry {item!r} is not KEY=VALUE")
        overrides[key.strip()] = _parse_value(value)
    return overrides


def _has_path(config: ml_collections.ConfigDict, dotted: str) -> bool:
    node = config
    for part in dotted.split("."):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            return False
        node = node[part]
    return True


def _set_path(config: ml_collections.ConfigDict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    node = config
    for part in parents:
        node = node[part]
    current = node[leaf]
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    node[leaf] = value


def model_config(name: str, preset: str, data_dir: str, overrides: dict) -> tuple:
    """(config of ``configs/<name>.py:<preset>``, {applied key: value}, [keys that do not exist in it])."""
    import importlib

    try:
        module = importlib.import_module(f"configs.{name}")
    except ModuleNotFoundError:
        raise ValueError(f"unknown model {name!r}: there is no configs/{name}.py") from None
    config = module.get_config(preset)
    config.data_dir = data_dir
    config.name = name
    applied, skipped = {}, []
    for key, value in overrides.items():
        if _has_path(config, key):
            _set_path(config, key, value)
            applied[key] = value
        else:
            skipped.append(key)
    return config, applied, skipped


def history_gaps(metrics_by_model: dict, reference: str, average: str = "macro") -> dict:
    """``{model: {subset: {history bucket: {hits@n: model - reference}}}}`` from the metrics breakdowns."""
    base = metrics_by_model[reference]["breakdowns"]["history_len"]
    gaps = {}
    for name, model_metrics in metrics_by_model.items():
        if name == reference:
            continue
        rows = model_metrics["breakdowns"]["history_len"]
        gaps[name] = {}
        for bucket, groups in rows.items():
            if bucket not in base:
                continue
            for subset, entry in groups.items():
                if subset not in base[bucket] or not entry.get("num_interactions"):
                    continue
                gaps[name].setdefault(subset, {})[bucket] = {
                    hits: entry[average][hits] - base[bucket][subset][average][hits]
                    for hits in entry[average]
                }
    return gaps


def paired_macro_differences(per_student: pd.DataFrame, reference: pd.DataFrame, *, num_bootstrap: int = 200,
                             seed: int = 0, confidence: float = 0.95) -> dict:
    """Macro hits@n of one model minus a reference on the SAME students, with a paired bootstrap interval.

    Args:
      per_student, reference: ``per_student.csv`` tables of two evaluations of one split
        (``student_hash``, ``num_interactions_<subset>``, ``hits@<n>_<subset>``).
      num_bootstrap, seed, confidence: the percentile bootstrap over students (both models resampled
        with the same students, so the interval is of the difference itself).

    Returns:
      ``{subset: {"hits@n": {"value", "ci_low", "ci_high"}}}``; a subset's macro average is over the
      students with at least one interaction in it.
    """
    joined = per_student.merge(reference, on="student_hash", suffixes=("", "_ref"), validate="one_to_one")
    if len(joined) != len(per_student) or len(joined) != len(reference):
        raise ValueError(f"the two evaluations cover different students ({len(per_student)} vs {len(reference)}, "
                         f"{len(joined)} shared); compare evaluations of the same split")
    result = {}
    for subset in metrics.SUBSETS:
        counts = joined[f"num_interactions_{subset}"].to_numpy(np.float64)
        names = [c[: -len(subset) - 1] for c in per_student.columns
                 if c.startswith("hits@") and c.endswith(f"_{subset}")]
        diff_rates = np.stack([
            (joined[f"{name}_{subset}"].to_numpy(np.float64) - joined[f"{name}_{subset}_ref"].to_numpy(np.float64))
            / np.maximum(counts, 1.0) for name in names], axis=1)  # [S, N]
        present = counts > 0

        def macro(weights):
            w = weights * present
            return (w[:, None] * diff_rates).sum(0) / max(w.sum(), 1)

        point = macro(np.ones(len(joined)))
        low, high = bootstrap.percentile_interval(macro, len(joined), num_resamples=num_bootstrap, seed=seed,
                                                  confidence=confidence)
        result[subset] = {name: {"value": float(point[j]), "ci_low": float(low[j]), "ci_high": float(high[j])}
                          for j, name in enumerate(names)}
    return result


def run_suite(data_dir: str, workdir: str, models, preset: str = "default", overrides: dict | None = None,
              split: str = "test", num_bootstrap: int = 50, reevaluate: bool = False, train: bool = True,
              log=print) -> dict:
    """Trains / evaluates ``models`` on ``data_dir``; returns the content of ``suite.json``.

    ``train=False`` evaluates the runs as they are (their latest checkpoints), e.g. to compare runs trained
    with different budgets.
    """
    from study.commands import evaluate, train as train_command

    overrides = overrides or {}
    os.makedirs(workdir, exist_ok=True)
    summary = {"data_dir": data_dir, "preset": preset, "split": split, "overrides": overrides, "models": {}}
    metrics_by_model = {}
    for name in models:
        config, applied, skipped = model_config(name, preset, data_dir, overrides)
        run_dir = os.path.join(workdir, name)
        entry = {"applied_overrides": applied, "skipped_overrides": skipped}
        if train:
            started = time.perf_counter()
            log(f"[suite] training {name} in {run_dir}")
            result = train_command.train(config, run_dir)
            entry.update(train_seconds=time.perf_counter() - started, train=result["train"],
                         validation=result["validation"], steps=result["step"])
        metrics_path = os.path.join(run_dir, f"eval_{split}", HITS, "metrics.json")
        if reevaluate or not os.path.exists(metrics_path):
            started = time.perf_counter()
            log(f"[suite] evaluating {name} on {split}")
            evaluate.evaluate_run(config, run_dir, split=split, evaluators=[HITS], num_bootstrap=num_bootstrap)
            entry["eval_seconds"] = time.perf_counter() - started
        metrics_by_model[name] = reports.load_metrics(metrics_path)
        entry["overall"] = metrics_by_model[name]["overall"]
        summary["models"][name] = entry
    written = reports.compare_models(metrics_by_model, os.path.join(workdir, "comparison"))
    summary["comparison"] = {key: str(path) for key, path in written.items()}
    reference = list(models)[-1] if "individual" not in models else "individual"
    summary["gap_reference"] = reference
    summary["history_gaps_macro"] = history_gaps(metrics_by_model, reference)
    tables = {name: pd.read_csv(os.path.join(workdir, name, f"eval_{split}", HITS, "per_student.csv"))
              for name in models}
    summary["paired_macro_differences"] = {
        name: paired_macro_differences(tables[name], tables[reference], seed=0)
        for name in models if name != reference}
    reports.write_metrics_json(summary, os.path.join(workdir, "suite.json"))
    return summary


def _define_flags():
    flags.DEFINE_string("data_dir", None, "processed dataset (output of study preprocess)")
    flags.DEFINE_string("workdir", None, "suite directory: one run folder per model + comparison/")
    flags.DEFINE_list("models", ["study", "individual"], "models to run: config files of configs/ (e.g. study, knn)")
    flags.DEFINE_string("preset", "default", "config preset of every model (smoke, default, learning_ally)")
    flags.DEFINE_list("override", [], "KEY=VALUE config settings applied to every model that has KEY")
    flags.DEFINE_string("split", "test", "evaluation split")
    flags.DEFINE_integer("num_bootstrap", 50, "bootstrap resamples for the 95% intervals")
    flags.DEFINE_bool("reevaluate", False, "evaluate again even where metrics.json exists")
    flags.DEFINE_bool("train", True, "train (or resume) before evaluating; --notrain evaluates the runs as they are")
    flags.mark_flags_as_required(["data_dir", "workdir"])


def check_flags() -> dict:
    """Checks the suite's inputs before any training or writing; returns the parsed ``--override``."""
    from study.commands.flags import check_data_dir, check_output_dir

    check_data_dir(FLAGS.data_dir, "--data_dir")
    check_output_dir(FLAGS.workdir, "--workdir")
    if not FLAGS.models:
        raise cli.InputError("--models is empty: name config files of configs/, e.g. --models=study,individual")
    try:
        overrides = parse_overrides(FLAGS.override)
        for name in FLAGS.models:
            config, _, _ = model_config(name, FLAGS.preset, FLAGS.data_dir, overrides)
            check_data_dir(FLAGS.data_dir, "--data_dir", dataset=config.get("dataset") or None)
    except ValueError as error:
        raise cli.InputError(str(error)) from None
    return overrides


def main(argv):
    del argv
    overrides = check_flags()
    summary = run_suite(FLAGS.data_dir, FLAGS.workdir, FLAGS.models, FLAGS.preset, overrides, FLAGS.split,
                        FLAGS.num_bootstrap, FLAGS.reevaluate, FLAGS.train)
    with open(summary["comparison"]["table"], encoding="utf-8") as handle:
        print(handle.read())
    for name, entry in summary["models"].items():
        if entry["skipped_overrides"]:
            print(f"{name}: overrides not applicable: {', '.join(entry['skipped_overrides'])}")


if __name__ == "__main__":
    _define_flags()
    cli.run(main)
