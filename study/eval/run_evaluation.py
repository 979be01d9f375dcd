"""`study eval`: hits@n reports of a trained run on an evaluation split.

    python -m study.eval.run_evaluation --config=configs/study.py:smoke --workdir=runs/study \
        [--split=test] [--output_dir=runs/study/eval_test] [--step=N] [--config.data_dir=...]

Restores the run's checkpoint (latest or ``--step``), scores every row of the split of the config's
dataset once (``study.data.input_pipeline.eval_batches``) and writes ``metrics.json``,
``per_student.csv``, ``summary.md`` and the history-length plot (``study.eval.reports``).

The KNN baseline (``config.model.model_name == "knn"``) has no checkpoint: its index is loaded from
``<workdir>/knn_index/``, or fitted on the train split of ``<data_dir>/individual`` and saved there, then
evaluated the same way (ranked lists, ``output="top_k"``)::

    python -m study.eval.run_evaluation --config=configs/knn.py --workdir=runs/knn \
        --config.data_dir=runs/smoke/processed

`study compare --metrics=study=runs/a/eval_test/metrics.json,individual=runs/b/eval_test/metrics.json
--output_dir=runs/compare` writes the side-by-side table and plot of several models.
"""

import os

import jax
from absl import app, flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
KNN_INDEX_DIR = "knn_index"  # sub-folder of the workdir holding a fitted KNN index


def predict_fn_for(config, params):
    """A jitted ``batch -> logits [B, L, V]`` of the run's model (device features only)."""
    from study.data import input_pipeline
    from study.models import registry

    model = registry.build_model(config.model)

    @jax.jit
    def logits_fn(params, batch):
        return model.apply({"params": params}, batch, train=False)

    return lambda batch: logits_fn(params, input_pipeline.device_batch(batch))


def knn_predict_fn(config, workdir: str):
    """The KNN ``batch -> [B, L, top_k] int32`` ranked ids, from ``<workdir>/knn_index/`` (fitted and
    saved there first when absent; ``study.models.knn.load_or_fit``)."""
    from study.models import knn

    index = knn.load_or_fit(os.path.join(workdir, KNN_INDEX_DIR), config.data_dir, config.knn.context_size,
                            row_length=config.model.row_length)
    return knn.NearestContexts(index, top_k=config.knn.top_k, cache_size=config.knn.cache_size).predict


def evaluate_run(config, workdir: str, split: str = "test", output_dir: str | None = None,
                 step: int | None = None, batch_size: int | None = None, num_bootstrap: int = 50) -> dict:
    """Evaluates the checkpoint of ``workdir`` (the KNN index for KNN configs) on ``split`` and writes
    the reports; returns the metrics."""
    from study.data import input_pipeline
    from study.eval import evaluate
    from study.serve import export

    if config.model.get("model_name", "") == "knn":
        predict_fn, output = knn_predict_fn(config, workdir), "top_k"
        model_name = config.get("name", None) or "knn"
    else:
        config, params = export.restore_params(config, workdir, step)
        predict_fn, output = predict_fn_for(config, params), "auto"
        model_name = config.get("name", None) or config.model.attention
    files = input_pipeline.dataset_files(config.data_dir, config.dataset, split)
    batches = input_pipeline.eval_batches(
        files, batch_size or config.batch_size, row_length=config.model.row_length,
        process_index=0, process_count=1)
    result = evaluate.evaluate(predict_fn, batches, num_bootstrap=num_bootstrap, seed=config.seed,
                               output=output)
    output_dir = output_dir or os.path.join(workdir, f"eval_{split}")
    evaluate.write_reports(result, output_dir, model_name)
    return result.metrics


def _define_flags():
    config_flags.DEFINE_config_file("config", None, "config of the run, e.g. configs/study.py:smoke",
                                    lock_config=False)
    flags.DEFINE_string("workdir", None, "run directory of the trainer (holds checkpoints/; knn_index/ for KNN)")
    flags.DEFINE_string("split", "test", "evaluation split: validation or test")
    flags.DEFINE_string("output_dir", None, "where to write the reports (default <workdir>/eval_<split>)")
    flags.DEFINE_integer("step", None, "checkpoint step (default: the latest)")
    flags.DEFINE_integer("batch_size", None, "rows per evaluation batch (default: the config's batch_size)")
    flags.DEFINE_integer("num_bootstrap", 50, "bootstrap resamples over students for the 95% intervals")
    flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    metrics = evaluate_run(FLAGS.config, FLAGS.workdir, FLAGS.split, FLAGS.output_dir, FLAGS.step,
                           FLAGS.batch_size, FLAGS.num_bootstrap)
    output_dir = FLAGS.output_dir or os.path.join(FLAGS.workdir, f"eval_{FLAGS.split}")
    print(f"evaluation of {FLAGS.workdir} on {FLAGS.split}: reports in {output_dir}")
    summary = os.path.join(output_dir, "summary.md")
    if os.path.exists(summary):
        with open(summary, encoding="utf-8") as handle:
            print(handle.read())
    del metrics


if __name__ == "__main__":
    _define_flags()
    app.run(main)
