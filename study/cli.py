"""The `study` command: one entry point for every stage of the product.

    study generate   ...  synthetic Learning-Ally-shaped raw data   (study.sims.synthetic_learning_ally)
    study preprocess ...  the Beam job: splits, vocabulary, rows     (data_pipeline.build_dataset)
    study train      ...  any model family on the one loop          (study.commands.train)
    study eval       ...  evaluator reports from a checkpoint        (study.commands.evaluate)
    study compare    ...  one table + plot of several models         (study.eval.compare)
    study suite      ...  train + evaluate + compare several models  (study.commands.suite)
    study export     ...  a serving artifact from a checkpoint       (study.commands.export)
    study recommend  ...  next-item recommendations from an artifact (study.serve.recommend)

Each sub-command is the `python -m` module named beside it, with the same absl flags; `study CMD --help`
lists them.
"""

import os
import runpy
import sys

COMMANDS = {
    "generate": "study.sims.synthetic_learning_ally",
    "preprocess": "data_pipeline.build_dataset",
    "train": "study.commands.train",
    "eval": "study.commands.evaluate",
    "compare": "study.eval.compare",
    "suite": "study.commands.suite",
    "export": "study.commands.export",
    "recommend": "study.serve.recommend",
}


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: study COMMAND [--flags]", "", "commands:"]
    lines += [f"  {name:<{width}}  (python -m {module})" for name, module in COMMANDS.items()]
    lines += ["", "`study COMMAND --help` lists the flags of a command."]
    return "\n".join(lines)


def main(argv=None) -> None:
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(usage())
        sys.exit(0 if len(argv) >= 2 else 2)
    command = argv[1]
    if command not in COMMANDS:
        print(f"study: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        sys.exit(2)
    # Hand over to the module as if started with `python -m`, so its absl flags parse unchanged.
    sys.argv = [f"study {command}"] + argv[2:]
    # Library INFO chatter (TensorFlow, XLA backend probing, orbax) is hidden unless asked for with -v/--verbosity.
    if command != "recommend" and not any(arg.startswith(("-v", "--verbosity")) for arg in sys.argv[1:]):
        sys.argv.append("--verbosity=-1")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    runpy.run_module(COMMANDS[command], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
