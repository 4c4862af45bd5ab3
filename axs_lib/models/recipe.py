"""How a fine-tunable segmentation model was built, and which base weights its encoder comes from.

A :class:`BuildRecipe` is what a saved folder's ``config.json`` records under ``build``, and what a TerraTorch
Lightning checkpoint's ``hyper_parameters`` hold; loading builds the model again from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from ..errors import InvalidArgumentError
from ..weights.catalog import KNOWN_MODELS, PRITHVI_600M, PRITHVI_MODELS, TERRAMIND_LARGE, TERRAMIND_MODELS, ModelSpec, registered_name


@dataclass(frozen=True)
class BuildRecipe:
    """How a :class:`~axs_lib.models.segmentation.SegmentationModel` was built.

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


SEGMENTATION_BACKBONES: dict[str, str] = (
    {registered_name(spec): spec.name for spec in (*PRITHVI_MODELS, *TERRAMIND_MODELS)}
    | {"prithvi_600M": PRITHVI_600M, "terramind_backbone": TERRAMIND_LARGE}
)
"""TerraTorch backbone names (registered by this library) a saved or Lightning-trained segmentation model may use,
to the catalog name of the base weights each loads: every Prithvi EO and TerraMind 1.0 backbone, and the legacy
aliases."""


def base_model_spec(factory: str, arguments: dict[str, Any]) -> ModelSpec:
    """The catalog entry of the base weights a recipe's encoder loads: Prithvi EO 2.0 600M for
    ``build_prithvi_600``, the backbone's own model for ``EncoderDecoderFactory``.

    Raises:
        InvalidArgumentError: a backbone that is not one of :data:`SEGMENTATION_BACKBONES`.
    """
    if factory == "build_prithvi_600":
        return KNOWN_MODELS[PRITHVI_600M]
    backbone = arguments.get("backbone")
    if backbone not in SEGMENTATION_BACKBONES:
        raise InvalidArgumentError(
            f"the model's backbone is {backbone!r}; a saved model's backbone is one of {', '.join(SEGMENTATION_BACKBONES)}"
        )
    return KNOWN_MODELS[SEGMENTATION_BACKBONES[backbone]]


@dataclass(frozen=True)
class InputEmbedding:
    """What a model's tensor input must be: ``channels`` bands, sides a multiple of ``patch_size`` pixels;
    for a TerraMind encoder, ``modality`` names the modality a tensor is taken as (its first one)."""

    channels: int
    patch_size: int
    modality: str | None = None


def input_embedding(model: nn.Module) -> InputEmbedding:
    """The input embedding of the encoder inside a TerraTorch model: Prithvi's patch embedding, or the
    embedding of a TerraMind encoder's first modality (the one a plain tensor input is given to)."""
    for name, module in model.named_modules():
        if name.endswith("patch_embed.proj"):
            return InputEmbedding(module.in_channels, int(module.kernel_size[-1]))
        if hasattr(module, "encoder_embeddings") and hasattr(module, "mod_name_mapping"):
            modality = module.modalities[0]
            embedding = module.encoder_embeddings[module.mod_name_mapping[modality]]
            return InputEmbedding(embedding.num_channels, int(embedding.patch_size[-1]), modality)
    raise InvalidArgumentError(f"{type(model).__name__} holds neither a Prithvi nor a TerraMind encoder")
