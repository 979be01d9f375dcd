"""Shared by the training-throughput benchmarks: time the trainer's jitted step on one fixed batch."""

import time


def time_train_steps(config, model, loss_fn, batch: dict, steps: int) -> dict:
    """Compiles ``study.train.trainer``'s train step for ``model`` / ``loss_fn`` on ``batch`` (device features,
    ``[B, L]``) over all local devices, runs 2 warm-up steps, then times ``steps`` steps.

    Returns ``{"steps_per_second", "compile_seconds", "xla_flops", "final_loss"}`` (``xla_flops``: XLA's
    ``cost_analysis`` FLOPs of one step, NaN when unavailable).
    """
    import jax
    import numpy as np

    from study.train import schedules, sharding, trainer

    tx = schedules.make_optimizer(config)
    mesh = sharding.make_mesh({"data": -1, "model": 1})
    state, shardings = trainer.create_train_state(model, tx, mesh, {k: v[:2] for k, v in batch.items()}, 0)
    step = trainer.jit_train_step(
        trainer.make_train_step(model, loss_fn, tx, schedules.make_schedule(config)),
        mesh, shardings, sharding.batch_shardings(batch, mesh))
    global_batch = sharding.to_global_batch(batch, mesh)
    rng = np.asarray(jax.random.key_data(jax.random.key(0)))
    compile_start = time.perf_counter()
    cost = step.lower(state, global_batch, rng).compile().cost_analysis()
    compile_seconds = time.perf_counter() - compile_start
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    xla_flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
    for _ in range(2):
        state, metrics = step(state, global_batch, rng)
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = step(state, global_batch, rng)
    jax.block_until_ready(state)
    return {"steps_per_second": steps / (time.perf_counter() - start), "compile_seconds": compile_seconds,
            "xla_flops": xla_flops, "final_loss": float(metrics["loss"])}
