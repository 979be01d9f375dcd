"""SR-GNN here and RecBole 1.2.1's SRGNN, side by side on one DIGINETICA split: quality and training speed.

One split (``benchmarks/srgnn_sessions.py``: the paper's preprocessing of the DIGINETICA sample, the last 7 days
as test, the latest 10% of the training sessions as validation) is written for both systems: processed rows
here (one session per row), RecBole atomic files ``.train/.valid/.test.inter`` with one line per
(prefix, next click) case. The cases the two systems test on are checked identical (a digest of every
(session, prefix, target)).

Both train the same model at the same settings: d = 100, one GNN step, CE over every item, U(-0.1, 0.1)
initialisation, Adam at a constant 0.001 with no weight decay (RecBole's trainer and defaults; our
``configs/srgnn.py:default``), the same number of updates per epoch (``--batch_size`` sessions here; RecBole
the same training cases in as many batches), at most ``--max_epochs`` epochs, validation MRR@20 after every
epoch on the validation sessions, early stopping after RecBole's ``stopping_step = --patience - 1``
non-improving epochs (our ``patience``: the same stop), and the test scores of the epoch validation picked.
Differences that remain are the two models' documented ones (``study.models.srgnn``: transitions counted,
gates without biases). Each run is a fresh process pinned to one CPU (``--cpu``; torch with one thread),
seeds interleaved (RecBole then ours for each seed).

Reported per system, over the seeds: P@20 and MRR@20 on the test cases (mean, seed-to-seed standard
deviation, min-max, and a 95% t-interval of the mean over seeds; per seed also a 95% bootstrap interval over
test sessions), the epochs run and the epoch validation picked, training cases per second and per CPU-second,
and the training process's peak resident memory. Training speed is the trainer's own training epochs: RecBole
the time inside ``Trainer._train_epoch`` (its data loader and updates, not validation); ours a second,
timed pass of the same process over exactly as many epochs as RecBole ran for that seed (the loop's jitted
update on the task's input pipeline, after compilation, which is reported separately; no validation or
checkpoints), so both are compared at the same number of epochs.

RecBole is never a dependency of the package: the script creates its own virtual environment (``--venv``,
``pip install recbole==1.2.1 "numpy<2" "pandas<3" torch``) when it is missing, and runs
``benchmarks/srgnn_recbole_run.py`` there.

Usage::

    python benchmarks/srgnn_vs_recbole.py [--seeds=0,1,2,3,4] [--venv=/tmp/recbole-venv] [--output=...]
"""

import hashlib
import json
import os
import subprocess
import sys
import tempfile

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import results_io, srgnn_sessions  # noqa: E402

flags.DEFINE_string("input", os.path.join(REPO, "..", "shared", "data", "sessions_diginetica_sample",
                                          "sample_train-item-views.csv"), "DIGINETICA train-item-views CSV")
flags.DEFINE_list("seeds", ["0", "1", "2", "3", "4"], "training seeds (interleaved)")
flags.DEFINE_string("workdir", None, "run folder (default: a temporary folder, removed at the end)")
flags.DEFINE_string("venv", "/tmp/recbole-venv", "RecBole's virtual environment (created when missing)")
flags.DEFINE_string("torch_requirement", "torch", "pip requirement for torch in that environment")
flags.DEFINE_float("validation_fraction", 0.1, "latest training sessions held out for early stopping")
flags.DEFINE_integer("max_epochs", 30, "most epochs (the official SR-GNN code's 30)")
flags.DEFINE_integer("patience", 11, "stop after this many epochs without a better validation MRR@20")
flags.DEFINE_integer("batch_size", 43, "sessions per update here (430 training sessions: 10 full batches)")
flags.DEFINE_string("cpu", "0", "CPU every training process is pinned to ('' = not pinned)")
flags.DEFINE_enum("child", None, ["ours"], "internal: run one training of ours and write --child_output")
flags.DEFINE_integer("child_seed", 0, "internal")
flags.DEFINE_integer("timed_epochs", 0, "internal: epochs of the timed pass")
flags.DEFINE_string("child_output", None, "internal")
flags.DEFINE_string("child_data_dir", None, "internal: the processed split")
results_io.define_output_flag("srgnn_vs_recbole")
FLAGS = flags.FLAGS

