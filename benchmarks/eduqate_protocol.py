"""Wall time of the full EduQate protocol on this CPU, and the vectorised learner against a per-step Python loop.

    python benchmarks/eduqate_protocol.py [--workdir=runs/eduqate_protocol] [--preset=paper] \\
        [--loop_episodes=4] [--output=benchmarks/results/eduqate_protocol.json]

1. ``study bandits`` (``study.commands.bandit_protocol.protocol``): every policy (EduQate with and without
   replay, WIQL, Threshold Whittle, Myopic, Random, no intervention) x 30 trials x 800 episodes of 50 steps on
   the synthetic, Junyi and OLI students, plus the topic sweep; the wall time of each dataset's runs (compile,
   training, checkpoints, the final evaluation). Runs that finished earlier in ``--workdir`` are resumed, so
   time a fresh folder.
2. The same policy as a straightforward per-step Python loop (``benchmarks/eduqate_python_loop.py``, one trial
   and one step at a time, NumPy) for ``--loop_episodes`` episodes of one student per dataset, in this run:
   episodes per second of both (the vectorised figure counts trial-episodes, 30 x 800 per run, over the run's
   whole wall time, compile included).
"""

import os
import sys
import time

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import results_io  # noqa: E402
from benchmarks.eduqate_python_loop import PythonLoopTrial, numpy_draws  # noqa: E402

flags.DEFINE_string("workdir", os.path.join(REPO, "runs", "eduqate_protocol"), "folder of the protocol's runs")
flags.DEFINE_string("preset", "paper", "configs/eduqate.py preset")
flags.DEFINE_integer("loop_episodes", 4, "episodes of the per-step Python loop per dataset and policy")
flags.DEFINE_list("loop_policies", ["eduqate", "eduqate_no_replay", "wiql"], "policies timed as a Python loop")
results_io.define_output_flag("eduqate_protocol")
FLAGS = flags.FLAGS


def python_loop_rate(config, policy: str, episodes: int) -> float:
    """Episodes per second of the per-step Python loop on the first student of ``config``."""
    import numpy as np

    from study.tasks.curriculum_bandits import student_models

    student = student_models(config.model, config.seed)[0]
    model = config.model
    trial = PythonLoopTrial(model.policy, student.p_learn, student.neighbours, replay=model.replay,
                            alpha=model.alpha, gamma=model.gamma, replay_size=model.replay_size,
                            replay_batch=model.replay_batch)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(episodes):
        trial.episode(numpy_draws(rng, student.num_arms, model.episode_length, model.replay_batch),
                      model.episode_length)
    return episodes / (time.perf_counter() - start)


def main(argv):
    del argv
    from study.commands import bandit_protocol

    start = time.perf_counter()
    report = bandit_protocol.protocol(FLAGS.workdir, FLAGS.preset)
    total = time.perf_counter() - start
    speed = {}
    for dataset, runs in report["seconds_per_run"].items():
        for policy in FLAGS.loop_policies:
            config = bandit_protocol.run_config(FLAGS.preset, dataset, policy)
            trial_episodes = config.model.num_trials * config.model.num_episodes
            vectorised = trial_episodes / runs[policy]
            loop = python_loop_rate(config, policy, FLAGS.loop_episodes)
            speed[f"{dataset}/{policy}"] = {"vectorised_episodes_per_s": vectorised,
                                            "python_loop_episodes_per_s": loop, "speedup": vectorised / loop,
                                            "vectorised_run_s": runs[policy],
                                            "python_loop_estimate_for_the_run_s": trial_episodes / loop}
    results = {"preset": FLAGS.preset, "protocol_wall_s": total, "wall_s_per_dataset": report["seconds"],
               "wall_s_per_run": report["seconds_per_run"], "speed": speed,
               "final_reward": {d: {p: row["final_reward"] for p, row in rows.items()}
                                for d, rows in report["summary"].items()}}
    results_io.write_results(FLAGS.output, results)


if __name__ == "__main__":
    app.run(main)
