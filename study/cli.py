"""The `study` command: one entry point for every stage of the product.

    study generate   ...  synthetic Learning-Ally-shaped raw data   (study.commands.generate)
    study preprocess ...  the Beam job: splits, vocabulary, rows     (data_pipeline.build_dataset)
    study train      ...  any model family on the one loop          (study.commands.train)
    study eval       ...  evaluator reports from a checkpoint        (study.commands.evaluate)
    study compare    ...  one table + plot of several models         (study.eval.compare)
    study suite      ...  train + evaluate + compare several models  (study.commands.suite)
    study export     ...  a serving artifact from a checkpoint       (study.commands.export)
    study recommend  ...  next-item recommendations from an artifact (study.serve.recommend)
    study serve      ...  HTTP recommender with micro-batching       (study.serve.http_service)
    study homework   ...  Smart Homework picks from a fitted IRT run  (study.commands.homework)
    study bandits    ...  the EduQate protocol: all policies, report  (study.commands.bandit_protocol)
    study kt         ...  knowledge-tracing AUC table, Q-matrix       (study.commands.kt_table)
    study gnn_rl     ...  GNN-RL fine-tuning comparison, report       (study.commands.gnn_rl_protocol)

Each sub-command is the `python -m` module named beside it, with the same absl flags; `study CMD --help`
lists them and exits 0.

Every command parses its flags with :func:`run` (or :func:`parse_flags`), so all of them behave alike:

* ``--help`` (``-h``, ``--helpshort``, ``--helpfull``) prints the command's description and flags, exit 0;
* a flag error (unknown flag, unknown config field such as ``--config.modle.emb_dim=3``, a value of the wrong
  type, a required flag left out) and an input error the command detects (:class:`InputError`: a missing
  file or folder, bad JSON, a bad field) print ONE line ``error: ...`` naming the flag, file or field and
  what to do, exit 2, before any output is written.

This module imports only the standard library (absl lazily), so that help and input errors come back
before the heavy imports of a command (JAX, TensorFlow).
"""

import difflib
import os
import re
import runpy
import sys

COMMANDS = {
    "generate": "study.commands.generate",
    "preprocess": "data_pipeline.build_dataset",
    "train": "study.commands.train",
    "eval": "study.commands.evaluate",
    "compare": "study.eval.compare",
    "suite": "study.commands.suite",
    "export": "study.commands.export",
    "recommend": "study.serve.recommend",
    "serve": "study.serve.http_service",
    "homework": "study.commands.homework",
    "bandits": "study.commands.bandit_protocol",
    "kt": "study.commands.kt_table",
    "gnn_rl": "study.commands.gnn_rl_protocol",
}


HELP_ARGS = ("-h", "-?", "--help", "-help", "--helpshort", "-helpshort", "--helpfull", "-helpfull")
USAGE_EXIT = 2  # exit status of a flag or input error (absl's own is 1)


class InputError(ValueError):
    """A command's input is wrong; the message says what, where (flag, file, line, field) and what to do.

    :func:`run` turns it into one ``error: ...`` line on stderr and exit status 2."""


def fail(message: str) -> None:
    """Prints ``error: <message>`` as one line on stderr and exits with status 2."""
    print("error: " + " ".join(str(message).split()), file=sys.stderr)
    sys.exit(USAGE_EXIT)


def _own_flag_modules(flag_values) -> list:
    """Names of the modules whose flags a command defines (its own and study's shared ones), in order."""
    main_file = getattr(sys.modules.get("__main__"), "__file__", None) or ""
    own = []
    for module in flag_values.flags_by_module_dict():
        if module.startswith(("study", "data_pipeline", "__main__")) or module in (sys.argv[0], main_file):
            own.append(module)
    return own


def command_help(flag_values=None) -> str:
    """The running command's description (its module docstring) and its flags, as ``--help`` prints them."""
    from absl import flags

    flag_values = flag_values or flags.FLAGS
    doc = (getattr(sys.modules.get("__main__"), "__doc__", None) or "").strip()
    lines = [doc, "", "flags:"] if doc else ["flags:"]
    for module in _own_flag_modules(flag_values):
        _, _, body = flag_values.module_help(module).strip("\n").partition("\n")  # drop the module name line
        lines.append(body)
    if "config" in flag_values:
        lines += ["", "Any config field is a flag too: --config.<field>=value (e.g. --config.model.emb_dim=64, "
                      "--config.data_dir=...); the fields are documented in configs/common.py."]
    return "\n".join(lines).rstrip() + "\n"


