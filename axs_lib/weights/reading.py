"""Bytes to tensors: read a checkpoint file into a state dict, without executing pickled code."""

from __future__ import annotations

import json
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from ..errors import CorruptCheckpointError, UnreadableCheckpointError, UnsafeCheckpointError

ALIASES_METADATA = "axs_aliases"
"""safetensors header entry: ``{name: name it shares its tensor with}`` (tied weights are stored once)."""

StateDict = dict[str, torch.Tensor]


def read_state_dict(
    path: Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> StateDict:
    """Read a ``.safetensors`` or pickled ``.pt`` state dict without executing any pickled code.

    Tensors go straight to ``device``, floating ones cast to ``dtype``, one at a time, so no second full
    copy of the weights is held. Both formats are memory-mapped: on the CPU, tensors that need no cast stay
    backed by the file and are paged in on first use (so never rewrite a checkpoint in place while a model
    loaded from it is alive; the downloader and the converter replace files by renaming).

    Raises:
        UnreadableCheckpointError: this user may not read the file.
        UnsafeCheckpointError: a pickled file holds objects that ``torch.load(weights_only=True)`` refuses.
        CorruptCheckpointError: the file is truncated, of another format, or not a flat state dict.
    """
    path = Path(path)
    try:
        open(path, "rb").close()  # the OS's own reason first (permissions), before a reader words it as damage
        if path.suffix == ".safetensors":
            with safe_open(path, framework="pt", device=str(device)) as handle:
                state_dict = {key: _cast(handle.get_tensor(key), device, dtype) for key in handle.keys()}
                aliases = json.loads((handle.metadata() or {}).get(ALIASES_METADATA, "{}"))
            return state_dict | {alias: state_dict[original] for alias, original in aliases.items()}
        state_dict = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except PermissionError as error:
        raise UnreadableCheckpointError(path) from error
    except pickle.UnpicklingError as error:  # torch.load reads mmap=True files as zips: damage is a zip error
        raise UnsafeCheckpointError(path, refused_by_weights_only(error)) from error
    except (
        SafetensorError, RuntimeError, EOFError, OSError, ValueError, KeyError, zipfile.BadZipFile,
    ) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise CorruptCheckpointError(path, f"{type(error).__name__}: {error}") from error
    if not isinstance(state_dict, Mapping) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise CorruptCheckpointError(path, "it does not hold a state dict (a mapping of names to tensors)")
    return {key: _cast(state_dict[key], device, dtype) for key in list(state_dict)}


def refused_by_weights_only(error: pickle.UnpicklingError) -> str:
    """What ``torch.load(weights_only=True)`` refused, in a few words (its own message runs to a page)."""
    message = str(error)
    unsafe_global = re.search(r"GLOBAL (\S+)", message)
    if unsafe_global:
        return f"the Python object {unsafe_global.group(1)}"
    reason = re.search(r"WeightsUnpickler error: ([^\n]+)", message)
    return f"part of it ({reason.group(1)})" if reason else "part of it"


def _cast(tensor: torch.Tensor, device: str | torch.device, dtype: torch.dtype | None) -> torch.Tensor:
    return tensor.to(device=device, dtype=dtype if dtype is not None and tensor.is_floating_point() else None)
