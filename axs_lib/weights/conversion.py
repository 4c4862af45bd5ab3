"""Converting a pickled ``.pt`` checkpoint to ``model.safetensors``, and telling whether a conversion is current.

A conversion records its source file (name, size, mtime, SHA-256) in the safetensors header metadata,
so that a later run can skip it and the loader can tell a current conversion from a stale one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .catalog import CONVERTED_FILENAME
from ..errors import CorruptCheckpointError
from .reading import ALIASES_METADATA, read_state_dict

logger = logging.getLogger(__name__)

_SOURCE = "axs_source_file"
_SIZE = "axs_source_size"
_MTIME = "axs_source_mtime_ns"
_SHA256 = "axs_source_sha256"


def sha256_of(path: Path, chunk_size: int = 16 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def conversion_record(converted: Path) -> dict[str, str]:
    """The source record stored in a converted file's header; empty when it has none or cannot be read."""
    try:
        with safe_open(converted, framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as error:  # noqa: BLE001 - any unreadable header means "no usable record"
        logger.debug("cannot read safetensors header of %s: %s", converted, error)
        return {}
    return {key: value for key, value in metadata.items() if key.startswith("axs_source")}


def converted_from(converted: Path) -> str | None:
    """The file name a converted file was made from, or ``None`` when it carries no record."""
    return conversion_record(converted).get(_SOURCE)


def is_current(converted: Path, source: Path, *, verify_hash: bool = False) -> bool:
    """Whether ``converted`` holds the same weights as ``source``.

    Size must match. If the modification time differs too (a copied file), or ``verify_hash`` is set,
    the SHA-256 decides.
    """
    record = conversion_record(converted)
    if not record or record.get(_SOURCE) != source.name:
        return False
    stat = source.stat()
    if record.get(_SIZE) != str(stat.st_size):
        return False
    if not verify_hash and record.get(_MTIME) == str(stat.st_mtime_ns):
        return True
    logger.info("checking %s against its conversion by SHA-256 (its modification time changed)", source)
    return record.get(_SHA256) == sha256_of(source)


def _without_aliases(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Store a tensor that appears under several names once (safetensors refuses shared memory).

    Returns the tensors to write and ``{dropped name: kept name}``. Tensors that overlap in memory
    without being the same view are copied instead.
    """
    kept: dict[tuple, str] = {}
    storages: set[int] = set()
    tensors, aliases = {}, {}
    for key, tensor in state_dict.items():
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
    An up-to-date conversion (same size and SHA-256) is kept unless ``force`` is set.
    """
    source = Path(source)
    target = source.with_name(CONVERTED_FILENAME)
    if not force and target.exists() and is_current(target, source, verify_hash=True):
        logger.info("%s is up to date with %s", target, source.name)
        return target

    state_dict = read_state_dict(source)
    stat = source.stat()
    metadata = {
        "format": "pt",
        _SOURCE: source.name,
        _SIZE: str(stat.st_size),
        _MTIME: str(stat.st_mtime_ns),
        _SHA256: sha256_of(source),
    }
    tensors, aliases = _without_aliases(state_dict)
    if aliases:
        metadata[ALIASES_METADATA] = json.dumps(aliases)
    temporary = target.with_name(f".{target.stem}.{os.getpid()}.partial.safetensors")
    try:
        save_file(tensors, temporary, metadata=metadata)
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
