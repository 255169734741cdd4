"""Checkpoints: tensors and plain data only, written atomically, read back without running code.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts (weights, optimizer and schedule
state, RNG states, the configuration, where it came from). It is read with ``torch.load(weights_only=True)``,
whose unpickler admits those types and nothing else: a file that names any other class or function (a
crafted ``model.pt`` that would run a command on load) is refused before anything in it runs.
"""

from __future__ import annotations

import pickle
import zipfile
from typing import Any

import torch

from unigeo.core import fileio
from unigeo.core.errors import UniGeoError

FORMAT = "unigeo-checkpoint"
FORMAT_VERSION = 1
CHECKPOINT = "model.pt"
ZIP_MAGIC = b"PK\x03\x04"


def save_checkpoint(path: str, state: dict[str, Any]) -> None:
    """Write to a temporary file beside ``path``, then rename: a checkpoint is whole or absent."""
    tmp = f"{path}.tmp"
    with fileio.create(tmp) as f:
        torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **state}, f)
    fileio.rename(tmp, path)


def load_checkpoint(path: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint at ``path``; a ``UniGeoError`` naming the file for anything that is not one."""
    if fileio.is_dir(path):
        inside = fileio.join(path, CHECKPOINT)
        hint = f"use {inside}" if fileio.exists(inside) else f"it holds no {CHECKPOINT}"
        raise UniGeoError(f"checkpoint {path} is a folder, not a checkpoint file: {hint}")
    if not fileio.exists(path):
        raise UniGeoError(f"checkpoint {path} not found")
    with fileio.open_binary(path) as f:
        if f.read(4) != ZIP_MAGIC:  # torch.save writes a zip archive
            raise UniGeoError(f"{path} is not a checkpoint (not a file written by `unigeo train`)")
    try:
        with fileio.open_binary(path) as f:
            state = torch.load(f, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise UniGeoError(f"checkpoint {path} refused: it holds objects other than tensors and plain data, "
                          "which could run code when loaded (a UniGeo checkpoint never does)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UniGeoError(f"{path} is not a readable checkpoint (truncated, or not written by `unigeo train`): "
                          f"{first}") from None
    if not isinstance(state, dict) or "model" not in state or "model_config" not in state:
        raise UniGeoError(f"{path} is not a checkpoint written by `unigeo train` (no model weights and configuration)")
    version = state.get("format_version", 0)
    if version > FORMAT_VERSION:
        raise UniGeoError(f"checkpoint {path} has format version {version}; this UniGeo reads up to "
                          f"{FORMAT_VERSION}: upgrade UniGeo")
    return state