def _config_file(argv) -> str:
    for arg in argv:
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return "the config file"


def flag_error_message(error, argv, flag_values) -> str:
    """A one-line, actionable message for an absl flag parsing ``error``."""
    from absl import flags

    text = str(error)
    if isinstance(error, flags.UnrecognizedFlagError):
        name = error.flagname
        close = difflib.get_close_matches(name, list(flag_values), n=1, cutoff=0.6)
        hint = f" (did you mean --{close[0]}?)" if close else ""
        if name.startswith("config."):
            return (f"unknown config field --{name}: {_config_file(argv)} has no field "
                    f"{name.split('.', 1)[1]!r}{hint}; the fields are documented in configs/common.py")
        return f"unknown flag --{name}{hint}; `--help` lists the flags"
    match = "must have a value other than None"
    if match in text:
        name = text.split("=", 1)[0].replace("flag --", "").strip()
        helptext = flag_values[name].help if name in flag_values else ""
        return f"--{name} is required ({helptext}); `--help` lists the flags"
    if "Traceback" in text:  # a config file that failed to load: keep its first line and the exception
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        text = f"{lines[0]} {lines[-1]}"
    return text


def config_field_message(error, options, argv) -> str:
    """The message for a ``--config.<path>=`` override whose path the config does not have."""
    text = str(error.args[0]) if error.args else str(error)
    key = re.search(r"'\\*'?([\w-]+)", text)
    key = key.group(1) if key else text
    close = re.search(r'Did you mean "([\w-]+)"', text)
    hint = f" (did you mean {close.group(1)!r}?)" if close else ""
    overrides = [arg[2:].split("=", 1)[0] for arg in options if arg.startswith("--config.")]
    named = [name for name in overrides if key in name.split(".")] or overrides
    flag = f"--{named[0]}" if named else "a --config.<field> flag"
    return (f"unknown config field {flag}: {_config_file(argv)} has no field {key!r}{hint}; "
            "the fields are documented in configs/common.py")


def exit_if_help(argv: list, flag_values) -> None:
    """When ``argv`` asks for help (before any ``--``): prints :func:`command_help`, exits 0."""
    options = argv[1 : argv.index("--")] if "--" in argv else argv[1:]
    if any(arg in HELP_ARGS for arg in options):
        flag_values.mark_as_parsed()
        sys.stdout.write(command_help(flag_values))
        sys.exit(0)


def parse_flags(argv: list, flag_values=None) -> list:
    """absl ``flags_parser``: help -> print, exit 0; a flag error or a stray argument -> ``error:``, exit 2.

    Returns ``argv`` with the flags removed (``[program]``).
    """
    from absl import flags

    flag_values = flag_values or flags.FLAGS
    options = argv[1 : argv.index("--")] if "--" in argv else argv[1:]
    exit_if_help(argv, flag_values)
    try:
        rest = flag_values(argv)
    except flags.Error as error:
        fail(flag_error_message(error, argv, flag_values))
    except (KeyError, AttributeError) as error:  # ml_collections: --config.<path> naming a field that is not there
        fail(config_field_message(error, options, argv))
    if len(rest) > 1:
        fail(f"unexpected argument(s) {' '.join(rest[1:])}: every option is a flag --name=value; "
             "`--help` lists them")
    return rest


def run(main) -> None:
    """``absl.app.run(main)`` with :func:`parse_flags` and :class:`InputError` -> ``error: ...``, exit 2."""
    from absl import app

    def checked_main(argv):
        try:
            return main(argv)
        except InputError as error:
            fail(str(error))

    app.run(checked_main, flags_parser=parse_flags)


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
    if not any(arg.startswith(("-v", "--verbosity")) for arg in sys.argv[1:]):
        sys.argv.append("--verbosity=-1")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    runpy.run_module(COMMANDS[command], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
