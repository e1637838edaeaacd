"""Loading a user's local weights file into a freshly built network."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from alharness.errors import ConfigError


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Tensors of a local ``torch.save`` file: a state dict, or one under ``state_dict`` / ``model``."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"learner.weights_path: no file at {str(p)!r}")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file is a configuration problem for the user
        raise ConfigError(f"learner.weights_path: cannot read {str(p)!r} as a torch state dict: {exc}") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(f"learner.weights_path: {str(p)!r} holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_matching(net: nn.Module, state: dict[str, torch.Tensor], path: str) -> dict[str, int]:
    """Copy every tensor whose name and shape match into ``net``.

    Names may be the network's own (``base.…``, ``classification.…``), the
    bare model's, or a timm encoder's (loaded under ``base.encoder.``);
    the prefix that matches most tensors wins. Tensors of another shape
    (e.g. a classifier for another number of classes) are skipped.
    """
    own = net.state_dict()
    best: dict[str, torch.Tensor] = {}
    for prefix in ("", "base.", "base.encoder."):
        cand = {prefix + k: v for k, v in state.items() if own.get(prefix + k) is not None and own[prefix + k].shape == v.shape}
        if len(cand) > len(best):
            best = cand
    if not best:
        raise ConfigError(f"learner.weights_path: no tensor in {path!r} matches the model by name and shape")
    net.load_state_dict(best, strict=False)
    return {"weights_loaded": len(best), "weights_skipped": len(state) - len(best)}
