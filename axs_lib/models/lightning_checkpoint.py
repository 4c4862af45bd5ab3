"""A TerraTorch Lightning checkpoint (``*.ckpt``) of a segmentation run on an ``axs_*`` backbone, as a model.

The checkpoint is read with ``torch.load(weights_only=True)``: no pickled code runs. Its
``hyper_parameters`` say how TerraTorch built the model (``model_factory: EncoderDecoderFactory`` and
``model_args``); the model is built the same way, from the base weights found as usual (for the
architecture), and then every weight is taken from the checkpoint's ``state_dict``, strictly.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import NotASavedModelError, UnreadableCheckpointError
from ..weights.discovery import find_checkpoint
from .loading import check_saved_tensors
from .pretrained import ENCODER_PREFIX, BuildFunction
from .recipe import SEGMENTATION_BACKBONES, base_model_spec

if TYPE_CHECKING:
    from .prithvi import PrithviSegmentation

logger = logging.getLogger(__name__)

MODEL_PREFIX = "model."
"""The task's model in a Lightning state dict; the same prefix as :class:`PrithviSegmentation`'s own keys."""

_WEIGHT_LOCATION_ARGUMENTS = ("backbone_pretrained", "backbone_ckpt_path")


@dataclasses.dataclass(frozen=True)
class LightningRun:
    """What a TerraTorch Lightning checkpoint holds about its model.

    Attributes:
        model_args: TerraTorch's ``model_args`` without the weights' location (``backbone_pretrained``,
            ``backbone_ckpt_path``).
        state_dict: the task model's tensors, under :class:`PrithviSegmentation` key names.
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
        raise NotASavedModelError(path, "it has auxiliary heads (aux_heads), which PrithviSegmentation does not carry")
    model_args = dict(hyper_parameters.get("model_args") or {})
    if model_args.get("backbone") not in SEGMENTATION_BACKBONES:
        raise NotASavedModelError(
            path, f"its backbone is {model_args.get('backbone')!r}; expected one of {', '.join(SEGMENTATION_BACKBONES)}"
        )
    state_dict = {key: value for key, value in checkpoint["state_dict"].items() if key.startswith(MODEL_PREFIX)}
    arguments = {key: value for key, value in model_args.items() if key not in _WEIGHT_LOCATION_ARGUMENTS}
    return LightningRun(model_args=arguments, state_dict=state_dict)


def load_lightning_checkpoint(
    path: Path,
    build: BuildFunction,
    *,
    checkpoint_path: str | os.PathLike | None = None,
    device: torch.device,
    dtype: torch.dtype | None,
) -> PrithviSegmentation:
    """The model of a TerraTorch Lightning checkpoint, every weight from the checkpoint (strict).

    ``checkpoint_path`` locates the base Prithvi weights, used for the architecture and, when the frozen
    encoder weights equal them, referred to by a later ``save_pretrained`` instead of copied.
    """
    run = read_lightning_checkpoint(path)
    base = find_checkpoint(base_model_spec("EncoderDecoderFactory", run.model_args), checkpoint_path)
    model = build(
        "EncoderDecoderFactory", run.model_args, pretrained=True, checkpoint_path=base.path, device=device, dtype=dtype
    )
    expected = model.state_dict()
    check_saved_tensors(run.state_dict, expected, required=expected, source=path, model_name="Prithvi segmentation model")
    frozen = {name for name, parameter in model.named_parameters() if not parameter.requires_grad}
    encoder_is_base = all(
        torch.equal(expected[key], run.state_dict[key].to(expected[key].dtype))
        for key in frozen
        if key.startswith(ENCODER_PREFIX)
    )
    if not encoder_is_base:
        logger.info("%s: frozen encoder weights differ from the base at %s; save_pretrained will copy them", path, base.path)
    model.load_state_dict(run.state_dict, strict=True)
    model.build_recipe = dataclasses.replace(model.build_recipe, encoder_is_base=encoder_is_base)
    return model
