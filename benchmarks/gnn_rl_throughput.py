"""GNN-RL throughput on this machine: simulator episodes per second and pre-training updates per second.

    python benchmarks/gnn_rl_throughput.py [--students=4096] [--collects=3] [--output=...]

* Simulator: ``study.sims.document_students.rollout`` of ``--students`` new students on ``intro_to_ml``
  (11 steps, random recommendations) and on the longest sequential course (Statistics, 44 steps), one jitted
  call, vmapped over students; best of ``--repeats`` timed calls after a compile call.
* Pre-training: the task's update (one collect of the policy on 8 of the 14 sequential courses, then its
  optimizer steps) of ``configs/gnn_rl.py:pretrain``, jitted, ``--collects`` timed calls after a compiling
  one; reports collects/s, optimizer steps/s and decisions collected/s (padded steps of short courses
  included). ``--override`` fields (``model.updates_per_collect=2``) scale the run to the CPU.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from benchmarks import results_io  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("students", 4096, "students per simulator call")
flags.DEFINE_integer("repeats", 3, "timed simulator calls (best kept)")
flags.DEFINE_integer("collects", 3, "timed pre-training updates (after one compiling update)")
flags.DEFINE_list("override", [], "pre-training config fields, field=JSON value")
flags.DEFINE_bool("pretraining", True, "also time pre-training updates (minutes on a 2-core CPU)")
results_io.define_output_flag("gnn_rl_throughput")


def simulator(course_folder: str) -> dict:
    import jax

    from study.sims import course_corpora as cc
    from study.sims import document_students as ds

    course = cc.load_course(os.path.join(cc.SHARED_CORPORA, course_folder))
    arrays = cc.padded(course, cc.common_dims([course]))
    run = jax.jit(lambda key: ds.rollout(arrays, ds.uniform_policy, key, FLAGS.students, course.episode_length,
                                         "uniform")["rewards"].sum(0).mean())
    jax.block_until_ready(run(jax.random.key(0)))
    best = float("inf")
    for repeat in range(FLAGS.repeats):
        start = time.perf_counter()
        jax.block_until_ready(run(jax.random.key(repeat + 1)))
        best = min(best, time.perf_counter() - start)
    return {"course": course.name, "students": FLAGS.students, "steps": course.episode_length,
            "seconds": best, "episodes_per_second": FLAGS.students / best,
            "decisions_per_second": FLAGS.students * course.episode_length / best}


def pretraining() -> dict:
    import jax

    from configs import gnn_rl
    from study import tasks

    config = gnn_rl.get_config("pretrain")
    config.update_from_flattened_dict({k: json.loads(v) for k, v in (o.split("=", 1) for o in FLAGS.override)})
    task = tasks.build_task(config)
    update = jax.jit(task.update)
    state = task.init_state(jax.random.key(0))
    start = time.perf_counter()
    state, metrics = jax.block_until_ready(update(state, {}, jax.random.key(1)))  # compiles
    first = time.perf_counter() - start
    start = time.perf_counter()
    for collect in range(FLAGS.collects):
        state, metrics = update(state, {}, jax.random.key(2 + collect))
    jax.block_until_ready(state)
    per_collect = (time.perf_counter() - start) / FLAGS.collects
    model = config.model
    decisions = model.graphs_per_collect * model.students_per_collect * task.horizon
    return {"seconds_per_collect": per_collect, "collects_per_second": 1.0 / per_collect,
            "optimizer_steps_per_second": model.updates_per_collect / per_collect,
            "decisions_collected_per_second": decisions / per_collect, "decisions_per_collect": decisions,
            "optimizer_steps_per_collect": model.updates_per_collect, "first_update_seconds": first,
            "config": {k: model[k] for k in ("graphs_per_collect", "students_per_collect", "updates_per_collect",
                                             "minibatch_size", "hidden", "heads")}}


def main(argv):
    del argv
    results = {"simulator": [simulator(course) for course in
                             ("non_linear/hand_made/intro_to_ml", "linear/new_corpora/Statistics")]}
    if FLAGS.pretraining:
        results["pretraining"] = pretraining()
    results_io.write_results(FLAGS.output, results)


if __name__ == "__main__":
    app.run(main)
