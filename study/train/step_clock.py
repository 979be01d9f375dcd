"""The clock of logged training rates: seconds spent on training steps only."""

import contextlib
import time

import jax


class StepClock:
    """Wall seconds of training steps in the current logging window.

    Left out: the first step of a process (it compiles; its seconds are logged as ``first_step_seconds`` in
    its window) and time spent in evaluation and checkpointing, so that steps/s is the rate of the step.
    """

    def __init__(self):
        self.untimed_steps = 0  # steps of this window that are not in ``seconds()``
        self.restart()

    def restart(self):
        self._start, self._excluded = time.perf_counter(), 0.0
        self.untimed_steps = 0

    def first_step_done(self, outputs) -> float:
        """Waits for the first step; returns its seconds and starts timing the next step."""
        jax.block_until_ready(outputs)
        now = time.perf_counter()
        took = now - self._start - self._excluded
        self._start, self._excluded, self.untimed_steps = now, 0.0, self.untimed_steps + 1
        self.first_step_seconds = took
        return took

    @contextlib.contextmanager
    def paused(self, state, due: bool):
        """Excludes the enclosed work when ``due`` (an evaluation or checkpoint runs in it). The steps
        still running on the device finish first and count as step time; when nothing is due the loop
        does not wait for the device, so dispatch stays asynchronous."""
        if not due:
            yield
            return
        jax.block_until_ready(state)
        start = time.perf_counter()
        yield
        self._excluded += time.perf_counter() - start

    def seconds(self) -> float:
        return time.perf_counter() - self._start - self._excluded
