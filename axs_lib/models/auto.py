"""transformers' ``AutoConfig`` / ``AutoModel`` for the folders ``SegmentationModel.save_pretrained`` writes (:mod:`axs_lib.models.pretrained`).

Only those folders (``config.json`` with ``model_type: axs_prithvi_segmentation``) are served. Each folder's
``auto_map`` names these classes through its ``modeling_axs_lib.py``, so ``trust_remote_code=True`` opens it in a
process that has not imported axs_lib. The published
Prithvi ``config.json`` has no ``model_type`` (transformers routes it to timm) and the TerraMind repositories
ship no ``config.json``; load those with the ``build_*`` factories.

``AutoModel.from_pretrained`` hands the folder to :meth:`SegmentationModel.from_pretrained`, which loads
every weight strictly: transformers' own ``PreTrainedModel`` loading would build on ``meta``, re-initialise
injected weights in ``post_init``, leave the computed position embedding empty and only log missing keys.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from transformers import AutoConfig, AutoModel, PretrainedConfig

from ..errors import InvalidArgumentError
from .pretrained import MODEL_TYPE
from .segmentation import SegmentationModel

logger = logging.getLogger(__name__)

_TRANSFORMERS_PLUMBING = frozenset({
    "_from_auto", "adapter_kwargs", "trust_remote_code", "revision", "cache_dir", "force_download",
    "local_files_only", "token", "proxies", "subfolder", "code_revision", "_commit_hash",
})
"""Keyword arguments ``AutoModel.from_pretrained`` passes on by itself; they mean nothing for a local folder."""


class AxsPrithviSegmentationConfig(PretrainedConfig):
    """The ``config.json`` of a saved :class:`SegmentationModel`, as transformers reads it."""

    model_type = MODEL_TYPE


class AxsPrithviSegmentationAutoModel:
    """What ``AutoModel`` calls for ``model_type: axs_prithvi_segmentation``; returns a :class:`SegmentationModel`."""

    config_class = AxsPrithviSegmentationConfig

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        *model_args: Any,
        config: PretrainedConfig | None = None,
        checkpoint_path: str | os.PathLike | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
        **kwargs: Any,
    ) -> SegmentationModel:
        torch_dtype = kwargs.pop("torch_dtype", None)
        dtype = dtype if dtype is not None else torch_dtype
        unknown = sorted(set(kwargs) - _TRANSFORMERS_PLUMBING)
        if model_args or unknown:
            raise InvalidArgumentError(
                f"AutoModel.from_pretrained for {MODEL_TYPE} takes checkpoint_path, device and dtype; "
                f"got {', '.join([*map(repr, model_args), *unknown])}"
            )
        return SegmentationModel.from_pretrained(
            path, checkpoint_path=checkpoint_path, device=device, dtype=None if dtype == "auto" else dtype
        )


def register_auto_classes() -> None:
    """Make ``AutoConfig`` and ``AutoModel`` open saved folders; safe to call repeatedly."""
    AutoConfig.register(MODEL_TYPE, AxsPrithviSegmentationConfig, exist_ok=True)
    AutoModel.register(AxsPrithviSegmentationConfig, AxsPrithviSegmentationAutoModel, exist_ok=True)
    logger.debug("registered %s with transformers' AutoConfig and AutoModel", MODEL_TYPE)
