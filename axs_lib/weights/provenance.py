"""Which ``.pt`` file a ``model.safetensors`` conversion was made from, and whether it is still current.

A conversion records its source file (name, size, mtime, SHA-256) in the safetensors header metadata.
The header is read as plain JSON (8-byte length, then the header), so telling a current conversion from a
stale or damaged one needs neither torch nor the tensors.

A source whose modification time changed (copied without keeping times) is compared by SHA-256 once; when it
matches, ``.<conversion name>.verified.json`` beside the conversion remembers its new size and modification
time, so later loads do not hash it again. The record is best effort: where the folder is read-only the
source is hashed at each load, and a log line at INFO level says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import struct
from pathlib import Path

from ..errors import CorruptCheckpointError, UnreadableCheckpointError

logger = logging.getLogger(__name__)

SOURCE = "axs_source_file"
SIZE = "axs_source_size"
MTIME = "axs_source_mtime_ns"
SHA256 = "axs_source_sha256"

_MAX_HEADER_BYTES = 100 << 20


def sha256_of(path: Path, chunk_size: int = 16 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def safetensors_metadata(path: Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file, after checking that the file holds every tensor it lists.

    Raises:
        CorruptCheckpointError: the header is unreadable, or the file is shorter than the header says
            (a truncated download or copy).
        UnreadableCheckpointError: this user may not read the file.
    """
    size = path.stat().st_size
    try:
        handle = open(path, "rb")
    except PermissionError as error:
        raise UnreadableCheckpointError(path) from error
    try:
        with handle:
            (header_length,) = struct.unpack("<Q", handle.read(8))
            if header_length > min(_MAX_HEADER_BYTES, size - 8):
                raise ValueError(f"header of {header_length} bytes in a file of {size} bytes")
            header = json.loads(handle.read(header_length))
        data_end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    except (struct.error, ValueError, TypeError, KeyError, IndexError, UnicodeDecodeError) as error:
        raise CorruptCheckpointError(path, f"not a readable safetensors file ({error})") from error
    if 8 + header_length + data_end > size:
        raise CorruptCheckpointError(
            path, f"truncated: its header lists {8 + header_length + data_end} bytes, the file has {size}"
        )
    return header.get("__metadata__") or {}


def conversion_record(converted: Path) -> dict[str, str]:
    """The source record stored in a converted file's header; empty when it has none.

    Raises:
        CorruptCheckpointError: the file is damaged (see :func:`safetensors_metadata`).
    """
    return {key: value for key, value in safetensors_metadata(converted).items() if key.startswith("axs_source")}


def converted_from(converted: Path) -> str | None:
    """The file name a converted file was made from, or ``None`` when it carries no record."""
    return conversion_record(converted).get(SOURCE)


def is_current(converted: Path, source: Path) -> bool:
    """Whether ``converted`` holds the same weights as ``source``.

    Same size and modification time as recorded (or as last verified) means current without reading
    ``source``; a file whose modification time changed (a copy) is compared by SHA-256, once.

    Raises:
        CorruptCheckpointError: ``converted`` is damaged (see :func:`safetensors_metadata`).
    """
    record = conversion_record(converted)
    if record.get(SOURCE) != source.name:
        return False
    stat = source.stat()
    if record.get(SIZE) != str(stat.st_size):
        return False
    seen = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": record.get(SHA256)}
    if record.get(MTIME) == str(stat.st_mtime_ns) or _verified_copy(converted) == seen:
        return True
    can_remember = os.access(converted.parent, os.W_OK)
    logger.info(
        "checking %s against its conversion by SHA-256 (its modification time changed%s)",
        source, "" if can_remember else "; the folder is read-only, so this is done at every load",
    )
    if record.get(SHA256) != sha256_of(source):
        return False
    if can_remember:
        _remember_verified_copy(converted, seen)
    return True


def conversion_is_current(converted: Path, source: Path) -> bool:
    """:func:`is_current`, ``False`` when there is no conversion or it is damaged (then it is to be written again)."""
    if not converted.is_file():
        return False
    try:
        return is_current(converted, source)
    except CorruptCheckpointError as error:
        logger.warning("%s\nConverting again.", error)
        return False


def _verified_copy_path(converted: Path) -> Path:
    return converted.with_name(f".{converted.name}.verified.json")


def _verified_copy(converted: Path) -> dict | None:
    try:
        return json.loads(_verified_copy_path(converted).read_text())
    except (OSError, ValueError):
        return None


def _remember_verified_copy(converted: Path, seen: dict) -> None:
    path = _verified_copy_path(converted)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(json.dumps(seen))
        os.replace(temporary, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        logger.info("cannot record that %s was verified (%s); it will be hashed again at the next load", converted, error)
