"""`study homework`: Smart Homework picks for students from a fitted IRT run (``study.serve.smart_homework``).

    python -m study.commands.homework --config=configs/irt.py:statics_2pl --workdir=runs/irt_2pl \\
        --students=0,12 [--top_k=10] [--target=0.7] [--weights=closeness=1,unit=0.5] [--factors=factors.json] \\
        [--output=homework.json]

Restores the run's posterior, predicts every question for each student at the posterior means, removes the
questions the student answered anywhere in the run's data and ranks the rest (closeness of the predicted
probability to ``--target``, plus the extra ``--factors``: a JSON file ``{name: [value per question]}``
weighted by ``--weights``). Prints (or writes to ``--output``) ``{student: [{question, probability, score}]}``.
"""

import json
import os

from absl import flags

from study import cli
from study.commands.flags import check_checkpoint, check_config_data, define_config_and_workdir

FLAGS = flags.FLAGS


def parse_weights(text: list) -> dict:
    weights = {}
    for item in text or ():
        name, sep, value = item.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise cli.InputError(f"--weights: {item!r} is not name=number (e.g. --weights=closeness=1,unit=0.5)")
    return weights


def read_factors(path: str | None) -> dict:
    if not path:
        return {}
    if not os.path.isfile(path):
        raise cli.InputError(f"--factors={path}: no such file")
    try:
        with open(path, encoding="utf-8") as handle:
            factors = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise cli.InputError(f"--factors={path}: not JSON ({error})") from None
    if not isinstance(factors, dict) or not all(isinstance(v, list) for v in factors.values()):
        raise cli.InputError(f"--factors={path}: must be a JSON object {{name: [one number per question]}}")
    return factors


def homework(config, workdir: str, students, **ranking) -> dict:
    """``{student: picks}`` from the run in ``workdir`` (its latest checkpoint)."""
    import jax

    from study.serve import smart_homework
    from study.tasks import build_task
    from study.train import loop

    task = build_task(config)
    if task.family != "irt":
        raise cli.InputError(f"--config: the {task.family} family has no posterior to pick homework from; "
                             "use an IRT config (configs/irt.py)")
    state = loop.restore_state(task, task.config, workdir, log=lambda message: None)
    params = jax.device_get(state.params)
    picks = {}
    for student in students:
        if not 0 <= student < task.dims.num_students:
            raise cli.InputError(f"--students: {student} is out of range 0..{task.dims.num_students - 1}")
        picks[str(student)] = smart_homework.homework_for_student(
            params, task.dims, student, task.attempted(student), task.covariates, **ranking)
    return picks


def main(argv) -> None:
    del argv
    check_config_data(FLAGS.config)
    check_checkpoint(FLAGS.workdir)
    if FLAGS.top_k < 1:
        raise cli.InputError(f"--top_k={FLAGS.top_k}: must be >= 1")
    if not 0.0 <= FLAGS.target <= 1.0:
        raise cli.InputError(f"--target={FLAGS.target}: a probability in [0, 1]")
    try:
        students = [int(s) for s in FLAGS.students]
    except ValueError:
        raise cli.InputError(f"--students={','.join(FLAGS.students)}: student indices, e.g. --students=0,12") from None
    weights, factors = parse_weights(FLAGS.weights), read_factors(FLAGS.factors)
    unknown = sorted(set(weights) - set(factors) - {"closeness"})
    if unknown:
        raise cli.InputError(f"--weights names {unknown}, which --factors does not give")
    picks = homework(FLAGS.config, FLAGS.workdir, students, target=FLAGS.target, weights=weights, factors=factors,
                     top_k=FLAGS.top_k)
    text = json.dumps(picks, indent=1)
    if FLAGS.output:
        with open(FLAGS.output, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
        print(f"homework for {len(picks)} students written to {FLAGS.output}")
    else:
        print(text)


if __name__ == "__main__":
    define_config_and_workdir("run directory of a fitted IRT run (holds checkpoints/)")
    flags.DEFINE_list("students", None, "student indices (0-based, as in the run's data)")
    flags.DEFINE_integer("top_k", 10, "questions per student")
    flags.DEFINE_float("target", 0.7, "the predicted probability of a correct answer to aim for")
    flags.DEFINE_list("weights", [], "factor weights name=value; closeness (default 1) and the --factors names")
    flags.DEFINE_string("factors", None, "JSON {name: [value per question]} of extra ranking factors")
    flags.DEFINE_string("output", None, "write the picks here (default: print them)")
    flags.mark_flags_as_required(["students"])
    cli.run(main)
