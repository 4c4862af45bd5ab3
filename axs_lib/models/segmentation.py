"""The segmentation model for every encoder of both families: TerraTorch's pixel-wise model, its logits, and how a
recorded recipe (a saved folder's ``build`` entry) builds it again."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import _validation
from ._terratorch import terratorch_module
from ..errors import InvalidArgumentError
from ..weights.catalog import KNOWN_MODELS, PRITHVI_600M, TERRAMIND_MODALITIES, ModelSpec
from ..weights.discovery import find_checkpoint
from .hub_mixin import SavedModelMixin
from .lightning_checkpoint import read_lightning_checkpoint
from .loading import check_saved_tensors, place
from .pretrained import (
    base_model_entry, base_weights, is_earlier_save, json_ready, read_adapter, read_folder_config, read_saved_weights,
    refused_build, write_folder,
)
from .recipe import BuildRecipe, base_model_spec, input_embedding

logger = logging.getLogger(__name__)

ENCODER_PREFIX = "model.encoder."
"""The encoder's weights in the model's state dict."""


class SegmentationLogits(torch.Tensor):
    """Logits ``[B, num_classes, H, W]``: a plain tensor that also reads as TerraTorch's ``ModelOutput``.

    ``logits.output`` is the same tensor and ``logits.auxiliary_heads`` is empty, so TerraTorch's
    ``SemanticSegmentationTask(model=...)`` and its loss handler accept it. Any operation on it returns an
    ordinary ``torch.Tensor``; gradients flow through it as through the logits. ``torch.save`` stores it as an
    ordinary tensor, so ``torch.load`` (``weights_only`` by default) reads it back.
    """

    __torch_function__ = torch._C._disabled_torch_function_impl

    def __reduce_ex__(self, protocol: int):
        return self.as_subclass(torch.Tensor).__reduce_ex__(protocol)

    @property
    def output(self) -> torch.Tensor:
        return self.as_subclass(torch.Tensor)

    @property
    def auxiliary_heads(self) -> dict[str, torch.Tensor]:
        return {}


class SegmentationModel(SavedModelMixin, nn.Module):
    """TerraTorch's pixel-wise segmentation model around a Prithvi EO or TerraMind encoder, returning logits
    ``[B, num_classes, H, W]``. ``PrithviSegmentation`` is the same class under its earlier name.

    ``model.save_pretrained(folder, include_base=False)`` and ``SegmentationModel.from_pretrained(path,
    checkpoint_path=None, device=None, dtype=None)`` come from :class:`~axs_lib.models.hub_mixin.SavedModelMixin`
    (see :meth:`_save_pretrained` and :meth:`_from_pretrained` for what they take).

    Attributes:
        model: the TerraTorch ``PixelWiseModel`` (encoder, necks, decoder, head).
        in_channels: bands the input must have.
        num_classes: output channels.
        patch_size: the encoder's patch size in pixels (14; 16 for Prithvi EO 1.0).
        build_recipe: how the model was built (factory name and arguments), so that
            :meth:`save_pretrained` can record it and :meth:`from_pretrained` build it again.
    """

    def __init__(self, model: nn.Module, in_channels: int, num_classes: int, build_recipe: BuildRecipe | None = None):
        super().__init__()
        self.model = model
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.patch_size = input_embedding(model).patch_size
        self.build_recipe = build_recipe

    @property
    def base_model(self) -> ModelSpec:
        """The catalog entry of the model the encoder was built as (and fine-tuned from, when pretrained)."""
        if self.build_recipe is None:
            return KNOWN_MODELS[PRITHVI_600M]
        return base_model_spec(self.build_recipe.factory, self.build_recipe.arguments)

    @property
    def described(self) -> str:
        """What messages call it: ``segmentation model on <base model>``."""
        return f"segmentation model on {self.base_model.name}"

    @property
    def input_modality(self) -> str | None:
        """For a TerraMind encoder, the modality an image tensor is taken as (its first); ``None`` for Prithvi."""
        return input_embedding(self.model).modality

    @property
    def input_bands(self) -> tuple[str, ...]:
        """The pretraining bands, in input order: the Prithvi model's, or the TerraMind modality's (catalog)."""
        modality = self.input_modality
        return self.base_model.bands if modality is None else TERRAMIND_MODALITIES[modality].bands

    @property
    def input_statistics(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Mean and standard deviation of :attr:`input_bands` in pretraining (the catalog's, TerraTorch's values:
        reflectance x 10000 for optical bands, dB for Sentinel-1)."""
        modality = self.input_modality
        source = self.base_model if modality is None else TERRAMIND_MODALITIES[modality]
        return source.mean, source.std

    @property
    def num_frames(self) -> int:
        """Time steps the encoder takes: images are ``[B, in_channels, num_frames, H, W]`` when above 1."""
        encoder = self._prithvi_encoder
        return 1 if encoder is None else encoder.num_frames

    @property
    def coordinates(self) -> tuple[str, ...]:
        """The coordinates the encoder adds when given: ``"temporal_coords"``, ``"location_coords"``, or none."""
        encoder = self._prithvi_encoder
        if encoder is None:
            return ()
        return tuple(
            name
            for name, used in (("temporal_coords", encoder.temporal_encoding), ("location_coords", encoder.location_encoding))
            if used
        )

    @property
    def _prithvi_encoder(self) -> nn.Module | None:
        vit = terratorch_module("models.backbones.prithvi_mae").PrithviViT
        return next((module for module in self.model.modules() if isinstance(module, vit)), None)

    @property
    def head_dtype(self) -> torch.dtype:
        return next(self.model.head.parameters()).dtype

    def forward(
        self,
        images: torch.Tensor,
        temporal_coords: torch.Tensor | None = None,
        location_coords: torch.Tensor | None = None,
    ) -> SegmentationLogits:
        """Logits for ``images`` ``[B, in_channels, H, W]`` (or a time stack ``[B, in_channels, T, H, W]`` for
        an encoder built with ``num_frames=T``), computed in the model's dtype.

        ``temporal_coords [B, T, 2]`` (year, day of year) and ``location_coords [B, 2]`` (lat, lon) go to a
        TL encoder (``*_tl`` backbones), which adds them when given. The result is a ``torch.Tensor`` that
        TerraTorch's tasks can also read as a ``ModelOutput`` (see :class:`SegmentationLogits`).
        """
        if images.ndim not in (4, 5) or images.shape[1] != self.in_channels:
            raise InvalidArgumentError(
                f"expected images of shape [B, {self.in_channels}, H, W] or [B, {self.in_channels}, T, H, W], got "
                f"{list(images.shape)}; build the model with in_channels="
                f"{images.shape[1] if images.ndim in (4, 5) else '<bands>'} to use other bands."
            )
        coordinates = {
            name: value.to(self.head_dtype)
            for name, value in (("temporal_coords", temporal_coords), ("location_coords", location_coords))
            if value is not None
        }
        logits = self.model(images.to(self.head_dtype), **coordinates).output
        logits = logits.unsqueeze(1) if logits.ndim == 3 else logits
        return logits.as_subclass(SegmentationLogits)

    def _save_pretrained(self, folder: Path, include_base: bool = False) -> None:
        """``save_pretrained(folder, include_base=False)``: the folder layout of :mod:`axs_lib.models.pretrained`.

        ``model.safetensors`` holds what fine-tuning changed: necks, decoder, head, the patch embedding and every
        trainable encoder weight (all of the encoder when it is not the base's); LoRA adapters go to PEFT's own
        files. ``include_base=True`` also copies the base encoder weights, so that the folder loads with no
        other file.
        """
        if self.build_recipe is None:
            raise InvalidArgumentError(
                "save_pretrained needs a model made by a factory or from_pretrained (it records how to rebuild "
                "the model); this one was built another way"
            )
        recipe = self.build_recipe
        base_spec = self.base_model
        base_file = find_checkpoint(base_spec, recipe.checkpoint_path).path if recipe.pretrained else None
        from_base = base_file is not None and recipe.encoder_is_base
        trainable = {name for name, parameter in self.named_parameters() if parameter.requires_grad}

        def kept(key: str) -> bool:
            if _is_adapter_key(key):
                return False
            if not from_base or not key.startswith(ENCODER_PREFIX):
                return True
            return key in trainable or ".patch_embed." in key

        config = {
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "patch_size": self.patch_size,
            "dtype": str(self.head_dtype).removeprefix("torch."),
            "build": {"factory": recipe.factory, "arguments": json_ready(recipe.arguments, "build arguments")},
            "base_model": None if base_file is None else base_model_entry(base_file, base_spec, from_base, include_base),
        }
        weights = {key: value for key, value in self.state_dict().items() if kept(key)}
        base_name = None if base_file is None else f"{base_spec.name}@{config['base_model']['fingerprint']}"
        write_adapter = partial(self._write_adapter, base_name=base_name) if _is_peft_model(self.model.encoder) else None
        base = None if base_file is None else (base_file, base_spec)
        write_folder(folder, config, weights, base=base, include_base=include_base, write_adapter=write_adapter)

    def _write_adapter(self, folder: Path, base_name: str | None) -> None:
        """PEFT's adapter files, naming the base as ``<catalog name>@<fingerprint>`` (what peft records as the base)."""
        encoder = self.model.encoder
        if base_name is not None:
            for adapter in encoder.peft_config.values():
                adapter.base_model_name_or_path = base_name
        # no embedding layers to save, and "auto" would look the base's name up on the Hub
        encoder.save_pretrained(str(folder), save_embedding_layers=False)

    @classmethod
    def _replaceable(cls, folder: Path) -> bool:
        return is_earlier_save(folder)

    @classmethod
    def _from_pretrained(
        cls,
        path: Path,
        checkpoint_path: str | os.PathLike | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
    ) -> SegmentationModel:
        """``from_pretrained(path, checkpoint_path=None, device=None, dtype=None)``: a folder written by
        ``save_pretrained``, or a TerraTorch Lightning ``.ckpt``; every weight checked (strict keys and shapes).

        ``checkpoint_path`` points at the base encoder weights when they are not in the usual places; ``device``
        (default CPU) and ``dtype`` (default: as saved) say where and how the weights are placed. Frozen encoder
        weights not in the folder are the base's, found as usual and checked against the recorded fingerprint.

        Raises:
            NotASavedModelError: ``path`` is neither such a folder nor such a checkpoint.
            BaseModelMismatchError: the base weights found are not the ones the model was fine-tuned from.
            CheckpointMismatchError: a saved file lacks a weight the model needs, or has one it does not.
        """
        device, dtype = _validation.torch_device(device), _validation.floating_dtype(dtype)
        if path.is_file():
            return cls._from_lightning_checkpoint(path, checkpoint_path, device, dtype)
        config = read_folder_config(path)
        dtype = dtype or _validation.floating_dtype(config["dtype"])
        base_path = base_weights(path, config, checkpoint_path)
        recipe = config["build"]
        try:
            model = build_from_recipe(recipe["factory"], recipe["arguments"], pretrained=base_path is not None,
                                      checkpoint_path=base_path, device=device, dtype=dtype)
        except InvalidArgumentError as error:
            raise refused_build(path, error) from error
        base_covers_encoder = base_path is not None and config["base_model"]["frozen_weights_from_base"]
        name = model.described
        expected = {key: value for key, value in model.state_dict().items() if not _is_adapter_key(key)}
        required = [key for key in expected if not (base_covers_encoder and key.startswith(ENCODER_PREFIX))]
        model.load_state_dict(
            read_saved_weights(path, expected, required, model_name=name, device=device, dtype=dtype), strict=False
        )
        encoder = model.model.encoder
        peft = _is_peft_model(encoder)
        if peft:
            from peft import get_peft_model_state_dict, set_peft_model_state_dict
        adapter = read_adapter(path, get_peft_model_state_dict(encoder) if peft else None, model_name=name,
                               device=device, dtype=dtype)
        if adapter is not None:
            set_peft_model_state_dict(encoder, adapter)
        if base_path is not None and not base_covers_encoder:
            model.build_recipe = dataclasses.replace(model.build_recipe, encoder_is_base=False)
        return model

    @classmethod
    def _from_lightning_checkpoint(
        cls, path: Path, checkpoint_path: str | os.PathLike | None, device: torch.device, dtype: torch.dtype | None
    ) -> SegmentationModel:
        """The model of a TerraTorch Lightning checkpoint, built as its ``model_args`` say from the base weights
        found (for the architecture), every weight from the checkpoint (strict). When the frozen encoder weights
        equal the base's, a later ``save_pretrained`` refers to the base instead of copying them."""
        run = read_lightning_checkpoint(path)
        base = find_checkpoint(base_model_spec("EncoderDecoderFactory", run.model_args), checkpoint_path)
        model = build_from_recipe(
            "EncoderDecoderFactory", run.model_args, pretrained=True, checkpoint_path=base.path, device=device, dtype=dtype
        )
        expected = model.state_dict()
        check_saved_tensors(run.state_dict, expected, required=expected, source=path,
                            model_name=model.described)
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