RECBOLE = "recbole==1.2.1"
DATASET = "diginetica_sample"
T_975_DF = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


# ---------------------------------------------------------------- the split, written for both systems


def case_digest(cases) -> str:
    """sha256 of the sorted ``(session, prefix, target)`` cases, tokens as strings."""
    lines = sorted(f"{c[0]}|{' '.join(map(str, c[1]))}|{c[2]}" for c in cases)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def split_cases(sessions):
    """Every (session id, prefix, next click) case of ``sessions`` (token ids)."""
    return [(s.session_id, s.items[:t], s.items[t]) for s in sessions for t in range(1, len(s.items))]


def write_recbole_files(splits, folder: str) -> dict:
    """``<folder>/<DATASET>/<DATASET>.{train,valid,test}.inter``; returns ``{split: cases}``."""
    os.makedirs(os.path.join(folder, DATASET), exist_ok=True)
    written = {}
    for name, sessions in (("train", splits.train), ("valid", splits.validation), ("test", splits.test)):
        cases = split_cases(sessions)
        with open(os.path.join(folder, DATASET, f"{DATASET}.{name}.inter"), "w") as handle:
            handle.write("session_id:token\titem_id_list:token_seq\titem_id:token\n")
            for session, prefix, target in cases:
                handle.write(f"{session}\t{' '.join(map(str, prefix))}\t{target}\n")
        written[name] = len(cases)
    return written


def ensure_recbole(venv: str) -> str:
    """The Python of ``venv`` with RecBole importable; creates the environment when it is not there."""
    python = os.path.join(venv, "bin", "python")
    check = [python, "-c", "import recbole, torch, numpy; assert recbole.__version__ == '1.2.1'"]
    if os.path.exists(python) and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"creating RecBole's environment in {venv} (pip install {RECBOLE} ...)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet", RECBOLE, "numpy<2", "pandas<3",
                    FLAGS.torch_requirement], check=True)
    subprocess.run(check, check=True)
    return python


def pinned():
    """``preexec_fn`` pinning a child process to ``--cpu`` (None when not pinned)."""
    if not FLAGS.cpu:
        return None
    cpus = {int(c) for c in FLAGS.cpu.split(",")}
    return lambda: os.sched_setaffinity(0, cpus)


def single_thread_env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
                        "intra_op_parallelism_threads=1").strip()
    return env


def run_child(command, log_path):
    """Runs ``command`` pinned and single-threaded in the folder of ``log_path`` (RecBole writes logs there)."""
    with open(log_path, "w") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=pinned(),
                              env=single_thread_env(), cwd=os.path.dirname(log_path))
    if done.returncode:
        with open(log_path) as log:
            tail = log.read()[-3000:]
        raise RuntimeError(f"{' '.join(command[:3])} ... failed ({done.returncode}); log {log_path}:\n{tail}")


# ---------------------------------------------------------------- ours, in a child process


def ours_child():
    """Trains ours with early stopping, ranks the test cases, then times ``--timed_epochs`` epochs."""
    import resource

    workdir = os.path.dirname(os.path.abspath(FLAGS.child_output))
    splits, _, row_length = srgnn_sessions.load_split(FLAGS.input, FLAGS.validation_fraction)
    config, epoch_steps = srgnn_sessions.reference_config(
        splits, FLAGS.child_data_dir, row_length, batch_size=FLAGS.batch_size,
        max_epochs=FLAGS.max_epochs, patience=FLAGS.patience, seed=FLAGS.child_seed)
    result, ranks, sessions = srgnn_sessions.train_and_rank_test(config, os.path.join(workdir, "run"))
    test_cases = split_cases(splits.test)  # case_ranks' order: rows in file order, positions ascending
    assert len(test_cases) == len(ranks)
    session_ids = [s.session_id for s in splits.test]
    timing = time_training(config, FLAGS.timed_epochs * epoch_steps)
    stopping = result["early_stopping"]
    output = {
        "cases": [{"session": str(session_ids[int(row)]), "prefix": [str(i) for i in case[1]],
                   "target": str(case[2]), "rank": int(rank)}
                  for case, rank, row in zip(test_cases, ranks, sessions)],
        "epochs_run": result["step"] // epoch_steps, "epoch_picked": stopping["best_step"] // epoch_steps,
        "validation_best": stopping["best_value"],
        "budgets": [config.model.click_budget, config.model.node_budget],
        "batch_size": config.batch_size, "epoch_steps": epoch_steps, **timing,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "final_train_loss": result["train"].get("loss"),
    }
    with open(FLAGS.child_output, "w") as handle:
        json.dump(output, handle)


