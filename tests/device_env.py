"""Environment of a test subprocess that needs a given number of (simulated) CPU devices."""

import os


def cpu_devices_env(count: int, **extra: str) -> dict:
    """``os.environ`` plus ``JAX_PLATFORMS=cpu`` and ``count`` host devices; XLA flags already set (e.g. the test
    command's) are kept."""
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={count}".strip()
    return dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=flags, **extra)
