"""Shared by the training-throughput benchmarks: time the training loop's jitted step on one fixed batch."""

import time

VOCAB_SIZE = 2003  # 2000 items + PAD, OOV, SEP: the benchmarks' model size without a dataset


def define_flags(default_steps: int) -> None:
    """``--batch_size`` (rows per step, default 64) and ``--steps`` (timed steps), shared by the benchmarks."""
    from absl import flags

    flags.DEFINE_integer("batch_size", 64, "rows per step")
    flags.DEFINE_integer("steps", default_steps, "timed steps (after 2 warm-up steps)")


def summary(timing: dict, batch_size: int, steps: int) -> dict:
    """The JSON fields every training-throughput result has, from :func:`time_train_steps`'s ``timing``."""
    return {
        "timed_steps": steps,
        "steps_per_second": timing["steps_per_second"],
        "rows_per_second": timing["steps_per_second"] * batch_size,
        "compile_seconds": timing["compile_seconds"],
        "xla_cost_analysis_flops_per_step": timing["xla_flops"],
        "final_loss": timing["final_loss"],
    }


def time_train_steps(config, batch: dict, steps: int) -> dict:
    """Times exactly the update ``study.train.loop.train`` runs for ``config`` (a next-item config whose
    ``model.vocab_size`` is set, no ``data_dir`` needed) on ``batch`` (device features, ``[B, L]``).

    The task comes from ``study.tasks.build_task`` (mesh of ``config.mesh_shape``); the state, its shardings
    and the jitted, state-donating step from ``loop.Program`` / ``loop.create_state`` / ``loop.jit_step``,
    run under ``loop.mesh_context`` as the loop runs them. Compiles, runs 2 warm-up steps, then times
    ``steps`` steps.

    Returns ``{"steps_per_second", "compile_seconds", "xla_flops", "final_loss", "task"}`` (``xla_flops``:
    XLA's ``cost_analysis`` FLOPs of one step, NaN when unavailable; ``task``: the built task, whose
    ``config.model`` and ``model`` describe what was timed).
    """
    import jax
    import numpy as np

    from study.tasks import build_task
    from study.train import loop, sharding

    task = build_task(config)
    config, mesh = task.config, task.mesh
    rules = loop.axis_rules(config)
    program = loop.Program(task, config)
    state, state_shardings = loop.create_state(program, mesh, rules, config.seed)
    step = loop.jit_step(program.step, mesh, state_shardings, sharding.batch_shardings(batch, mesh))
    global_batch = sharding.to_global_batch(batch, mesh)
    _, run_key = jax.random.split(jax.random.key(config.seed))
    rng = np.asarray(jax.random.key_data(jax.random.fold_in(run_key, 0)))  # the loop's key of update 0
    with loop.mesh_context(mesh, rules, config.get("activation_constraints", False)):
        compile_start = time.perf_counter()
        compiled = step.lower(state, global_batch, rng).compile()  # run below: one compilation
        compile_seconds = time.perf_counter() - compile_start
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        xla_flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
        for _ in range(2):
            state, metrics = compiled(state, global_batch, rng)
        jax.block_until_ready(state)
        start = time.perf_counter()
        for _ in range(steps):
            state, metrics = compiled(state, global_batch, rng)
        jax.block_until_ready(state)
        elapsed = time.perf_counter() - start
    return {"steps_per_second": steps / elapsed, "compile_seconds": compile_seconds, "xla_flops": xla_flops,
            "final_loss": float(metrics["loss"]), "task": task}
