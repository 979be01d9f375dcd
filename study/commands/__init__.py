"""The command-line entry points that compose tasks, the loop, evaluators and export (``study CMD``)."""
