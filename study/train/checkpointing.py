"""Checkpoints of a training run: ``orbax.checkpoint.CheckpointManager`` behind three calls.

A checkpoint of step ``s`` holds

* ``state``: the train state pytree (parameters, optimizer state, step, RNG key data), saved sharded
  (every process writes its own shards) and restored onto the shardings the caller asks for;
* ``progress``: JSON ``{"step", "batches_consumed", "seed"}``, the data position from which the input
  pipeline resumes at the same batch.

Orbax writes a checkpoint into a temporary directory and renames it only when complete (atomic
finalize), so a run killed while saving leaves a temporary directory that :meth:`latest_step` and
:meth:`restore` never pick up (it is removed on the next start). A finished checkpoint damaged later
(truncated file, garbage metadata) is skipped by :meth:`restore`, which says which step it skipped and why
and falls back to the newest intact one; the damaged folder is left in place for inspection.
"""

import os
import sys
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """Periodic + final checkpoints of one run directory with bounded retention.

    Usage::

        ckpt = Checkpointer(workdir + "/checkpoints", every_steps=500, max_to_keep=3)
        if ckpt.latest_step() is not None:
            state, progress = ckpt.restore(abstract_state)
        ...
        ckpt.maybe_save(step, state, progress)     # saves when step % every_steps == 0
        ckpt.save(step, state, progress, force=True)  # final
        ckpt.close()
    """

    def __init__(self, directory: str, every_steps: int, max_to_keep: int | None = 3, async_save: bool = True,
                 create: bool = True):
        self.every_steps = max(int(every_steps), 1)
        if "://" not in directory:  # orbax needs absolute local paths; gs:// and other URLs pass through
            directory = os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            save_interval_steps=1,  # the interval is decided by maybe_save
            create=create,
            cleanup_tmp_directories=True,
            enable_async_checkpointing=async_save,
        )
        self.manager = ocp.CheckpointManager(
            directory,
            item_names=("state", "progress"),
            options=options,
        )

    def latest_step(self) -> int | None:
        """Step of the newest complete checkpoint, or None."""
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(self, step: int, state: Any, progress: dict, force: bool = False) -> bool:
        """Saves ``state`` and ``progress`` as step ``step`` (asynchronously; returns whether saved)."""
        if step in self.manager.all_steps():
            return False
        return self.manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), progress=ocp.args.JsonSave(progress)),
            force=force,
        )

    def maybe_save(self, step: int, state: Any, progress: dict) -> bool:
        """Saves when ``step`` is a multiple of ``every_steps``."""
        if step % self.every_steps:
            return False
        return self.save(step, state, progress)

    def restore(self, abstract_state: Any, step: int | None = None, log=None) -> tuple[Any, dict]:
        """(state, progress) of ``step``, laid out as ``abstract_state``: a pytree of
        ``jax.ShapeDtypeStruct`` with ``sharding`` set (see :func:`abstract_with_shardings`), or None to
        read the saved tree as it is (NumPy arrays in nested dicts).

        Without ``step``: the newest checkpoint that restores; each damaged newer one is reported through
        ``log(message)`` (default: stderr) with the error, and left on disk.
        """
        if step is not None:
            return self._restore_step(abstract_state, step)
        steps = sorted(self.manager.all_steps(), reverse=True)
        if not steps:
            raise FileNotFoundError(f"no finished checkpoint in {self.manager.directory}")
        failures = []
        for candidate in steps:
            try:
                return self._restore_step(abstract_state, candidate)
            except Exception as error:  # orbax raises many kinds for damaged files
                reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]
                failures.append(f"step {candidate} ({reason})")
                message = (f"checkpoint step {candidate} in {self.manager.directory} cannot be restored and is "
                           f"skipped (left on disk): {reason}")
                (log or _stderr)(message)
        raise RuntimeError(f"no checkpoint in {self.manager.directory} can be restored: " + "; ".join(failures))

    def _restore_step(self, abstract_state: Any, step: int) -> tuple[Any, dict]:
        state_args = (ocp.args.StandardRestore(abstract_state) if abstract_state is not None
                      else ocp.args.StandardRestore())
        restored = self.manager.restore(
            step, args=ocp.args.Composite(state=state_args, progress=ocp.args.JsonRestore()))
        return restored["state"], dict(restored["progress"])

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def abstract_with_shardings(shapes: Any, shardings: Any) -> Any:
    """``jax.ShapeDtypeStruct`` leaves (shape, dtype of ``shapes``) carrying ``shardings``."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), shapes, shardings)
