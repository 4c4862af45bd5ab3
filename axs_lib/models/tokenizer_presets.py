"""TerraMind tokenizer encoder and decoder presets: TerraTorch's own, and this library's toy sizes.

TerraTorch's tokenizers look their ``enc_type`` and ``dec_type`` up by name in its model modules
(``vit_models``, ``unet``, ``uvit``). The toy presets (a few hundred thousand weights, used for tiny
random-weight checkpoints) are added to those modules only when a checkpoint folder's ``config.json`` names one.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from ._terratorch import terratorch_module
from ..errors import UnknownTokenizerPresetError

TOY_VIT_ENCODER = "axs_tiny_vit_enc"
TOY_VIT_DECODER = "axs_tiny_vit_dec"
TOY_DIFFUSION_DECODER = "unet_axs_tiny"

PRESET_ARGUMENTS = ("enc_type", "dec_type")
_MODELS = "models.backbones.terramind.tokenizer.models"
_VIT_MODULE, _UNET_MODULE, _UVIT_MODULE = f"{_MODELS}.vit_models", f"{_MODELS}.unet.unet", f"{_MODELS}.uvit"
_PRESET_PREFIXES = {_VIT_MODULE: "vit_", _UNET_MODULE: "unet_", _UVIT_MODULE: "uvit_"}
"""Where TerraTorch looks presets up, and how its own preset names there begin."""
_MLP_MARKER = "MLP"
"""TerraTorch builds any preset whose name contains this from the name itself (``BottleneckMLP/B_6-Wi_1024``)."""


def _toy_vit_encoder(in_channels, patch_size, resolution, patch_proj=True, post_mlp=False, **_) -> nn.Module:
    vit_models = terratorch_module(_VIT_MODULE)
    return vit_models.ViTEncoder(
        in_channels=in_channels, patch_size=patch_size, resolution=resolution, dim_tokens=32, depth=1,
        num_heads=2, mlp_ratio=2, patch_proj=patch_proj, post_mlp=post_mlp,
    )


def _toy_vit_decoder(out_channels, patch_size, resolution, patch_proj=True, post_mlp=False, out_conv=False, **_) -> nn.Module:
    vit_models = terratorch_module(_VIT_MODULE)
    return vit_models.ViTDecoder(
        out_channels=out_channels, patch_size=patch_size, resolution=resolution, dim_tokens=32, depth=1,
        num_heads=2, mlp_ratio=2, patch_proj=patch_proj, post_mlp=post_mlp, out_conv=out_conv,
    )


def _toy_diffusion_decoder(**kwargs) -> nn.Module:
    unet = terratorch_module(_UNET_MODULE)
    return unet.PatchedUNetCondCat(
        patch_size=4, model_channels=32, num_res_blocks=1, attention_resolutions=[], channel_mult=(1,),
        num_head_channels=32, **kwargs,
    )


TOY_PRESETS: dict[str, tuple[str, Callable[..., nn.Module]]] = {
    TOY_VIT_ENCODER: (_VIT_MODULE, _toy_vit_encoder),
    TOY_VIT_DECODER: (_VIT_MODULE, _toy_vit_decoder),
    TOY_DIFFUSION_DECODER: (_UNET_MODULE, _toy_diffusion_decoder),
}
"""Toy preset name -> (the TerraTorch module TerraTorch looks it up in, its builder)."""


def install_toy_presets(names: tuple[str, ...] = tuple(TOY_PRESETS)) -> None:
    """Make the toy presets ``names`` available to TerraTorch's tokenizer builders (idempotent)."""
    for name in names:
        module, builder = TOY_PRESETS[name]
        setattr(terratorch_module(module), name, builder)


def terratorch_presets() -> list[str]:
    """The encoder and decoder presets TerraTorch's own modules define."""
    return sorted(
        name
        for module_name, prefix in _PRESET_PREFIXES.items()
        for name, value in vars(terratorch_module(module_name)).items()
        if name.startswith(prefix) and inspect.isfunction(value)
    )


def provide_presets(arguments: Mapping[str, Any], config: Path) -> None:
    """Install the toy presets that tokenizer builder ``arguments`` (read from ``config``) name.

    Raises:
        UnknownTokenizerPresetError: a preset is neither TerraTorch's, an MLP id, nor a toy preset.
    """
    known = terratorch_presets()
    for argument in PRESET_ARGUMENTS:
        preset = arguments.get(argument)
        if preset is None or preset in known or (isinstance(preset, str) and _MLP_MARKER in preset):
            continue
        if not isinstance(preset, str) or preset not in TOY_PRESETS:
            raise UnknownTokenizerPresetError(config, argument, preset, [*known, *TOY_PRESETS])
        install_toy_presets((preset,))
