"""Tiny random-init checkpoints in the published file names, key names and folder layouts.

The files hold TerraTorch's own architectures at toy sizes, described in each folder's ``config.json``
the way ``axs_lib.models.architecture`` reads it, so loading them runs the same code as the real files.
TerraMind tokenizers have no toy size in TerraTorch; their ``config.json`` names the library's toy presets
(``axs_lib.models.tokenizer_presets``), which loading installs beside TerraTorch's own.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from huggingface_hub.file_download import repo_folder_name

from axs_lib.weights.catalog import KNOWN_MODELS, TERRAMIND_MODALITIES, TERRAMIND_MODELS, Family
from axs_lib.models.loading import parameters_on_meta
from axs_lib.models.tokenizer_presets import TOY_DIFFUSION_DECODER, TOY_VIT_DECODER, TOY_VIT_ENCODER, install_toy_presets

TINY_ENCODER = TOY_VIT_ENCODER
TINY_DECODER = TOY_DIFFUSION_DECODER
TINY_VIT_DECODER = TOY_VIT_DECODER
VQVAE_TOKENIZERS = ("TerraMind-1.0-Tokenizer-LULC",)
TINY_TERRAMIND = "terramind_v1_tiny"
TINY_PRITHVI = {"embed_dim": 32, "depth": 4, "num_heads": 2, "mlp_ratio": 2.0, "patch_size": [1, 14, 14]}


def install_tiny_tokenizer_presets() -> None:
    """Make ``axs_tiny_vit_enc``, ``axs_tiny_vit_dec`` and ``unet_axs_tiny`` available to TerraTorch's tokenizer builders."""
    install_toy_presets()


def _random_state_dict(*modules: torch.nn.Module, seed: int = 0, strip: str = "") -> dict[str, torch.Tensor]:
    """Random values for parameters (built on meta), copies of buffers; the first module naming a key wins.

    A parameter registered under several names (tied weights) gets one tensor under all of them, as
    ``torch.save`` of the real model stores it.
    """
    generator = torch.Generator().manual_seed(seed)
    values: dict[int, torch.Tensor] = {}
    state: dict[str, torch.Tensor] = {}
    for module in modules:
        for key, tensor in module.state_dict(keep_vars=True).items():
            key = key.removeprefix(strip)
            if key in state:
                continue
            if id(tensor) not in values:
                if tensor.is_meta:
                    values[id(tensor)] = torch.empty(tensor.shape).uniform_(-0.05, 0.05, generator=generator)
                else:
                    values[id(tensor)] = tensor.detach().clone().contiguous()
            state[key] = values[id(tensor)]
    return state


def terramind_state_dict(variant: str = TINY_TERRAMIND, seed: int = 0) -> dict[str, torch.Tensor]:
    """Keys of the published TerraMind MAE checkpoint, for every modality, for a TerraTorch TerraMind size."""
    from terratorch.registry import TERRATORCH_BACKBONE_REGISTRY, TERRATORCH_FULL_MODEL_REGISTRY

    raw = [name for name, modality in TERRAMIND_MODALITIES.items() if modality.channels]
    generatable = [name for name, modality in TERRAMIND_MODALITIES.items() if modality.generatable]
    with parameters_on_meta():
        mae = TERRATORCH_FULL_MODEL_REGISTRY[f"{variant}_generate"](
            pretrained=False, modalities=list(TERRAMIND_MODALITIES), output_modalities=generatable
        ).sampler.model
        encoder = TERRATORCH_BACKBONE_REGISTRY[variant](pretrained=False, modalities=raw)
    return _random_state_dict(mae, encoder, seed=seed)


def tokenizer_state_dict(name: str, seed: int = 0, **builder_arguments) -> dict[str, torch.Tensor]:
    """A TerraMind tokenizer checkpoint; the tiny architecture unless ``builder_arguments`` say otherwise."""
    from terratorch.registry import TERRATORCH_FULL_MODEL_REGISTRY

    install_tiny_tokenizer_presets()
    arguments = builder_arguments or config_for(name)["pretrained_cfg"]
    with parameters_on_meta():
        tokenizer = TERRATORCH_FULL_MODEL_REGISTRY[KNOWN_MODELS[name].builder](pretrained=False, **arguments)
    return _random_state_dict(tokenizer, seed=seed)


