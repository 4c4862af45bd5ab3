"""Public factories for Prithvi EO 2.0 600M: the encoder, and a TerraTorch segmentation model around it."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from . import _validation
from ._terratorch import terratorch_module
from .architecture import builder_arguments
from ..weights.catalog import KNOWN_MODELS, PRITHVI_600M, PRITHVI_PRETRAINED_BANDS
from ..weights.discovery import find_checkpoint
from ..errors import CheckpointMismatchError, InvalidArgumentError
from .loading import CheckpointPart, StateDict, build_and_load, place

logger = logging.getLogger(__name__)

LORA_TARGET_MODULES = ("q_linear", "v_linear")
"""Attention projections that receive LoRA adapters, after TerraTorch splits each fused ``qkv``."""

_TERRATORCH_ONLY_ARGUMENTS = frozenset({"padding"})
"""Backbone arguments TerraTorch's ``EncoderDecoderFactory`` reads and also passes to the builder."""

_SET_BY_THIS_FACTORY = frozenset({"self", "in_chans", "img_size"})
"""``PrithviViT.__init__`` parameters a caller cannot pass through: ``in_chans`` and ``img_size`` come from this
factory's ``in_channels``/``bands`` and ``img_size``."""

LOW_VRAM_LORA_RANK = 4
"""``low_vram=True``: LoRA rank 4 (alpha 8, the default alpha/rank of 2), frozen encoder, gradient
checkpointing, 16-bit weights."""


class SegmentationLogits(torch.Tensor):
    """Logits ``[B, num_classes, H, W]``: a plain tensor that also reads as TerraTorch's ``ModelOutput``.

    ``logits.output`` is the same tensor and ``logits.auxiliary_heads`` is empty, so TerraTorch's
    ``SemanticSegmentationTask(model=...)`` and its loss handler accept it. Any operation on it returns an
    ordinary ``torch.Tensor``; gradients flow through it as through the logits.
    """

    __torch_function__ = torch._C._disabled_torch_function_impl

    @property
    def output(self) -> torch.Tensor:
        return self.as_subclass(torch.Tensor)

    @property
    def auxiliary_heads(self) -> dict[str, torch.Tensor]:
        return {}


class PrithviSegmentation(nn.Module):
    """TerraTorch's pixel-wise segmentation model, returning logits ``[B, num_classes, H, W]``.

    Attributes:
        model: the TerraTorch ``PixelWiseModel`` (encoder, necks, decoder, head).
        in_channels: bands the input must have.
        num_classes: output channels.
        patch_size: the encoder's patch size in pixels (14).
        build_recipe: how the model was built (factory name and arguments), so that
            :meth:`save_pretrained` can record it and :meth:`from_pretrained` build it again.
    """

    def __init__(self, model: nn.Module, in_channels: int, num_classes: int, build_recipe: BuildRecipe | None = None):
        super().__init__()
        self.model = model
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.patch_size = int(patch_embedding(model).kernel_size[-1])
        self.build_recipe = build_recipe

    @property
    def head_dtype(self) -> torch.dtype:
        return next(self.model.head.parameters()).dtype

    def forward(self, images: torch.Tensor) -> SegmentationLogits:
        """Logits for ``images`` ``[B, in_channels, H, W]``, computed in the model's dtype.

        The result is a ``torch.Tensor`` that TerraTorch's tasks can also read as a ``ModelOutput``
        (see :class:`SegmentationLogits`).
        """
        if images.ndim != 4 or images.shape[1] != self.in_channels:
            raise InvalidArgumentError(
                f"expected images of shape [B, {self.in_channels}, H, W], got {list(images.shape)}; "
                f"build the model with in_channels={images.shape[1] if images.ndim == 4 else '<bands>'} "
                "to use other bands."
            )
        logits = self.model(images.to(self.head_dtype)).output
        logits = logits.unsqueeze(1) if logits.ndim == 3 else logits
        return logits.as_subclass(SegmentationLogits)

    def save_pretrained(self, folder: str | os.PathLike, include_base: bool = False) -> Path:
        """Write the model to ``folder`` in Hugging Face conventions; see :func:`axs_lib.models.pretrained.save_pretrained`."""
        from .pretrained import save_pretrained

        return save_pretrained(self, folder, include_base=include_base)

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        checkpoint_path: str | os.PathLike | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
    ) -> PrithviSegmentation:
        """A model saved by :meth:`save_pretrained`, or trained by TerraTorch (a Lightning ``.ckpt``), in eval mode.

        ``checkpoint_path`` points at the base Prithvi weights when they are not in the usual places; see
        :func:`axs_lib.models.pretrained.from_pretrained`.
        """
        from .pretrained import from_pretrained

        return from_pretrained(path, checkpoint_path=checkpoint_path, device=device, dtype=dtype)


