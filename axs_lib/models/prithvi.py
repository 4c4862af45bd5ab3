"""Public factories for the Prithvi EO family: the encoders, and a TerraTorch segmentation model around 600M."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from . import _validation
from ._terratorch import needing_terratorch, terratorch_module
from .architecture import builder_arguments
from ..weights.catalog import (
    KNOWN_MODELS,
    PRITHVI_600M,
    PRITHVI_MODELS,
    ModelSpec,
)
from ..weights.discovery import CheckpointFile, find_checkpoint
from ..errors import CheckpointMismatchError, InvalidArgumentError
from .loading import CheckpointPart, StateDict, build_and_load, place
from .recipe import BuildRecipe
from .segmentation import SegmentationModel, named_factory

logger = logging.getLogger(__name__)

LORA_TARGET_MODULES = ("q_linear", "v_linear")
"""Attention projections that receive LoRA adapters, after TerraTorch splits each fused ``qkv``."""

_TERRATORCH_ONLY_ARGUMENTS = frozenset({"padding"})
"""Backbone arguments TerraTorch's ``EncoderDecoderFactory`` reads and also passes to the builder."""

_SET_BY_THIS_FACTORY = frozenset({"self", "img_size"})
"""``PrithviViT.__init__`` parameters a caller cannot pass through: ``img_size`` is this factory's own."""

_TERRATORCH_BUILDER_ARGUMENTS = frozenset({"out_indices", "model_bands"})
"""Arguments of TerraTorch's ``prithvi_eo_*`` builders that ``PrithviViT`` itself does not take."""

_REFUSED_ARGUMENTS: dict[str, tuple[Any, str]] = {
    "vit_adapter": (False, "the ViT-Adapter adds layers no published checkpoint holds; build TerraTorch's own "
                           "prithvi_eo_* name with vit_adapter=True for it"),
    "encoder_only": (True, "this builds the encoder; TerraTorch's *_mae full models hold the MAE decoder"),
    "pretrained_bands": (None, "the checkpoint's bands are fixed (BLUE, GREEN, RED, NIR_NARROW, SWIR_1, SWIR_2); "
                               "name your input's bands with bands="),
}
"""Arguments of TerraTorch's Prithvi builders refused (unless given their harmless value), and why."""

PRITHVI_VARIANTS: dict[str, ModelSpec] = {spec.builder: spec for spec in PRITHVI_MODELS}
"""TerraTorch builder name to catalog entry, for every Prithvi EO model this library loads."""

LOW_VRAM_LORA_RANK = 4
"""``low_vram=True``: LoRA rank 4 (alpha 8, the default alpha/rank of 2), frozen encoder, gradient
checkpointing, 16-bit weights."""

_TRAINING_PRESET = {"use_lora": True, "lora_r": 8, "freeze_encoder": False, "gradient_checkpointing": False}
_LOW_VRAM_PRESET = {"use_lora": True, "lora_r": LOW_VRAM_LORA_RANK, "freeze_encoder": True, "gradient_checkpointing": True}
"""What :func:`build_prithvi_600` takes for arguments left at ``None``, without and with ``low_vram``."""


PrithviSegmentation = SegmentationModel
"""The segmentation model's earlier name, kept: it is the model for every encoder, not only Prithvi's."""


