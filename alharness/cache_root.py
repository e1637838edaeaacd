"""Where alharness keeps what it computes once per machine: dataset caches,
references, superpixels, the plugin listing (``$ALHARNESS_CACHE``, default
``~/.cache/alharness/datasets``). A module of its own, imported by the
registry and by the layers above it alike, so that every cache agrees on
one root."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "ALHARNESS_CACHE"


def cache_root() -> Path:
    """The cache root: ``$ALHARNESS_CACHE`` (``~`` expanded), else ``~/.cache/alharness/datasets``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "alharness" / "datasets"
