"""Checkpoints: written atomically (a temporary file, then a rename), read back with torch."""

from __future__ import annotations

from typing import Any

import torch

from unigeo.core import fileio
from unigeo.core.errors import UniGeoError


def save_checkpoint(path: str, state: dict[str, Any]) -> None:
    """Write to a temporary file beside ``path``, then rename: a checkpoint is whole or absent."""
    tmp = f"{path}.tmp"
    with fileio.create(tmp) as f:
        torch.save(state, f)
    fileio.rename(tmp, path)


def load_checkpoint(path: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    if not fileio.exists(path):
        raise UniGeoError(f"checkpoint {path} not found")
    with fileio.open_binary(path) as f:
        state: dict[str, Any] = torch.load(f, map_location=map_location, weights_only=False)
    return state
