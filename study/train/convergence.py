"""A stopping rule on the training loss itself: stop when the loss has stopped moving (``config.convergence``).

An "iteration" is one logging window of the loop (``config.log_every`` updates); its loss ``L_n`` is the mean
training loss over the window. With ``d_0 = |L_1 - L_0|`` the change between the first two windows, the run
has converged at window ``n >= w`` when the mean change over the last ``w`` windows is small::

    |L_n - L_{n-w}| / w  <  fraction * d_0

(``w = config.convergence.window``, 5 by default; ``fraction`` 0.001 or 0.0005 as in Shi & Athey 2021; 0 turns
the rule off). The mean of the signed changes is used, so mini-batch noise that goes up and down cancels.
The rule's state is saved in every checkpoint: a resumed run stops where the uninterrupted one stops when
``checkpoint_every`` is a multiple of ``log_every`` (the windows then line up).

Usage::

    rule = ConvergenceRule(config.get("convergence"))
    for window_loss in losses:
        if rule.observe(step, window_loss):
            break
"""


class ConvergenceRule:
    """Tracks the window losses of one run (see the module docstring)."""

    def __init__(self, settings=None):
        settings = settings or {}
        self.fraction = float(settings.get("fraction", 0.0) or 0.0)
        self.window = int(settings.get("window", 5) or 5)
        if self.fraction < 0 or self.window < 1:
            raise ValueError(f"convergence.fraction must be >= 0 and convergence.window >= 1, got "
                             f"{self.fraction} and {self.window}")
        self.enabled = self.fraction > 0
        self.first_change = None  # |L_1 - L_0|
        self.recent = []  # the last window + 1 window losses
        self.first = None
        self.converged_at = None

    def observe(self, step: int, loss: float) -> bool:
        """Records the loss of the window ending at ``step``; True once converged."""
        if not self.enabled or self.converged_at is not None:
            return self.converged_at is not None
        loss = float(loss)
        if self.first is None:
            self.first = loss
        elif self.first_change is None:
            self.first_change = abs(loss - self.first)
        self.recent = (self.recent + [loss])[-(self.window + 1):]
        if self.first_change is not None and len(self.recent) == self.window + 1:
            mean_change = abs(self.recent[-1] - self.recent[0]) / self.window
            if mean_change < self.fraction * self.first_change:
                self.converged_at = step
        return self.converged_at is not None

    @property
    def converged(self) -> bool:
        return self.converged_at is not None

    def state(self) -> dict:
        return {"fraction": self.fraction, "window": self.window, "first": self.first,
                "first_change": self.first_change, "recent": list(self.recent), "converged_at": self.converged_at}

    def load(self, saved) -> None:
        if saved and saved.get("fraction") == self.fraction and saved.get("window") == self.window:
            self.first, self.first_change = saved["first"], saved["first_change"]
            self.recent, self.converged_at = list(saved["recent"]), saved["converged_at"]