def prithvi_state_dict(seed: int = 0, variant: str = "prithvi_eo_v2_600", **architecture) -> dict[str, torch.Tensor]:
    """Keys of the published Prithvi MAE checkpoint of ``variant`` (``encoder.*``, ``decoder.*``; Prithvi EO 1.0's
    flat layout for ``prithvi_eo_v1_100``), TL scales included; tiny unless told otherwise."""
    from terratorch.registry import TERRATORCH_FULL_MODEL_REGISTRY

    if not architecture:
        architecture = {"decoder_embed_dim": 16, "decoder_depth": 1, "decoder_num_heads": 2, **tiny_prithvi(variant)}
    with parameters_on_meta():
        mae = TERRATORCH_FULL_MODEL_REGISTRY[f"{variant}_mae"](pretrained=False, num_frames=4, **architecture)
    state = _random_state_dict(mae, seed=seed)
    if variant == "prithvi_eo_v1_100":
        return {key.removeprefix("encoder.").removeprefix("decoder."): value for key, value in state.items()}
    return state


def tiny_prithvi(variant: str) -> dict:
    """The tiny architecture of a Prithvi variant: the published patch size, toy widths and depth."""
    from terratorch.models.backbones.prithvi_vit import prithvi_cfgs

    return {**TINY_PRITHVI, "patch_size": list(prithvi_cfgs[variant]["patch_size"])}


def config_for(name: str) -> dict:
    spec = KNOWN_MODELS[name]
    if spec in TERRAMIND_MODELS:
        return {"architecture": TINY_TERRAMIND}
    if spec.family is Family.PRITHVI:
        return {"architecture": spec.builder, "pretrained_cfg": {**tiny_prithvi(spec.builder), "img_size": 224, "num_frames": 4}}
    assert spec.builder.startswith("terramind_v1_tokenizer_")
    decoder = TINY_VIT_DECODER if name in VQVAE_TOKENIZERS else TINY_DECODER
    return {"pretrained_cfg": {"enc_type": TINY_ENCODER, "dec_type": decoder}}


def state_dict_for(name: str) -> dict[str, torch.Tensor]:
    """Every size of TerraMind gets the tiny architecture, with its own values (seed) so that files differ."""
    if KNOWN_MODELS[name] in TERRAMIND_MODELS:
        return terramind_state_dict(seed=TERRAMIND_MODELS.index(KNOWN_MODELS[name]))
    if KNOWN_MODELS[name].family is Family.PRITHVI:
        return prithvi_state_dict(variant=KNOWN_MODELS[name].builder)
    return tokenizer_state_dict(name)


def model_folder(root: Path, name: str, layout: str = "plain", revision: str = "0" * 40) -> Path:
    """Where a model lives under ``root``: ``plain`` (``root/<name>``) or ``snapshot`` (hub cache layout)."""
    spec = KNOWN_MODELS[name]
    if layout == "plain":
        return root / name
    repo_folder = root / repo_folder_name(repo_id=spec.repo_id, repo_type="model")
    (repo_folder / "refs").mkdir(parents=True, exist_ok=True)
    (repo_folder / "refs" / "main").write_text(revision)
    return repo_folder / "snapshots" / revision


def write_tiny_model(root: Path, name: str, layout: str = "plain") -> Path:
    """Write one tiny checkpoint (published file name) and its ``config.json``; return the file."""
    folder = model_folder(Path(root), name, layout)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / KNOWN_MODELS[name].filename
    torch.save(state_dict_for(name), path)
    (folder / "config.json").write_text(json.dumps(config_for(name), indent=2))
    return path


def write_tiny_weights(root: Path, names=None, layout: str = "plain") -> dict[str, Path]:
    """Write tiny checkpoints for ``names`` (default: every known model) under ``root``."""
    return {name: write_tiny_model(root, name, layout) for name in (names or KNOWN_MODELS)}
