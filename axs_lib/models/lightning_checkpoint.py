"""A TerraTorch Lightning checkpoint (``*.ckpt``) of a segmentation run on an ``axs_*`` backbone: how its model was
built and its weights.

The checkpoint is read with ``torch.load(weights_only=True)``: no pickled code runs. Its
``hyper_parameters`` say how TerraTorch built the model (``model_factory: EncoderDecoderFactory`` and
``model_args``); the model class builds it the same way and takes every weight from the ``state_dict``.
"""

from __future__ import annotations

import dataclasses
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import NotASavedModelError, UnreadableCheckpointError
from .recipe import SEGMENTATION_BACKBONES

MODEL_PREFIX = "model."
"""The task's model in a Lightning state dict; the same prefix as the segmentation model's own keys."""

_WEIGHT_LOCATION_ARGUMENTS = ("backbone_pretrained", "backbone_ckpt_path")


@dataclasses.dataclass(frozen=True)
class LightningRun:
    """What a TerraTorch Lightning checkpoint holds about its model.

    Attributes:
        model_args: TerraTorch's ``model_args`` without the weights' location (``backbone_pretrained``,
            ``backbone_ckpt_path``).
        state_dict: the task model's tensors, under the segmentation model's key names.
    """

    model_args: dict[str, Any]
    state_dict: dict[str, torch.Tensor]


def read_lightning_checkpoint(path: Path) -> LightningRun:
    """Read the model description and weights of a TerraTorch segmentation checkpoint, running no pickled code.

    Raises:
        NotASavedModelError: not a Lightning checkpoint, not an ``EncoderDecoderFactory`` model, or a backbone
            this library does not provide.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except PermissionError as error:
        raise UnreadableCheckpointError(path) from error
    except pickle.UnpicklingError as error:
        raise NotASavedModelError(
            path, f"it cannot be read without running pickled code (torch.load weights_only=True refused: {error})"
        ) from error
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as error:
        raise NotASavedModelError(path, f"it is not a readable torch checkpoint ({type(error).__name__}: {error})") from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise NotASavedModelError(path, "it is not a Lightning checkpoint (no 'state_dict')")
    hyper_parameters = checkpoint.get("hyper_parameters")
    if not isinstance(hyper_parameters, dict):
        raise NotASavedModelError(
            path,
            "it has no 'hyper_parameters', so the model cannot be rebuilt (TerraTorch's *_state_dict.ckpt holds "
            "weights only: pass the full checkpoint written beside it)",
        )
    factory = hyper_parameters.get("model_factory")
    if factory != "EncoderDecoderFactory":
        raise NotASavedModelError(path, f"its model_factory is {factory!r}; only EncoderDecoderFactory runs can be loaded")
    if hyper_parameters.get("aux_heads"):
        raise NotASavedModelError(path, "it has auxiliary heads (aux_heads), which SegmentationModel does not carry")
    model_args = dict(hyper_parameters.get("model_args") or {})
    if model_args.get("backbone") not in SEGMENTATION_BACKBONES:
        raise NotASavedModelError(
            path, f"its backbone is {model_args.get('backbone')!r}; expected one of {', '.join(SEGMENTATION_BACKBONES)}"
        )
    state_dict = {key: value for key, value in checkpoint["state_dict"].items() if key.startswith(MODEL_PREFIX)}
    arguments = {key: value for key, value in model_args.items() if key not in _WEIGHT_LOCATION_ARGUMENTS}
    return LightningRun(model_args=arguments, state_dict=state_dict)
