"""Fingerprints of weights: a short string that tells apart two sets of weights under the same names.

A fingerprint hashes each tensor's name, shape and dtype and a sample of its values (8 evenly spaced rows,
64 evenly spaced values each, as float64), so it costs milliseconds for a billion parameters and pages in
only the sampled rows of a memory-mapped file. It tells apart another training run, another size or a
fine-tuned copy; it is not a checksum of every byte.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

FINGERPRINT_ROWS = 8
FINGERPRINT_VALUES_PER_ROW = 64
PREFIX = "sampled-sha256:"

RowReader = Callable[[int, int], torch.Tensor]
"""``rows(start, stop)``: the tensor's rows ``start:stop`` along its first axis (the whole tensor for a scalar)."""


def hash_tensor(digest: Any, key: str, shape: list[int], rows: RowReader, dtype: str = "") -> None:
    """Add ``key``, ``shape`` (and ``dtype`` when given) and a sample of the values that ``rows`` reads to ``digest``."""
    digest.update(f"{key}:{shape}{':' + dtype if dtype else ''};".encode())
    count = shape[0] if shape else 1
    if count == 0:
        return
    for index in sorted({round(i * (count - 1) / (FINGERPRINT_ROWS - 1)) for i in range(FINGERPRINT_ROWS)}):
        row = rows(index, index + 1).reshape(-1)
        if row.numel() == 0:
            continue
        picks = torch.linspace(0, row.numel() - 1, min(row.numel(), FINGERPRINT_VALUES_PER_ROW)).round().long()
        digest.update(row[picks].detach().to("cpu", torch.float64).numpy().tobytes())


def tensors_fingerprint(tensors: Iterable[tuple[str, torch.Tensor]]) -> str:
    """The fingerprint of named tensors, in name order."""
    digest = hashlib.sha256()
    for key, tensor in sorted(tensors, key=lambda item: item[0]):
        hash_tensor(
            digest, key, list(tensor.shape),
            lambda start, stop, tensor=tensor: tensor[start:stop] if tensor.ndim else tensor,
            dtype=str(tensor.dtype).removeprefix("torch."),
        )
    return PREFIX + digest.hexdigest()


def module_fingerprint(module: nn.Module) -> str:
    """The fingerprint of every tensor in ``module.state_dict()`` (adapters, buffers and heads included).

    Two models give the same fingerprint only if they hold the same tensor names, shapes and dtypes and the
    same sampled values: the weights actually in use, whichever files they came from.
    """
    return tensors_fingerprint(module.state_dict(keep_vars=False).items())


def weights_fingerprints(**models: nn.Module) -> dict[str, str]:
    """The :func:`module_fingerprint` of each named model (``segmentation=..., generator=...``), as scene runs,
    output tags and STAC items record them."""
    return {name: module_fingerprint(model) for name, model in models.items()}
