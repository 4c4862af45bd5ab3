"""Converting a pickled ``.pt`` checkpoint to ``model.safetensors``, recording its source (see
:mod:`axs_lib.weights.provenance`) so that a later run can skip it and the loader can tell a current
conversion from a stale one.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from .catalog import CONVERTED_FILENAME
from ..errors import CorruptCheckpointError
from .provenance import MTIME, SHA256, SIZE, SOURCE, conversion_is_current, sha256_of
from .reading import ALIASES_METADATA, read_state_dict

logger = logging.getLogger(__name__)


def save_state_dict(state_dict: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write ``state_dict`` to the safetensors file ``path``, as :func:`~axs_lib.weights.reading.read_state_dict`
    reads it back: a tensor under several names (tied weights) is stored once and its other names recorded
    in the header; tensors that overlap in memory otherwise (safetensors refuses shared memory) are copied."""
    tensors, aliases = _without_aliases(state_dict)
    header = {"format": "pt", **(metadata or {})}
    if aliases:
        header[ALIASES_METADATA] = json.dumps(aliases)
    save_file(tensors, path, metadata=header)


def _without_aliases(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors to write, on the CPU, and ``{dropped name: kept name}`` for tensors stored once."""
    kept: dict[tuple, str] = {}
    storages: set[int] = set()
    tensors, aliases = {}, {}
    for key, tensor in state_dict.items():
        tensor = tensor.detach().cpu()
        view = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.stride(), tensor.dtype)
        if view in kept:
            aliases[key] = kept[view]
            continue
        shared = view[0] in storages
        kept[view] = key
        storages.add(view[0])
        tensors[key] = tensor.clone() if shared else tensor.contiguous()
    return tensors, aliases


def convert_to_safetensors(source: Path, *, force: bool = False) -> Path:
    """Write ``model.safetensors`` beside ``source`` and return its path.

    The file is written under a temporary name, read back and compared tensor by tensor, and only then
    renamed into place, so an interrupted conversion never leaves a file the loader would pick up.
    An up-to-date conversion (see :func:`~axs_lib.weights.provenance.is_current`) is kept unless ``force``
    is set; a damaged one is replaced.
    """
    source = Path(source)
    target = source.with_name(CONVERTED_FILENAME)
    if not force and conversion_is_current(target, source):
        logger.info("%s is up to date with %s", target, source.name)
        return target

    state_dict = read_state_dict(source)
    stat = source.stat()
    metadata = {
        SOURCE: source.name,
        SIZE: str(stat.st_size),
        MTIME: str(stat.st_mtime_ns),
        SHA256: sha256_of(source),
    }
    temporary = target.with_name(f".{target.stem}.{os.getpid()}.partial.safetensors")
    try:
        save_state_dict(state_dict, temporary, metadata)
        _verify_round_trip(temporary, state_dict)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    logger.info("converted %s -> %s (%d tensors)", source, target, len(state_dict))
    return target


def _verify_round_trip(written: Path, expected: dict[str, torch.Tensor]) -> None:
    written_back = read_state_dict(written)
    if set(written_back) != set(expected):
        raise CorruptCheckpointError(written, "converted file does not hold the same keys as its source")
    for key, tensor in written_back.items():
        if not torch.equal(tensor, expected[key]):
            raise CorruptCheckpointError(written, f"tensor {key} differs after conversion")