@named_factory
@_validation.checked_factory()
def build_prithvi_600(
    pretrained: bool = True,
    num_classes: int = 1,
    img_size: int = 384,
    in_channels: int = 6,
    use_lora: bool | None = None,
    lora_r: int | None = None,
    lora_alpha: int | None = None,
    freeze_encoder: bool | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
    gradient_checkpointing: bool | None = None,
    low_vram: bool = False,
    compile: bool = False,
) -> SegmentationModel:
    """Prithvi EO 2.0 600M encoder in a TerraTorch UperNet segmentation model.

    Input ``[B, in_channels, H, W]`` (HLS reflectance, standardised with the Prithvi mean/std) gives logits
    ``[B, num_classes, H, W]``. Inputs are padded to whole 14-pixel patches and the logits cropped back, as
    TerraTorch does, so ``img_size`` need not be a multiple of 14.

    The model is returned in eval mode, as transformers' ``from_pretrained`` does: call ``model.train()``
    before fine-tuning, in a plain loop and before Lightning's ``trainer.fit`` alike (Lightning keeps the mode
    it is given).

    ``use_lora``, ``lora_r``, ``lora_alpha``, ``freeze_encoder``, ``gradient_checkpointing`` and ``dtype`` left at
    ``None`` take the preset's value: ``low_vram``'s when it is set, otherwise LoRA of rank 8, no freezing and no
    checkpointing. A value passed explicitly always wins over the preset.

    Args:
        pretrained: load the local Prithvi checkpoint; ``False`` gives random weights without disk access.
        num_classes: output channels.
        img_size: the tile size the model is built for.
        in_channels: bands of the input. The first ``min(in_channels, 6)`` take the pretrained patch
            embedding of BLUE, GREEN, RED, NIR_NARROW, SWIR_1, SWIR_2 in that order; extra bands start random
            (TerraTorch's band re-selection).
        use_lora: add LoRA adapters (TerraTorch ``peft_config``) to the attention query and value
            projections. LoRA freezes the encoder's own weights; adapters, decoder and head train.
        lora_r, lora_alpha: LoRA rank and scaling; ``lora_alpha`` defaults to twice ``lora_r``.
        freeze_encoder: without LoRA, freeze every encoder weight (decoder and head train). With LoRA the
            encoder weights are frozen either way.
        checkpoint_path: Prithvi's file or folder, instead of searching the default locations.
        device: where the model is placed (default CPU); the encoder is loaded straight there.
        dtype: ``torch.float32`` (default: as stored), ``torch.float16``, ``torch.bfloat16`` or a name such
            as ``"bf16"``; inputs are cast to it.
        gradient_checkpointing: recompute each encoder block in the backward pass instead of keeping its
            activations (training only; slower, much less memory).
        low_vram: the low-memory training preset: LoRA of rank 4 and alpha 8, frozen encoder, gradient
            checkpointing, and bfloat16 weights (float16 on GPUs without bfloat16), each unless given.
            16-bit weights train without a float32 master copy; prefer bfloat16 over float16.
        compile: compile the encoder blocks with ``torch.compile``; see :func:`build_prithvi_backbone`.
    """
    device = _validation.torch_device(device)
    preset = _LOW_VRAM_PRESET if low_vram else _TRAINING_PRESET
    use_lora = preset["use_lora"] if use_lora is None else use_lora
    lora_r = preset["lora_r"] if lora_r is None else lora_r
    lora_alpha = 2 * lora_r if lora_alpha is None else lora_alpha
    freeze_encoder = preset["freeze_encoder"] if freeze_encoder is None else freeze_encoder
    gradient_checkpointing = preset["gradient_checkpointing"] if gradient_checkpointing is None else gradient_checkpointing
    if low_vram and dtype is None:
        dtype = _half_precision_for(device)
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
        backbone.set_grad_checkpointing()
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
    segmentation = SegmentationModel(model, in_channels=in_channels, num_classes=num_classes, build_recipe=recipe)
    return place(segmentation, device, dtype).eval()


def build_prithvi_600_backbone(**kwargs: Any) -> nn.Module:
    """The Prithvi EO 2.0 600M encoder: :func:`build_prithvi_backbone` with ``variant="prithvi_eo_v2_600"``."""
    return build_prithvi_backbone(KNOWN_MODELS[PRITHVI_600M].builder, **kwargs)


