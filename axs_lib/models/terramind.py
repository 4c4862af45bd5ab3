"""Public factories for TerraMind 1.0: any-to-any generation and feature extraction."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from functools import partial

import torch
from torch import nn

from . import _validation
from ._terratorch import registry, terratorch_module
from .architecture import builder_arguments, builder_name
from ..weights.catalog import KNOWN_MODELS, TERRAMIND_LARGE, TERRAMIND_MODALITIES
from ..weights.discovery import CheckpointFile, find_checkpoint
from ..errors import InvalidArgumentError
from .loading import CheckpointPart, StateDict, build_and_load, place

logger = logging.getLogger(__name__)

TIMESTEPS_RANGE = (6, 50)
"""Diffusion steps of the tokenizer decoder: 6 is the low-memory setting, 50 TerraTorch's default."""

GENERATOR_INPUTS = tuple(TERRAMIND_MODALITIES)
GENERATOR_OUTPUTS = tuple(name for name, modality in TERRAMIND_MODALITIES.items() if modality.generatable)
BACKBONE_MODALITIES = tuple(name for name, modality in TERRAMIND_MODALITIES.items() if modality.channels)


PATCH_SIZE = 16
"""TerraMind's patch size: generator inputs must be a whole number of patches high and wide."""


class TerraMindGenerator(nn.Module):
    """TerraTorch's ``TerraMindGeneration`` with checked inputs and reduced-precision support.

    Call it with ``{"S1GRD": tensor[B, 2, H, W]}``; it returns ``{"S2L2A": tensor[B, 12, H, W]}`` in float32.
    When the weights are float16/bfloat16 the forward pass runs under ``torch.autocast`` in that dtype.

    Attributes:
        model: the TerraTorch ``TerraMindGeneration`` module.
        input_modalities, output_modalities: as built.
    """

    def __init__(self, model: nn.Module, input_modalities: Sequence[str], output_modalities: Sequence[str]):
        super().__init__()
        for module in model.modules():
            if isinstance(module, nn.GroupNorm):
                module.float()  # the tokenizers' UNet normalises in float32 (TerraTorch's GroupNorm32)
        self.model = model
        self.input_modalities = tuple(input_modalities)
        self.output_modalities = tuple(output_modalities)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.sampler.parameters()).dtype

    def forward(self, inputs: Mapping[str, torch.Tensor], timesteps: int | None = None) -> dict[str, torch.Tensor]:
        """Generate the output modalities from ``inputs`` (any non-empty subset of the input modalities).

        Args:
            timesteps: diffusion steps for this call, within ``TIMESTEPS_RANGE`` (default: as built).
        """
        self._check(inputs)
        if timesteps is not None:
            timesteps = _checked_timesteps(timesteps)
        dtype, device = self.dtype, next(self.model.sampler.parameters()).device
        batch = {name: tensor.to(device=device, dtype=dtype) for name, tensor in inputs.items()}
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            outputs = self.model(batch, timesteps=timesteps)
        return {name: tensor.float() for name, tensor in outputs.items()}

    def _check(self, inputs: Mapping[str, torch.Tensor]) -> None:
        if not isinstance(inputs, Mapping) or not inputs:
            raise InvalidArgumentError(
                f"pass a dict of input images, e.g. {{'{self.input_modalities[0]}': tensor[B, C, H, W]}}"
            )
        for name, tensor in inputs.items():
            if name not in self.input_modalities:
                raise InvalidArgumentError(
                    f"unexpected input modality {name!r}; this generator was built for {', '.join(self.input_modalities)}"
                )
            check_image(name, tensor)
            shape = list(tensor.shape)
            if shape[-1] % PATCH_SIZE or shape[-2] % PATCH_SIZE:
                raise InvalidArgumentError(
                    f"{name} is {shape[-2]}x{shape[-1]} pixels; TerraMind needs multiples of {PATCH_SIZE} "
                    "(tile or crop the scene, e.g. to 224x224)"
                )


def check_image(name: str, image: torch.Tensor) -> None:
    """``image`` is ``[B, C, H, W]`` with the bands TerraMind was pretrained on for modality ``name``."""
    bands = TERRAMIND_MODALITIES[name].bands
    shape = list(image.shape)
    if image.ndim != 4 or (bands and shape[1] != len(bands)):
        expected = f"{len(bands)} bands ({', '.join(bands)}, in this order)" if bands else "its channels"
        raise InvalidArgumentError(f"{name} must have shape [B, {len(bands) or 'C'}, H, W] with {expected}; got {shape}")