def _is_adapter_key(key: str) -> bool:
    return ".lora_" in key


def _is_peft_model(module: nn.Module) -> bool:
    from peft import PeftModel

    return isinstance(module, PeftModel)


_RECIPE_LOCATION = frozenset({"pretrained", "checkpoint_path", "device", "dtype"})
"""Arguments of a named factory that :func:`build_from_recipe` sets itself; a recipe never holds them."""

NAMED_FACTORIES: dict[str, Callable[..., "SegmentationModel"]] = {}
"""Factories a recipe may name besides TerraTorch's ``EncoderDecoderFactory`` (``build_prithvi_600``), each
added by the module that defines it (:func:`named_factory`)."""


def named_factory(factory: Callable[..., "SegmentationModel"]) -> Callable[..., "SegmentationModel"]:
    """Register ``factory`` under its name, for recipes (saved folders) that name it."""
    NAMED_FACTORIES[factory.__name__] = factory
    return factory


def build_from_recipe(
    factory: str,
    arguments: dict[str, Any],
    *,
    pretrained: bool,
    checkpoint_path: str | os.PathLike | None,
    device: torch.device,
    dtype: torch.dtype | None,
) -> SegmentationModel:
    """Build the model a recipe describes, its encoder loaded from the base weights when ``pretrained``.

    Raises:
        InvalidArgumentError: an unknown factory, or arguments the factory does not take.
    """
    if factory in NAMED_FACTORIES:
        named = NAMED_FACTORIES[factory]
        accepted = _validation.accepted_keywords(named)
        if accepted is not None:
            _validation.known_keywords(arguments, accepted - _RECIPE_LOCATION, factory)
        return named(pretrained=pretrained, checkpoint_path=checkpoint_path, device=device, dtype=dtype, **arguments)
    if factory != "EncoderDecoderFactory":
        raise InvalidArgumentError(
            f"unknown build factory {factory!r}; expected EncoderDecoderFactory or one of {', '.join(NAMED_FACTORIES)}"
        )
    base_model_spec(factory, arguments)
    model_args = {**arguments, "backbone_pretrained": pretrained}
    if checkpoint_path is not None:
        model_args["backbone_ckpt_path"] = str(checkpoint_path)
    encoder_decoder = terratorch_module("models.encoder_decoder_factory").EncoderDecoderFactory()
    pixel_model = encoder_decoder.build_model(task="segmentation", **model_args)
    recipe = BuildRecipe(
        factory=factory,
        arguments=dict(arguments),
        pretrained=pretrained,
        checkpoint_path=None if checkpoint_path is None else str(checkpoint_path),
    )
    model = SegmentationModel(
        pixel_model,
        in_channels=input_embedding(pixel_model).channels,
        num_classes=arguments["num_classes"],
        build_recipe=recipe,
    )
    return place(model, device, dtype)
