"""Public factories for TerraMind 1.0: any-to-any generation and feature extraction."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from torch import nn

from . import _validation
from ._terratorch import registry, terratorch_module
from .architecture import builder_arguments, builder_name
from .catalog import KNOWN_MODELS, TERRAMIND_LARGE, TERRAMIND_MODALITIES
from .discovery import CheckpointFile, find_checkpoint
from .loading import CheckpointPart, StateDict, build_and_load

logger = logging.getLogger(__name__)

TIMESTEPS_RANGE = (6, 50)
"""Diffusion steps of the tokenizer decoder: 6 is the low-memory setting, 50 TerraTorch's default."""

GENERATOR_INPUTS = tuple(TERRAMIND_MODALITIES)
GENERATOR_OUTPUTS = tuple(name for name, modality in TERRAMIND_MODALITIES.items() if modality.generatable)
BACKBONE_MODALITIES = tuple(name for name, modality in TERRAMIND_MODALITIES.items() if modality.channels)


def build_terramind_generator(
    input_modalities: Sequence[str] = ("S1GRD",),
    output_modalities: Sequence[str] = ("S2L2A",),
    timesteps: int = 12,
    standardize: bool = True,
    pretrained: bool = True,
    checkpoint_path: str | os.PathLike | None = None,
) -> nn.Module:
    """TerraMind 1.0 Large any-to-any generation, e.g. Sentinel-1 GRD to Sentinel-2 L2A.

    The model is called with ``{"S1GRD": tensor[B, 2, H, W]}`` (H, W multiples of 16) and returns
    ``{"S2L2A": tensor[B, 12, H, W]}``. With ``standardize=True`` inputs and outputs are in physical units
    (dB for SAR, reflectance x 10000 for optical) and TerraMind's pretraining statistics are applied inside.

    Args:
        input_modalities: any of ``GENERATOR_INPUTS``.
        output_modalities: any of ``GENERATOR_OUTPUTS``; each needs its tokenizer checkpoint on disk.
        timesteps: diffusion steps of the tokenizer decoder, within ``TIMESTEPS_RANGE`` (fewer is faster).
        standardize: apply the pretraining mean/std to inputs and undo it on outputs.
        pretrained: load TerraMind and the tokenizers from local files; ``False`` gives random weights
            without touching the disk or the network.
        checkpoint_path: TerraMind's file or folder; tokenizers are looked for beside it first.

    Raises:
        InvalidArgumentError: unknown or empty modalities, ``timesteps`` out of range.
        CheckpointNotFoundError, CorruptCheckpointError, CheckpointMismatchError: see ``axs_lib.models.errors``.
    """
    inputs = _validation.modality_names(input_modalities, "input_modalities", GENERATOR_INPUTS)
    outputs = _validation.modality_names(output_modalities, "output_modalities", GENERATOR_OUTPUTS)
    timesteps = _validation.whole_number(timesteps, "timesteps", minimum=TIMESTEPS_RANGE[0], maximum=TIMESTEPS_RANGE[1])
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
        return build(spec.builder).eval()

    checkpoint = find_checkpoint(spec, checkpoint_path)
    tokenized = outputs + tuple(name for name in inputs if TERRAMIND_MODALITIES[name].channels is None)
    tokenizers = {
        TERRAMIND_MODALITIES[name].token_key: find_checkpoint(
            KNOWN_MODELS[TERRAMIND_MODALITIES[name].tokenizer], near=checkpoint.path
        )
        for name in dict.fromkeys(tokenized)
    }

    def build_with_tokenizers() -> nn.Module:
        model = build(builder_name(spec, checkpoint.path))
        if set(model.tokenizer) != set(tokenizers):
            raise RuntimeError(
                f"TerraTorch built tokenizers {sorted(model.tokenizer)}, this library expected {sorted(tokenizers)}"
            )
        model.tokenizer = nn.ModuleDict({key: _build_tokenizer(file) for key, file in tokenizers.items()})
        return model

    generate_filter = terratorch_module("models.backbones.terramind.model.terramind_register").checkpoint_filter_fn_generate
    parts = [CheckpointPart(checkpoint.path, generate_filter)]
    parts += [CheckpointPart(file.path, _prefixed(f"tokenizer.{key}."), f"tokenizer.{key}.") for key, file in tokenizers.items()]
    logger.info("loading TerraMind generator from %s (+ %d tokenizers)", checkpoint.path, len(tokenizers))
    return build_and_load(build_with_tokenizers, parts, model_name=f"{spec.name} generator").eval()


def build_terramind_backbone(
    modalities: Sequence[str] = ("S1GRD", "S2L2A"),
    pretrained: bool = True,
    freeze: bool = True,
    checkpoint_path: str | os.PathLike | None = None,
) -> nn.Module:
    """TerraMind 1.0 Large encoder for feature extraction.

    The model is called with ``{"S1GRD": tensor[B, 2, H, W], ...}`` and returns a list with one
    ``[B, tokens, 1024]`` tensor per encoder layer (TerraTorch's backbone interface).

    Args:
        modalities: raw image modalities among ``BACKBONE_MODALITIES``.
        pretrained: load the local TerraMind checkpoint; ``False`` gives random weights.
        freeze: no parameter requires grad and the model is in eval mode.
        checkpoint_path: TerraMind's file or folder, instead of searching the default locations.
    """
    names = _validation.modality_names(modalities, "modalities", BACKBONE_MODALITIES)
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
            [CheckpointPart(checkpoint.path, vit_filter)],
            model_name=f"{spec.name} backbone",
        )
    else:
        model = build(spec.builder)
    if freeze:
        model.requires_grad_(False).eval()
    return model


def _build_tokenizer(checkpoint: CheckpointFile) -> nn.Module:
    builder = registry().TERRATORCH_FULL_MODEL_REGISTRY[checkpoint.spec.builder]
    return builder(pretrained=False, **builder_arguments(checkpoint.spec, checkpoint.path))


def _prefixed(prefix: str):
    """TerraTorch loads tokenizer files as they are; inside the generator their keys gain ``prefix``."""

    def checkpoint_filter(state_dict: StateDict, model: nn.Module) -> StateDict:
        return {prefix + key: value for key, value in state_dict.items()}

    return checkpoint_filter