def _check_backbone_inputs(backbone: nn.Module, args: tuple, kwargs: dict) -> None:
    """Forward pre-hook: refuse images with the wrong bands before TerraTorch fails on a matrix product."""
    images = args[0] if args else None
    named = dict(images) if isinstance(images, Mapping) else {} if images is None else {backbone.modalities[0]: images}
    named.update(kwargs)
    for name, image in named.items():
        if name in TERRAMIND_MODALITIES and isinstance(image, torch.Tensor):
            check_image(name, image)


def build_terramind_generator(
    input_modalities: Sequence[str] = ("S1GRD",),
    output_modalities: Sequence[str] = ("S2L2A",),
    timesteps: int = 12,
    standardize: bool = True,
    pretrained: bool = True,
    checkpoint_path: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
) -> TerraMindGenerator:
    """TerraMind 1.0 Large any-to-any generation, e.g. Sentinel-1 GRD to Sentinel-2 L2A.

    The model is called with ``{"S1GRD": tensor[B, 2, H, W]}`` (H, W multiples of 16) and returns
    ``{"S2L2A": tensor[B, 12, H, W]}`` (see :class:`TerraMindGenerator`). With ``standardize=True`` inputs and outputs are in physical units
    (dB for SAR, reflectance x 10000 for optical) and TerraMind's pretraining statistics are applied inside.

    Args:
        input_modalities: any of ``GENERATOR_INPUTS``.
        output_modalities: any of ``GENERATOR_OUTPUTS``; each needs its tokenizer checkpoint on disk.
        timesteps: diffusion steps of the tokenizer decoder, within ``TIMESTEPS_RANGE`` (fewer is faster).
        standardize: apply the pretraining mean/std to inputs and undo it on outputs.
        pretrained: load TerraMind and the tokenizers from local files; ``False`` gives random weights
            without touching the disk or the network.
        checkpoint_path: TerraMind's file or folder; tokenizers are looked for beside it first.
        device: where the weights are loaded (default CPU).
        dtype: ``torch.float32`` (default: as stored), ``torch.float16``, ``torch.bfloat16`` or a name such
            as ``"bf16"``.

    Raises:
        InvalidArgumentError: unknown or empty modalities, ``timesteps`` out of range.
        CheckpointNotFoundError, CorruptCheckpointError, CheckpointMismatchError: see ``axs_lib.errors``.
    """
    inputs = _validation.modality_names(input_modalities, "input_modalities", GENERATOR_INPUTS)
    outputs = _validation.modality_names(output_modalities, "output_modalities", GENERATOR_OUTPUTS)
    timesteps = _checked_timesteps(timesteps)
    device, dtype = _validation.torch_device(device), _validation.floating_dtype(dtype)
    builders = registry().TERRATORCH_FULL_MODEL_REGISTRY
    spec = KNOWN_MODELS[TERRAMIND_LARGE]

    def build(variant: str) -> nn.Module:
        return builders[f"{variant}_generate"](
            pretrained=False,
            modalities=list(inputs),
            output_modalities=list(outputs),
            timesteps=timesteps,
            standardize=standardize,
        )

    if not pretrained:
        with device:
            return TerraMindGenerator(place(build(spec.builder), device, dtype), inputs, outputs).eval()

    checkpoint = find_checkpoint(spec, checkpoint_path)
    tokenized = outputs + tuple(name for name in inputs if TERRAMIND_MODALITIES[name].channels is None)
    tokenizers = {
        TERRAMIND_MODALITIES[name].token_key: find_checkpoint(
            KNOWN_MODELS[TERRAMIND_MODALITIES[name].tokenizer], near=checkpoint.path
        )
        for name in dict.fromkeys(tokenized)
    }

    register = terratorch_module("models.backbones.terramind.model.terramind_register")

    def build_with_tokenizers() -> nn.Module:
        builders = {key: partial(_build_tokenizer, file) for key, file in tokenizers.items()}
        with _tokenizer_builders(register.tokenizer_dict["v1"], builders):
            model = build(builder_name(spec, checkpoint.path))
        if set(model.tokenizer) != set(tokenizers):
            raise RuntimeError(
                f"TerraTorch built tokenizers {sorted(model.tokenizer)}, this library expected {sorted(tokenizers)}"
            )
        return model

    generate_filter = register.checkpoint_filter_fn_generate
    parts = [CheckpointPart(checkpoint.path, generate_filter, spec.family)]
    parts += [
        CheckpointPart(file.path, _prefixed(f"tokenizer.{key}."), file.spec.family, f"tokenizer.{key}.")
        for key, file in tokenizers.items()
    ]
    logger.info("loading TerraMind generator from %s (+ %d tokenizers)", checkpoint.path, len(tokenizers))
    model = build_and_load(build_with_tokenizers, parts, model_name=f"{spec.name} generator", device=device, dtype=dtype)
    return TerraMindGenerator(model, inputs, outputs).eval()