def time_training(config, steps: int) -> dict:
    """Times ``steps`` updates of the loop's jitted step on the task's own training batches (after
    compiling it): ``{"train_wall_seconds", "train_cpu_seconds", "timed_cases", "compile_seconds"}``."""
    import time

    import jax
    import numpy as np

    from study.data import reserved_ids
    from study.tasks import build_task
    from study.train import loop, sharding

    task = build_task(config)
    config, mesh = task.config, task.mesh
    rules = loop.axis_rules(config)
    program = loop.Program(task, config)
    state, state_shardings = loop.create_state(program, mesh, rules, config.seed)
    example = task.example_batch(config.batch_size)
    step = loop.jit_step(program.step, mesh, state_shardings, sharding.batch_shardings(example, mesh))
    run_key = jax.random.key(config.seed)
    with loop.mesh_context(mesh, rules, config.get("activation_constraints", False)):
        start = time.perf_counter()
        rng = np.asarray(jax.random.key_data(run_key))
        compiled = step.lower(state, sharding.to_global_batch(example, mesh), rng).compile()
        compile_seconds = time.perf_counter() - start
        batches = task.train_batches(0)
        cases, waiting = 0, 0.0
        wall, cpu = time.perf_counter(), time.process_time()
        for index in range(steps):
            fetch = time.perf_counter()
            local = next(batches)
            waiting += time.perf_counter() - fetch
            cases += int(np.sum((local["positions"] > 0) & reserved_ids.is_item(local["item_ids"])
                                & (local["row_valid"][:, None] > 0)))
            rng = np.asarray(jax.random.key_data(jax.random.fold_in(run_key, index)))
            state, _ = compiled(state, sharding.to_global_batch(task.device_batch(local), mesh), rng)
        jax.block_until_ready(state)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"train_wall_seconds": wall, "train_cpu_seconds": cpu, "timed_cases": cases,
            "input_wait_seconds": waiting, "timed_epochs": FLAGS.timed_epochs, "compile_seconds": compile_seconds}


# ---------------------------------------------------------------- the comparison


def over_seeds(values) -> dict:
    import numpy as np

    values = np.asarray(values, np.float64)
    n = len(values)
    std = float(values.std(ddof=1)) if n > 1 else 0.0
    half = T_975_DF.get(n - 1, 1.96) * std / np.sqrt(n) if n > 1 else 0.0
    return {"mean": float(values.mean()), "std": std, "min": float(values.min()), "max": float(values.max()),
            "mean_95ci": [float(values.mean() - half), float(values.mean() + half)],
            "per_seed": [float(v) for v in values]}