def build_prithvi_backbone(
    variant: str = "prithvi_eo_v2_600",
    pretrained: bool = True,
    in_channels: int | None = None,
    img_size: int = 224,
    checkpoint_path: str | os.PathLike | None = None,
    bands: Sequence[Any] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
    whole_patches: bool = False,
    compile: bool = False,
    freeze_encoder: bool = False,
    **terratorch_kwargs: Any,
) -> nn.Module:
    """A Prithvi EO ViT encoder as TerraTorch's builder ``variant`` makes it, loaded exactly, in eval mode.

    The model's forward takes images ``[B, C, H, W]`` (or ``[B, C, T, H, W]`` with ``num_frames=T``) and, for the
    ``*_tl`` variants, ``temporal_coords [B, T, 2]`` (year, day of year) and ``location_coords [B, 2]`` (lat, lon),
    and returns one ``[B, tokens, embed_dim]`` tensor per block (those of ``out_indices`` when given).

    Args:
        variant: TerraTorch's builder name (``"prithvi_eo_v2_300_tl"``) or the catalog name
            (``"Prithvi-EO-2.0-300M-TL"``); see ``PRITHVI_VARIANTS``.
        in_channels: bands of the input (TerraTorch's ``in_chans`` is the same); the first
            ``min(in_channels, 6)`` take the pretrained patch embedding of BLUE, GREEN, RED, NIR_NARROW, SWIR_1,
            SWIR_2 in that order, extra bands start as TerraTorch initialises them. Default: the 6 pretrained bands.
        img_size: the tile size the position embedding is built for.
        bands: TerraTorch band names (``HLSBands``) or ints, in input order (TerraTorch's ``model_bands`` is the
            same); pretrained bands keep their weights wherever they are, others start new.
        whole_patches: round ``img_size`` up to a whole number of patches, for callers that pad their input
            to whole patches (TerraTorch's segmentation models do).
        device, dtype: as for :func:`build_prithvi_600`.
        compile: compile each transformer block with ``torch.compile`` (regional compilation: the identical
            blocks share one compiled graph). Compilation happens on the first call and again when the input
            shape changes, and takes seconds to a minute; later calls run the fused kernels. Needs a working
            ``torch.compile`` (Triton on CUDA, a C++ compiler on CPU).
        freeze_encoder: no parameter requires grad (the encoder is used as a fixed feature extractor).
        terratorch_kwargs: TerraTorch's arguments, as its ``prithvi_eo_*`` builders take them: ``out_indices``,
            ``num_frames``, ``patch_size`` (refused with ``pretrained=True`` when the checkpoint's patch embedding
            cannot serve it, where TerraTorch would start it random), ``drop_path``, ``vpt``/``vpt_n_tokens``,
            ``coords_encoding``, ``coords_scale_learn``, the other ``PrithviViT`` arguments, and ``padding``, which
            TerraTorch's ``EncoderDecoderFactory`` passes along. Prompt tokens and coordinate encodings the
            checkpoint cannot hold start as TerraTorch initialises them, named in one INFO log line. Any other
            name is refused with :class:`InvalidArgumentError` (TerraTorch would ignore it).
    """
    spec = prithvi_spec(variant)
    device, dtype = _validation.torch_device(device), _validation.floating_dtype(dtype)
    prithvi_vit = terratorch_module("models.backbones.prithvi_vit")
    preset = prithvi_vit.prithvi_cfgs[spec.builder]
    _refuse_unsupported(terratorch_kwargs)
    terratorch_arguments = _validation.keyword_names(prithvi_vit.PrithviViT.__init__) - _SET_BY_THIS_FACTORY
    _validation.known_keywords(
        terratorch_kwargs,
        {*_TERRATORCH_ONLY_ARGUMENTS, *_TERRATORCH_BUILDER_ARGUMENTS, *terratorch_arguments,
         *_validation.keyword_names(build_prithvi_backbone)},
        "build_prithvi_backbone",
    )
    model_bands = _model_bands(
        bands, terratorch_kwargs.pop("model_bands", None), in_channels, terratorch_kwargs.pop("in_chans", None),
        preset["bands"],
    )
    builder = terratorch_module("registry").TERRATORCH_BACKBONE_REGISTRY[spec.builder]
    checkpoint = find_checkpoint(spec, checkpoint_path) if pretrained else None
    architecture = builder_arguments(spec, checkpoint.path) if checkpoint else {}
    patch_size = _patch_size(
        terratorch_kwargs.pop("patch_size", None), architecture.get("patch_size") or preset["patch_size"], checkpoint
    )
    if img_size < patch_size[-1]:
        raise InvalidArgumentError(f"img_size must be at least one {patch_size[-1]}-pixel patch, got {img_size}")
    arguments = {
        "bands": model_bands,
        "img_size": math.ceil(img_size / patch_size[-1]) * patch_size[-1] if whole_patches else img_size,
        "num_frames": 1,
        **architecture,
        **terratorch_kwargs,
        "patch_size": list(patch_size),
    }
    encoder_module = needing_terratorch("_prithvi_encoder")

    def build() -> nn.Module:
        return encoder_module.as_encoder(builder(pretrained=False, **arguments))

    if checkpoint is None:
        with device:
            model = place(build(), device, dtype)
    else:
        pretrained_bands = list(preset["bands"])

        def vit_filter(state_dict: StateDict, model: nn.Module) -> StateDict:
            _check_patch_embedding(state_dict, model, checkpoint.path)
            model.patch_embed.to_empty(device=device)
            return prithvi_vit.checkpoint_filter_fn_vit(state_dict, model, pretrained_bands, model.model_bands)

        logger.info("loading Prithvi encoder from %s", checkpoint.path)
        parts = [CheckpointPart(checkpoint.path, vit_filter, spec.family)]
        model = build_and_load(
            build, parts, model_name=f"{spec.name} encoder", device=device, dtype=dtype,
            new_weights=_new_weights(arguments, preset),
        )
    if compile:
        for block in model.blocks:
            block.compile()  # lazily: compiled on the first call, after LoRA or checkpointing may wrap the block
    if freeze_encoder:
        model.requires_grad_(False)
    return model.eval()