def build_terramind_backbone(
    modalities: Sequence[str] = ("S1GRD", "S2L2A"),
    pretrained: bool = True,
    freeze: bool = True,
    checkpoint_path: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
) -> nn.Module:
    """TerraMind 1.0 Large encoder for feature extraction.

    The model is called with ``{"S1GRD": tensor[B, 2, H, W], ...}`` and returns a list with one
    ``[B, tokens, 1024]`` tensor per encoder layer (TerraTorch's backbone interface). An image with other
    bands than the modality's pretrained ones raises :class:`InvalidArgumentError` naming them.

    Args:
        modalities: raw image modalities among ``BACKBONE_MODALITIES``.
        pretrained: load the local TerraMind checkpoint; ``False`` gives random weights.
        freeze: no parameter requires grad. Either way the model is returned in eval mode; call
            ``model.train()`` before fine-tuning it, in a plain loop and before Lightning's ``fit`` alike.
        checkpoint_path: TerraMind's file or folder, instead of searching the default locations.
        device: where the weights are loaded (default CPU).
        dtype: ``torch.float32`` (default: as stored), ``torch.float16``, ``torch.bfloat16`` or a name such
            as ``"bf16"``; inputs must be given in the same dtype.
    """
    names = _validation.modality_names(modalities, "modalities", BACKBONE_MODALITIES)
    device, dtype = _validation.torch_device(device), _validation.floating_dtype(dtype)
    builders = registry().TERRATORCH_BACKBONE_REGISTRY
    spec = KNOWN_MODELS[TERRAMIND_LARGE]

    def build(variant: str) -> nn.Module:
        return builders[variant](pretrained=False, modalities=list(names))

    if pretrained:
        checkpoint = find_checkpoint(spec, checkpoint_path)
        vit_filter = terratorch_module("models.backbones.terramind.model.terramind_register").checkpoint_filter_fn
        logger.info("loading TerraMind backbone from %s", checkpoint.path)
        model = build_and_load(
            lambda: build(builder_name(spec, checkpoint.path)),
            [CheckpointPart(checkpoint.path, vit_filter, spec.family)],
            model_name=f"{spec.name} backbone",
            device=device,
            dtype=dtype,
        )
    else:
        with device:
            model = place(build(spec.builder), device, dtype)
    model.register_forward_pre_hook(_check_backbone_inputs, with_kwargs=True)
    if freeze:
        model.requires_grad_(False)
    return model.eval()


def _checked_timesteps(timesteps: object) -> int:
    return _validation.whole_number(timesteps, "timesteps", minimum=TIMESTEPS_RANGE[0], maximum=TIMESTEPS_RANGE[1])


def _build_tokenizer(checkpoint: CheckpointFile, pretrained: bool = False) -> nn.Module:
    """The tokenizer architecture of ``checkpoint``, weights left to the loader (``pretrained`` is ignored)."""
    builder = registry().TERRATORCH_FULL_MODEL_REGISTRY[checkpoint.spec.builder]
    return builder(pretrained=False, **builder_arguments(checkpoint.spec, checkpoint.path))


_TOKENIZER_TABLE_LOCK = threading.Lock()


@contextmanager
def _tokenizer_builders(table: dict[str, Callable[..., nn.Module]], builders: dict[str, Callable[..., nn.Module]]):
    """Let TerraTorch's generation model build its tokenizers with ``builders`` instead of its own table.

    TerraTorch's builder always takes tokenizers from its module-level table (published sizes, weights
    from the Hub); the entries are swapped for the duration of the build and restored after.
    """
    with _TOKENIZER_TABLE_LOCK:
        saved = {key: table[key] for key in builders}
        table.update(builders)
        try:
            yield
        finally:
            table.update(saved)


def _prefixed(prefix: str):
    """TerraTorch loads tokenizer files as they are; inside the generator their keys gain ``prefix``."""

    def checkpoint_filter(state_dict: StateDict, model: nn.Module) -> StateDict:
        return {prefix + key: value for key, value in state_dict.items()}

    return checkpoint_filter
