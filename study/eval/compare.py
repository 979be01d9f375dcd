"""`study compare`: one table and one plot of several models evaluated on the same split.

    python -m study.eval.compare --metrics=study=runs/study/eval_test/hits/metrics.json,\
individual=runs/individual/eval_test/hits/metrics.json --output_dir=runs/compare

Writes ``comparison.md``, ``comparison.json`` and ``comparison_hits_by_history.png`` into ``--output_dir``.
Every metrics file is read and checked before anything is written.
"""

import json
import os

from absl import flags

from study import cli

FLAGS = flags.FLAGS
METRICS_KEYS = ("ns", "counts", "overall", "breakdowns")  # what a hits evaluator's metrics.json holds


def parse_metrics_flag(value: str) -> dict:
    """``"name=path,name=path"`` -> ``{name: path}`` in the given order; a clear error otherwise."""
    pairs = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--metrics entry {item!r} is not NAME=PATH/metrics.json")
        if name in pairs:
            raise ValueError(f"--metrics names model {name!r} twice")
        pairs[name] = path
    if not pairs:
        raise ValueError("--metrics is empty: give NAME=PATH/metrics.json for each model")
    return pairs


def load_checked_metrics(name: str, path: str) -> dict:
    """The ``metrics.json`` of model ``name``; ``cli.InputError`` naming the file when it is missing or not one."""
    try:
        with open(path, encoding="utf-8") as handle:
            metrics = json.load(handle)
    except FileNotFoundError:
        raise cli.InputError(f"--metrics {name}={path}: no such file; run `study eval` for that model first "
                             "(it writes <workdir>/eval_<split>/hits/metrics.json)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise cli.InputError(f"--metrics {name}={path}: not valid JSON ({error}); re-run `study eval` to "
                             "rewrite it") from None
    missing = [key for key in METRICS_KEYS if not isinstance(metrics, dict) or key not in metrics]
    if missing:
        raise cli.InputError(f"--metrics {name}={path}: lacks field(s) {missing}: not the metrics.json of a "
                             "hits evaluation (<workdir>/eval_<split>/hits/metrics.json)")
    return metrics


def main(argv):
    del argv
    try:
        paths = parse_metrics_flag(FLAGS.metrics)
    except ValueError as error:
        raise cli.InputError(str(error)) from None
    if os.path.exists(FLAGS.output_dir) and not os.path.isdir(FLAGS.output_dir):
        raise cli.InputError(f"--output_dir={FLAGS.output_dir} is a file, not a folder")
    metrics_by_model = {name: load_checked_metrics(name, path) for name, path in paths.items()}
    from study.eval import reports  # pandas and matplotlib: after the inputs are checked

    written = reports.compare_models(metrics_by_model, FLAGS.output_dir)
    with open(written["table"], encoding="utf-8") as handle:
        print(handle.read())
    print(f"comparison written to {FLAGS.output_dir}")


if __name__ == "__main__":
    flags.DEFINE_string("metrics", None, "NAME=PATH/metrics.json,NAME=PATH/metrics.json ...")
    flags.DEFINE_string("output_dir", None, "where to write comparison.md, comparison.json and the plot")
    flags.mark_flags_as_required(["metrics", "output_dir"])
    cli.run(main)
