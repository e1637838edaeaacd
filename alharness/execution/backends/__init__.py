"""Where campaigns run: ``local`` (in this process) or ``ray`` (Ray tasks).

Only ``backends/ray.py`` imports Ray, and only when that backend is asked for.
"""

from __future__ import annotations

from alharness.errors import ConfigError

NAMES = ("local", "ray")


def make_backend(name: str, *, address: str | None = None, num_cpus: int | None = None, retries: int = 2):
    """The backend called ``name``; ``address``, ``num_cpus`` and ``retries`` are Ray's (the local one has none)."""
    if name == "local":
        from alharness.execution.backends.local import LocalBackend

        return LocalBackend()
    if name == "ray":
        from alharness.execution.backends.ray import RayBackend

        return RayBackend(address, num_cpus, retries=retries)
    raise ConfigError(f"unknown backend {name!r}; known: {', '.join(NAMES)}")
