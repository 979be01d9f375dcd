"""GNN-RL throughput on this machine: simulator episodes per second and pre-training updates per second.

    python benchmarks/gnn_rl_throughput.py [--students=4096] [--collects=3] [--output=...]

* Simulator: ``study.sims.document_students.rollout`` of ``--students`` new students on ``intro_to_ml``
  (11 steps, random recommendations) and on the longest sequential course (Statistics, 44 steps), one jitted
  call, vmapped over students; best of ``--repeats`` timed calls after a compile call.
* Pre-training: loop updates (one collect of the policy then its optimizer steps) of
  ``configs/gnn_rl.py:pretrain`` on the 14 sequential courses, timed through ``study.train.loop.train``'s
  ``steps_per_second`` after the first (compiling) update; reports collects/s, optimizer steps/s and
  decisions collected/s (padded steps of short courses included). ``--override`` fields (``model.updates_per_collect=2``) scale the run to the CPU.
"""

import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from benchmarks import results_io  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("students", 4096, "students per simulator call")
flags.DEFINE_integer("repeats", 3, "timed simulator calls (best kept)")
flags.DEFINE_integer("collects", 3, "pre-training loop updates (the first compiles and is not timed)")
flags.DEFINE_list("override", [], "pre-training config fields, field=JSON value")
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
    from configs import gnn_rl
    from study import tasks
    from study.train import loop

    config = gnn_rl.get_config("pretrain")
    config.update_from_flattened_dict({k: json.loads(v) for k, v in (o.split("=", 1) for o in FLAGS.override)})
    config.model.num_collects = FLAGS.collects
    config.evals.policy_return.every = -1
    config.log_every = 1
    with tempfile.TemporaryDirectory() as workdir:
        task = tasks.build_task(config)
        start = time.perf_counter()
        loop.train(task, config, workdir)
        total = time.perf_counter() - start
        with open(os.path.join(workdir, "metrics.jsonl")) as handle:
            records = [json.loads(line) for line in handle if '"train"' in line]
    model = config.model
    timed = [r["steps_per_second"] for r in records[1:]]  # the first update compiles
    per_collect = 1.0 / (sum(1.0 / s for s in timed) / len(timed))
    decisions = model.graphs_per_collect * model.students_per_collect * task.horizon
    optimizer_steps = model.updates_per_collect * -(-decisions // model.minibatch_size)
    return {"collects_per_second": per_collect, "optimizer_steps_per_second": per_collect * optimizer_steps,
            "decisions_collected_per_second": per_collect * decisions,
            "decisions_per_collect": decisions, "optimizer_steps_per_collect": optimizer_steps,
            "first_update_seconds": 1.0 / records[0]["steps_per_second"], "wall_seconds": total,
            "config": {k: model[k] for k in ("graphs_per_collect", "students_per_collect", "updates_per_collect",
                                             "minibatch_size", "hidden", "heads")}}


def main(argv):
    del argv
    results = {"simulator": [simulator(results_course) for results_course in
                             ("non_linear/hand_made/intro_to_ml", "linear/new_corpora/Statistics")],
               "pretraining": pretraining()}
    results_io.write_results(FLAGS.output, results)


if __name__ == "__main__":
    app.run(main)