@dataclass(frozen=True)
class BuildRecipe:
    """How a :class:`PrithviSegmentation` was built.

    Attributes:
        factory: ``"build_prithvi_600"`` or ``"EncoderDecoderFactory"`` (TerraTorch's, from a Lightning run).
        arguments: the factory's keyword arguments (JSON values), without the weights' location.
        pretrained: whether the encoder started from the Prithvi base weights.
        checkpoint_path: where the base weights were taken from, if the caller named a place.
        encoder_is_base: whether the encoder's frozen weights are the base's own (``False`` for a Lightning
            checkpoint whose frozen weights differ from the base found); ``save_pretrained`` then copies them.
    """

    factory: str
    arguments: dict[str, Any]
    pretrained: bool = True
    checkpoint_path: str | None = None
    encoder_is_base: bool = True


def patch_embedding(model: nn.Module) -> nn.Module:
    """The encoder's patch-embedding projection (a convolution) inside a TerraTorch Prithvi model."""
    return next(module for name, module in model.named_modules() if name.endswith("patch_embed.proj"))


def build_prithvi_600(
    pretrained: bool = True,
    num_classes: int = 1,
    img_size: int = 384,
    in_channels: int = 6,
    use_lora: bool = True,
    lora_r: int = 8,
    lora_alpha: int = 16,
    freeze_encoder: bool = False,
    checkpoint_path: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
    gradient_checkpointing: bool = False,
    low_vram: bool = False,
    compile: bool = False,
) -> PrithviSegmentation:
    """Prithvi EO 2.0 600M encoder in a TerraTorch UperNet segmentation model.

    Input ``[B, in_channels, H, W]`` (HLS reflectance, standardised with the Prithvi mean/std) gives logits
    ``[B, num_classes, H, W]``. Inputs are padded to whole 14-pixel patches and the logits cropped back, as
    TerraTorch does, so ``img_size`` need not be a multiple of 14.

    The model is returned in eval mode, as transformers' ``from_pretrained`` does: call ``model.train()``
    before fine-tuning, in a plain loop and before Lightning's ``trainer.fit`` alike (Lightning keeps the mode
    it is given).

    Args:
        pretrained: load the local Prithvi checkpoint; ``False`` gives random weights without disk access.
        num_classes: output channels.
        img_size: the tile size the model is built for.
        in_channels: bands of the input. The first ``min(in_channels, 6)`` take the pretrained patch
            embedding of BLUE, GREEN, RED, NIR_NARROW, SWIR_1, SWIR_2 in that order; extra bands start random
            (TerraTorch's band re-selection).
        use_lora: add LoRA adapters (TerraTorch ``peft_config``) to the attention query and value
            projections. LoRA freezes the encoder's own weights; adapters, decoder and head train.
        lora_r, lora_alpha: LoRA rank and scaling.
        freeze_encoder: without LoRA, freeze every encoder weight (decoder and head train). With LoRA the
            encoder weights are frozen either way.
        checkpoint_path: Prithvi's file or folder, instead of searching the default locations.
        device: where the model is placed (default CPU); the encoder is loaded straight there.
        dtype: ``torch.float32`` (default: as stored), ``torch.float16``, ``torch.bfloat16`` or a name such
            as ``"bf16"``; inputs are cast to it.
        gradient_checkpointing: recompute each encoder block in the backward pass instead of keeping its
            activations (training only; slower, much less memory).
        low_vram: the low-memory training preset: LoRA of rank 4 and alpha 8, frozen encoder, gradient
            checkpointing, and bfloat16 weights (float16 on GPUs without bfloat16) unless ``dtype`` is given.
            16-bit weights train without a float32 master copy; prefer bfloat16 over float16.
        compile: compile the encoder blocks with ``torch.compile``; see :func:`build_prithvi_600_backbone`.
    """
    device = _validation.torch_device(device)
    if low_vram:
        low_alpha = 2 * LOW_VRAM_LORA_RANK
        if not use_lora or lora_r not in (8, LOW_VRAM_LORA_RANK) or lora_alpha not in (16, low_alpha):
            raise InvalidArgumentError(
                f"low_vram=True means use_lora=True with lora_r={LOW_VRAM_LORA_RANK}, lora_alpha={low_alpha}; "
                f"drop low_vram to choose (got use_lora={use_lora}, lora_r={lora_r}, lora_alpha={lora_alpha})"
            )
        use_lora, lora_r, lora_alpha = True, LOW_VRAM_LORA_RANK, low_alpha
        freeze_encoder, gradient_checkpointing = True, True
        dtype = dtype if dtype is not None else _half_precision_for(device)
    num_classes = _validation.whole_number(num_classes, "num_classes", minimum=1)
    in_channels = _validation.whole_number(in_channels, "in_channels", minimum=1)
    img_size = _validation.whole_number(img_size, "img_size", minimum=1)
    if use_lora:
        lora_r = _validation.whole_number(lora_r, "lora_r", minimum=1)
        _validation.whole_number(lora_alpha, "lora_alpha", minimum=1)

    dtype = _validation.floating_dtype(dtype)
    backbone = build_prithvi_600_backbone(
        pretrained=pretrained, in_channels=in_channels, img_size=img_size, checkpoint_path=checkpoint_path,
        device=device, dtype=dtype, whole_patches=True, compile=compile,
    )
    depth = len(backbone.blocks)
    if depth < 4:
        raise InvalidArgumentError(f"the segmentation decoder needs an encoder of at least 4 blocks, this one has {depth}")
    if gradient_checkpointing:
        for block in backbone.blocks:
            block.forward = _recomputed_in_backward(block.forward)
    peft_config = None
    if use_lora:
        with torch.device("meta"):  # the split layers' own init is discarded: they take slices of qkv
            terratorch_module("models.peft_utils").replace_qkv(backbone, "qkv")
        peft_config = {
            "method": "LORA",
            "peft_config_kwargs": {"r": lora_r, "lora_alpha": lora_alpha, "target_modules": list(LORA_TARGET_MODULES)},
        }
    elif freeze_encoder:
        backbone.requires_grad_(False)

    factory = terratorch_module("models.encoder_decoder_factory").EncoderDecoderFactory()
    model = factory.build_model(
        task="segmentation",
        backbone=backbone,
        backbone_kwargs={"pretrained": pretrained},
        necks=[
            {"name": "SelectIndices", "indices": [depth // 4 - 1, depth // 2 - 1, 3 * depth // 4 - 1, depth - 1]},
            {"name": "ReshapeTokensToImage"},
            {"name": "LearnedInterpolateToPyramidal"},
        ],
        decoder="UperNetDecoder",
        num_classes=num_classes,
        peft_config=peft_config,
    )
    recipe = BuildRecipe(
        factory="build_prithvi_600",
        arguments={
            "num_classes": num_classes, "img_size": img_size, "in_channels": in_channels, "use_lora": use_lora,
            "lora_r": lora_r, "lora_alpha": lora_alpha, "freeze_encoder": freeze_encoder,
        },
        pretrained=pretrained,
        checkpoint_path=None if checkpoint_path is None else str(checkpoint_path),
    )
    segmentation = PrithviSegmentation(model, in_channels=in_channels, num_classes=num_classes, build_recipe=recipe)
    return place(segmentation, device, dtype).eval()


def build_prithvi_600_backbone(
    pretrained: bool = True,
    in_channels: int = 6,
    img_size: int = 224,
    checkpoint_path: str | os.PathLike | None = None,
    bands: Sequence[Any] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
    whole_patches: bool = False,
    compile: bool = False,
    **terratorch_kwargs: Any,
) -> nn.Module:
    """The Prithvi EO 2.0 600M ViT encoder, as TerraTorch's ``prithvi_eo_v2_600`` builds it, loaded exactly,
    in eval mode.

    Args:
        in_channels: see :func:`build_prithvi_600`; ignored when ``bands`` is given.
        img_size: the tile size the position embedding is built for.
        whole_patches: round ``img_size`` up to a whole number of patches, for callers that pad their input
            to whole patches (TerraTorch's segmentation models do).
        bands: TerraTorch band names (``HLSBands``) or ints, in input order; overrides ``in_channels``.
        device, dtype: as for :func:`build_prithvi_600`.
        compile: compile each transformer block with ``torch.compile`` (regional compilation: the 32
            identical blocks share one compiled graph). Compilation happens on the first call and again
            when the input shape changes, and takes seconds to a minute; later calls run the fused kernels.
            Needs a working ``torch.compile`` (Triton on CUDA, a C++ compiler on CPU).
        terratorch_kwargs: TerraTorch's ``PrithviViT`` arguments (``num_frames``, ``drop_path``,
            ``coords_encoding``, ...), and ``padding``, which TerraTorch's ``EncoderDecoderFactory`` passes along.
            Any other name is refused with :class:`InvalidArgumentError` (TerraTorch would ignore it).
    """
    spec = KNOWN_MODELS[PRITHVI_600M]
    device, dtype = _validation.torch_device(device), _validation.floating_dtype(dtype)
    prithvi_vit = terratorch_module("models.backbones.prithvi_vit")
    terratorch_arguments = _validation.keyword_names(prithvi_vit.PrithviViT.__init__) - _SET_BY_THIS_FACTORY
    _validation.known_keywords(
        terratorch_kwargs,
        {*_TERRATORCH_ONLY_ARGUMENTS, *terratorch_arguments, *_validation.keyword_names(build_prithvi_600_backbone)},
        "build_prithvi_600_backbone",
    )
    model_bands = list(bands) if bands is not None else _bands_for(in_channels)
    builder = terratorch_module("registry").TERRATORCH_BACKBONE_REGISTRY[spec.builder]
    checkpoint = find_checkpoint(spec, checkpoint_path) if pretrained else None
    architecture = builder_arguments(spec, checkpoint.path) if checkpoint else {}
    patch = (architecture.get("patch_size") or prithvi_vit.prithvi_cfgs[spec.builder]["patch_size"])[-1]
    if img_size < patch:
        raise InvalidArgumentError(f"img_size must be at least one {patch}-pixel patch, got {img_size}")
    arguments = {
        "bands": model_bands,
        "img_size": math.ceil(img_size / patch) * patch if whole_patches else img_size,
        "num_frames": 1,
        **terratorch_kwargs,
        **architecture,
    }

    def build() -> nn.Module:
        return builder(pretrained=False, **arguments)

    if checkpoint is None:
        with device:
            model = place(build(), device, dtype)
    else:
        pretrained_bands = list(prithvi_vit.PRETRAINED_BANDS)

        def vit_filter(state_dict: StateDict, model: nn.Module) -> StateDict:
            _check_patch_embedding(state_dict, model, checkpoint.path)
            model.patch_embed.to_empty(device=device)
            return prithvi_vit.checkpoint_filter_fn_vit(state_dict, model, pretrained_bands, model.model_bands)

        logger.info("loading Prithvi encoder from %s", checkpoint.path)
        parts = [CheckpointPart(checkpoint.path, vit_filter, spec.family)]
        model = build_and_load(build, parts, model_name=f"{spec.name} encoder", device=device, dtype=dtype)
    if compile:
        for block in model.blocks:
            block.compile()  # lazily: compiled on the first call, after LoRA or checkpointing may wrap the block
    return model.eval()


def _recomputed_in_backward(forward: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``forward`` under activation checkpointing whenever gradients are being recorded."""

    def run(*args: Any, **kwargs: Any) -> torch.Tensor:
        if torch.is_grad_enabled():
            return checkpoint(forward, *args, use_reentrant=False, **kwargs)
        return forward(*args, **kwargs)

    return run


def _half_precision_for(device: torch.device) -> torch.dtype:
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def _bands_for(in_channels: int) -> list[str]:
    in_channels = _validation.whole_number(in_channels, "in_channels", minimum=1)
    extra = [f"EXTRA_BAND_{index}" for index in range(1, in_channels - len(PRITHVI_PRETRAINED_BANDS) + 1)]
    return list(PRITHVI_PRETRAINED_BANDS[:in_channels]) + extra


def _check_patch_embedding(state_dict: StateDict, model: nn.Module, path) -> None:
    """TerraTorch keeps a random patch embedding when the checkpoint's patch size differs; refuse instead."""
    select = terratorch_module("models.backbones.select_patch_embed_weights")
    key = next((k for k in state_dict if k.endswith("patch_embed.proj.weight")), None)
    target = model.patch_embed.proj.weight
    if key is None:
        raise CheckpointMismatchError(path, "Prithvi encoder", missing=["patch_embed.proj.weight"])
    if not select.patch_embed_weights_are_compatible(target, state_dict[key]):
        raise CheckpointMismatchError(
            path,
            "Prithvi encoder",
            mismatched=[f"{key} (checkpoint {list(state_dict[key].shape)}, model {list(target.shape)} up to bands)"],
        )
