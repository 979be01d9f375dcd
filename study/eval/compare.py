"""`study compare`: one table and one plot of several models evaluated on the same split.

    python -m study.eval.compare --metrics=study=runs/study/eval_test/metrics.json,\
individual=runs/individual/eval_test/metrics.json --output_dir=runs/compare
"""

from absl import app, flags

from study.eval import reports

FLAGS = flags.FLAGS


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


def main(argv):
    del argv
    paths = parse_metrics_flag(FLAGS.metrics)
    written = reports.compare_models({name: reports.load_metrics(p) for name, p in paths.items()},
                                     FLAGS.output_dir)
    with open(written["table"], encoding="utf-8") as handle:
        print(handle.read())
    print(f"comparison written to {FLAGS.output_dir}")


if __name__ == "__main__":
    flags.DEFINE_string("metrics", None, "NAME=PATH/metrics.json,NAME=PATH/metrics.json ...")
    flags.DEFINE_string("output_dir", None, "where to write comparison.md, comparison.json and the plot")
    flags.mark_flags_as_required(["metrics", "output_dir"])
    app.run(main)