def prithvi_spec(variant: str) -> ModelSpec:
    """The catalog entry of a Prithvi variant, by TerraTorch builder name or catalog name."""
    spec = PRITHVI_VARIANTS.get(variant) or next((s for s in PRITHVI_VARIANTS.values() if s.name == variant), None)
    if spec is None:
        raise InvalidArgumentError(f"unknown Prithvi variant {variant!r}; choose one of {', '.join(PRITHVI_VARIANTS)}")
    return spec


def _refuse_unsupported(terratorch_kwargs: dict[str, Any]) -> None:
    for name, (harmless, reason) in _REFUSED_ARGUMENTS.items():
        if name in terratorch_kwargs and terratorch_kwargs.pop(name) != harmless:
            raise InvalidArgumentError(f"{name} is not supported here: {reason}")


def _model_bands(
    bands: Sequence[Any] | None,
    model_bands: Sequence[Any] | None,
    in_channels: int | None,
    in_chans: int | None,
    pretrained_bands: Sequence[Any],
) -> list[Any]:
    """The encoder's input bands from TerraTorch's two names for them, or from the channel count."""
    if bands is not None and model_bands is not None and list(bands) != list(model_bands):
        raise InvalidArgumentError(f"bands and model_bands name different bands ({list(bands)}, {list(model_bands)}); pass one")
    if in_channels is not None and in_chans is not None and in_channels != in_chans:
        raise InvalidArgumentError(f"in_channels={in_channels} and in_chans={in_chans} differ; pass one")
    bands = bands if bands is not None else model_bands
    channels = in_channels if in_channels is not None else in_chans
    if bands is not None:
        if channels is not None and channels != len(bands):
            raise InvalidArgumentError(f"in_channels={channels}, but bands lists {len(bands)} bands; pass one")
        return list(bands)
    channels = _validation.whole_number(len(pretrained_bands) if channels is None else channels, "in_channels", minimum=1)
    extra = [f"EXTRA_BAND_{index}" for index in range(1, channels - len(pretrained_bands) + 1)]
    return list(pretrained_bands[:channels]) + extra


def _patch_size(requested: Any, published: Sequence[int], checkpoint: CheckpointFile | None) -> tuple[int, int, int]:
    """``patch_size`` as (frames, height, width): the caller's, or the checkpoint's; refused when a checkpoint is
    loaded whose patch embedding cannot serve it (TerraTorch would keep a random patch embedding then)."""
    published = _as_patch(published)
    if requested is None:
        return published
    patch = _as_patch(requested)
    if checkpoint is not None and patch != published:
        raise InvalidArgumentError(
            f"patch_size={list(patch)} cannot use the patch embedding of {checkpoint.path} (patch_size "
            f"{list(published)}): TerraTorch would start it from random weights. Leave patch_size out, or pass "
            "pretrained=False to train the whole encoder from scratch."
        )
    return patch


def _as_patch(value: Any) -> tuple[int, int, int]:
    sizes = (1, value, value) if isinstance(value, int) else tuple(value)
    if len(sizes) != 3 or not all(isinstance(size, int) and size >= 1 for size in sizes):
        raise InvalidArgumentError(f"patch_size must be an int or [frames, height, width] of ints, got {value!r}")
    return sizes


def _new_weights(arguments: dict[str, Any], preset: dict[str, Any]) -> list[str]:
    """Keys of the modules ``arguments`` ask for that a checkpoint of ``preset`` cannot hold."""
    depth = arguments.get("depth", preset["depth"])
    keys = [f"vpt_prompt_embeddings.{index}" for index in range(depth)] if arguments.get("vpt") else []
    asked = arguments.get("coords_encoding") or []
    keys += [
        f"{module}.scale"
        for coordinate, module in (("time", "temporal_embed_enc"), ("location", "location_embed_enc"))
        if coordinate in asked and coordinate not in preset["coords_encoding"]
    ]
    return keys


def _half_precision_for(device: torch.device) -> torch.dtype:
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


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