def summarize(runs: list, test_sessions: dict) -> dict:
    """Per-system figures over seeds from the children's outputs."""
    per_seed = []
    for run in runs:
        ranks = [c["rank"] for c in run["cases"]]
        sessions = [test_sessions[c["session"]] for c in run["cases"]]
        per_seed.append(srgnn_sessions.metrics_with_intervals(ranks, sessions))
    speed = [run["timed_cases"] / run["train_wall_seconds"] for run in runs]
    cpu_speed = [run["timed_cases"] / run["train_cpu_seconds"] for run in runs]
    waiting = [run.get("input_wait_seconds", 0.0) for run in runs]
    update_speed = [run["timed_cases"] / (run["train_wall_seconds"] - wait) for run, wait in zip(runs, waiting)]
    return {
        "P@20": over_seeds([m["P@20"] for m in per_seed]), "MRR@20": over_seeds([m["MRR@20"] for m in per_seed]),
        "per_seed_bootstrap_95ci": [{k: m[k] for k in ("P@20_95ci", "MRR@20_95ci")} for m in per_seed],
        "epochs_run": [run["epochs_run"] for run in runs], "epoch_picked": [run["epoch_picked"] for run in runs],
        "train_cases_per_second": over_seeds(speed), "train_cases_per_cpu_second": over_seeds(cpu_speed),
        "input_wait_seconds": waiting, "train_cases_per_second_without_input_wait": over_seeds(update_speed),
        "timed_epochs": [run["timed_epochs"] for run in runs],
        "peak_rss_mib": over_seeds([run["peak_rss_mib"] for run in runs]),
        "test_cases": per_seed[0]["test_cases"],
    }


def table(results: dict) -> str:
    def cell(stats, digits=1):
        low, high = stats["mean_95ci"]
        return (f"{stats['mean']:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}] "
                f"(seeds {stats['min']:.{digits}f}-{stats['max']:.{digits}f})")

    lines = ["| system | P@20 | MRR@20 | epochs run / picked | train cases/s | cases per CPU-s | peak RSS MiB |",
             "|---|---|---|---|---|---|---|"]
    for name in ("ours", "recbole"):
        r = results[name]
        epochs = ", ".join(f"{a}/{b}" for a, b in zip(r["epochs_run"], r["epoch_picked"]))
        lines.append(f"| {name} | {cell(r['P@20'])} | {cell(r['MRR@20'])} | {epochs} | "
                     f"{cell(r['train_cases_per_second'], 0)} | {cell(r['train_cases_per_cpu_second'], 0)} | "
                     f"{r['peak_rss_mib']['mean']:.0f} |")
    ratio = results["speed_ratio_ours_over_recbole"]
    lines.append(f"\ntraining cases/s, ours / RecBole, per seed (same epochs): "
                 f"{', '.join(f'{v:.2f}' for v in ratio['per_seed'])}; mean {ratio['mean']:.2f}")
    ours = results["ours"]
    waits = ", ".join(f"{w:.1f}" for w in ours["input_wait_seconds"])
    lines.append(f"ours without the time spent waiting for the input pipeline ({waits} s): "
                 f"{cell(ours['train_cases_per_second_without_input_wait'], 0)} cases/s, "
                 f"{results['speed_ratio_without_input_wait']['mean']:.2f}x RecBole's cases/s")
    return "\n".join(lines)


def run(workdir: str) -> dict:
    from data_pipeline import diginetica

    splits, report, row_length = srgnn_sessions.load_split(FLAGS.input, FLAGS.validation_fraction)
    diginetica.write_processed(splits, os.path.join(workdir, "processed"), row_length)
    recbole_cases = write_recbole_files(splits, os.path.join(workdir, "recbole"))
    python = ensure_recbole(FLAGS.venv)
    epoch_steps = len(splits.train) // FLAGS.batch_size
    recbole_batch = -(-recbole_cases["train"] // epoch_steps)  # as many updates per epoch as ours
    expected_digest = case_digest(split_cases(splits.test))
    test_sessions = {str(s.session_id): index for index, s in enumerate(splits.test)}
    runs = {"ours": [], "recbole": []}
    for seed in map(int, FLAGS.seeds):
        folder = os.path.join(workdir, f"seed{seed}")
        os.makedirs(os.path.join(folder, "recbole"), exist_ok=True)
        os.makedirs(os.path.join(folder, "ours"), exist_ok=True)
        out = os.path.join(folder, "recbole", "run.json")
        run_child([python, os.path.join(REPO, "benchmarks", "srgnn_recbole_run.py"),
                   f"--data_path={os.path.join(workdir, 'recbole')}", f"--dataset={DATASET}", f"--seed={seed}",
                   f"--output={out}", f"--epochs={FLAGS.max_epochs}", f"--stopping_step={FLAGS.patience - 1}",
                   f"--batch_size={recbole_batch}", "--embedding_size=100", "--learning_rate=0.001",
                   "--valid_metric=MRR@20"], os.path.join(folder, "recbole", "log.txt"))
        with open(out) as handle:
            recbole = json.load(handle)
        recbole["timed_cases"] = recbole["train_cases"] * recbole["epochs_run"]
        recbole["timed_epochs"] = recbole["epochs_run"]
        out = os.path.join(folder, "ours", "run.json")
        run_child([sys.executable, os.path.abspath(__file__), "--child=ours", f"--child_seed={seed}",
                   f"--child_output={out}", f"--timed_epochs={recbole['epochs_run']}", f"--input={FLAGS.input}",
                   f"--child_data_dir={os.path.join(workdir, 'processed')}",
                   f"--validation_fraction={FLAGS.validation_fraction}", f"--max_epochs={FLAGS.max_epochs}",
                   f"--patience={FLAGS.patience}", f"--batch_size={FLAGS.batch_size}"],
                  os.path.join(folder, "ours", "log.txt"))
        with open(out) as handle:
            ours = json.load(handle)
        for name, result in (("recbole", recbole), ("ours", ours)):
            digest = case_digest([(c["session"], c["prefix"], c["target"]) for c in result["cases"]])
            if digest != expected_digest:
                raise RuntimeError(f"{name} tested other cases than the split's (seed {seed})")
            runs[name].append(result)
        speeds = [r["timed_cases"] / r["train_wall_seconds"] for r in (recbole, ours)]
        print(f"seed {seed}: RecBole {recbole['epochs_run']} epochs, {speeds[0]:.0f} cases/s; "
              f"ours {ours['epochs_run']} epochs, {speeds[1]:.0f} cases/s", flush=True)
    if runs["recbole"][0]["items"] != splits.vocab.vocab_size - 3:
        raise RuntimeError("RecBole ranks a different item set")
    results = {name: summarize(runs[name], test_sessions) for name in runs}
    results["speed_ratio_ours_over_recbole"] = over_seeds([
        (o["timed_cases"] / o["train_wall_seconds"]) / (r["timed_cases"] / r["train_wall_seconds"])
        for o, r in zip(runs["ours"], runs["recbole"])])
    results["speed_ratio_without_input_wait"] = over_seeds([
        (o["timed_cases"] / (o["train_wall_seconds"] - o["input_wait_seconds"]))
        / (r["timed_cases"] / r["train_wall_seconds"]) for o, r in zip(runs["ours"], runs["recbole"])])
    results["table"] = table(results)
    results["setup"] = {
        "dataset": srgnn_sessions.relative_path(FLAGS.input, REPO), "seeds": [int(s) for s in FLAGS.seeds],
        "data": {**splits.stats, "row_length": row_length, "lines_skipped": report.skipped},
        "test_case_digest": expected_digest, "recbole_cases": recbole_cases,
        "max_epochs": FLAGS.max_epochs, "patience_epochs": FLAGS.patience,
        "recbole_stopping_step": FLAGS.patience - 1, "batch_sessions_ours": FLAGS.batch_size,
        "batch_cases_recbole": recbole_batch, "updates_per_epoch": epoch_steps, "cpu_pinned": FLAGS.cpu,
        "recbole": RECBOLE, "torch": runs["recbole"][0]["torch"],
        "ours_budgets": runs["ours"][0]["budgets"],
        "ours_compile_seconds": [run["compile_seconds"] for run in runs["ours"]],
        "command": "python benchmarks/srgnn_vs_recbole.py " + " ".join(sys.argv[1:]),
    }
    return results


def main(argv):
    del argv
    if FLAGS.child == "ours":
        ours_child()
        return
    if FLAGS.workdir:
        os.makedirs(FLAGS.workdir, exist_ok=True)
        results = run(FLAGS.workdir)
    else:
        with tempfile.TemporaryDirectory() as workdir:
            results = run(workdir)
    results_io.write_results(FLAGS.output, results)
    print(results["table"])


if __name__ == "__main__":
    app.run(main)
