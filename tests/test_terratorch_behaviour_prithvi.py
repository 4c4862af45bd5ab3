"""What TerraTorch's own tests check of its ``prithvi_eo_*`` backbones, checked of every ``axs_prithvi*`` name.

Written anew from the behaviour TerraTorch's ``test_prithvi_vit.py`` and ``test_encoder_decoder_model_factory.py``
test (token shapes, ``out_indices``, the ViT necks, ``EncoderDecoderFactory`` with ``peft_config``, extra bands,
tubelets and ``num_frames``), over tiny checkpoints in each published layout, plus this library's promises:
the stock name loading the same file gives the same features, and new weights are named, not hidden.
"""

from __future__ import annotations

import logging

import pytest
import torch
from terratorch.models.backbones.prithvi_vit import PRETRAINED_BANDS, prithvi_cfgs
from terratorch.models.encoder_decoder_factory import EncoderDecoderFactory
from terratorch.registry import BACKBONE_REGISTRY

from axs_lib.models import REGISTERED_NAMES, InvalidArgumentError
from axs_lib.models.prithvi import PRITHVI_VARIANTS
from axs_lib.demo.tiny_weights import TINY_PRITHVI, tiny_prithvi

NAMES = [entry.name for entry in REGISTERED_NAMES if entry.registry == "backbone" and entry.name.startswith("axs_prithvi")]
UPERNET_NECKS = [
    {"name": "SelectIndices", "indices": [0, 1, 2, 3]},
    {"name": "ReshapeTokensToImage"},
    {"name": "LearnedInterpolateToPyramidal"},
]
LORA = {
    "method": "LORA",
    "replace_qkv": "qkv",
    "peft_config_kwargs": {"target_modules": ["qkv.q_linear", "qkv.v_linear", "mlp.fc1", "mlp.fc2"], "r": 4, "lora_alpha": 8},
}

pytestmark = pytest.mark.parametrize("name", NAMES)


@pytest.fixture(autouse=True)
def weights(tiny_weights, use_weights):
    return use_weights(tiny_weights)


def variant(name: str) -> str:
    return name.removeprefix("axs_")


def patch(name: str) -> int:
    return prithvi_cfgs[variant(name)]["patch_size"][-1]


def images(name: str, frames: int | None = None, channels: int = 6) -> torch.Tensor:
    """A 4 x 4-patch tile, ``[1, C, H, W]`` or ``[1, C, T, H, W]``."""
    size = 4 * patch(name)
    return torch.randn(1, channels, size, size) if frames is None else torch.randn(1, channels, frames, size, size)


def coordinates(name: str, frames: int = 1) -> dict[str, torch.Tensor]:
    """``temporal_coords`` and ``location_coords`` for the TL variants, nothing for the others."""
    if not prithvi_cfgs[variant(name)]["coords_encoding"]:
        return {}
    return {
        "temporal_coords": torch.tensor([[[2021.0, 100.0 + 30 * frame] for frame in range(frames)]]),
        "location_coords": torch.tensor([[45.5, 9.2]]),
    }


def checkpoint_file(weights, name: str):
    spec = PRITHVI_VARIANTS[variant(name)]
    return weights / spec.name / spec.filename


def segmentation_model(name: str, **model_args):
    """TerraTorch's segmentation model around the pretrained backbone ``name``, as a config builds it."""
    arguments = {"necks": UPERNET_NECKS, "decoder": "UperNetDecoder", **model_args}
    return EncoderDecoderFactory().build_model(
        task="segmentation", backbone=name, backbone_pretrained=True, backbone_img_size=4 * patch(name),
        decoder_channels=16, num_classes=2, **arguments,
    ).eval()


def test_features_are_one_token_tensor_per_block(name):
    encoder = BACKBONE_REGISTRY.build(name, img_size=4 * patch(name)).eval()
    with torch.no_grad():
        features = encoder(images(name), **coordinates(name))
    assert len(features) == TINY_PRITHVI["depth"]
    assert {tuple(feature.shape) for feature in features} == {(1, 1 + 16, TINY_PRITHVI["embed_dim"])}


def test_out_indices_select_the_blocks_returned(name):
    size = 4 * patch(name)
    every = BACKBONE_REGISTRY.build(name, img_size=size).eval()
    selected = BACKBONE_REGISTRY.build(name, img_size=size, out_indices=[0, 2]).eval()
    x = images(name)
    with torch.no_grad():
        all_features, chosen = every(x, **coordinates(name)), selected(x, **coordinates(name))
    assert len(chosen) == 2
    assert torch.equal(chosen[0], all_features[0]) and torch.equal(chosen[1], all_features[2])


def test_the_stock_name_loading_the_same_file_gives_equal_features(name, weights):
    size = 4 * patch(name)
    stock = BACKBONE_REGISTRY.build(
        variant(name), pretrained=True, ckpt_path=str(checkpoint_file(weights, name)), img_size=size,
        **tiny_prithvi(variant(name)),
    ).eval()
    ours = BACKBONE_REGISTRY.build(name, ckpt_path=str(checkpoint_file(weights, name)), img_size=size).eval()
    x = images(name)
    with torch.no_grad():
        expected, found = stock(x, **coordinates(name)), ours(x, **coordinates(name))
    assert len(found) == len(expected)
    assert all(torch.equal(a, b) for a, b in zip(found, expected))


def test_a_segmentation_model_with_the_upernet_necks_takes_coordinates_through_the_factory(name):
    model = segmentation_model(name)
    x = images(name)
    with torch.no_grad():
        logits = model(x, **coordinates(name)).output
    assert logits.shape == (1, 2, *x.shape[-2:])
    if coordinates(name):
        moved = {**coordinates(name), "location_coords": torch.tensor([[-33.9, 151.2]])}
        with torch.no_grad():
            assert not torch.equal(model(x, **moved).output, logits)


def test_lora_through_peft_config_trains_only_the_adapters(name):
    model = segmentation_model(name, backbone_bands=PRETRAINED_BANDS, peft_config=LORA)
    encoder = model.encoder
    trainable = sum(p.numel() for p in encoder.parameters() if p.requires_grad)
    embed, hidden, r = encoder.embed_dim, encoder.blocks[0].mlp.fc1.out_features, LORA["peft_config_kwargs"]["r"]
    per_block = 2 * (2 * embed * r) + (embed + hidden) * r + (hidden + embed) * r  # q, v; fc1; fc2
    assert trainable == len(encoder.blocks) * per_block
    with torch.no_grad():
        assert model(images(name), **coordinates(name)).output.shape == (1, 2, 4 * patch(name), 4 * patch(name))


def test_several_frames_give_tokens_per_frame_and_a_multitemporal_segmentation(name):
    frames = 3
    encoder = BACKBONE_REGISTRY.build(name, img_size=4 * patch(name), num_frames=frames).eval()
    x = images(name, frames)
    with torch.no_grad():
        features = encoder(x, **coordinates(name, frames))
    assert features[-1].shape == (1, 1 + frames * 16, TINY_PRITHVI["embed_dim"])
    model = segmentation_model(
        name,
        backbone_num_frames=frames,
        necks=[{"name": "SelectIndices", "indices": [1, 3]}, {"name": "ReshapeTokensToImage", "effective_time_dim": frames}],
        decoder="FCNDecoder",
    )
    with torch.no_grad():
        assert model(x, **coordinates(name, frames)).output.shape == (1, 2, *x.shape[-2:])


def test_a_tubelet_patch_size_is_honoured_for_an_encoder_trained_from_scratch(name):
    tubelet, frames = 2, 4
    encoder = BACKBONE_REGISTRY.build(
        name, pretrained=False, img_size=4 * patch(name), num_frames=frames, patch_size=[tubelet, patch(name), patch(name)],
        **{key: value for key, value in TINY_PRITHVI.items() if key != "patch_size"}, coords_encoding=[],
    ).eval()
    with torch.no_grad():
        features = encoder(images(name, frames))
    assert features[-1].shape == (1, 1 + frames // tubelet * 16, TINY_PRITHVI["embed_dim"])


def test_a_patch_size_the_checkpoint_cannot_serve_is_refused_by_name(name):
    with pytest.raises(InvalidArgumentError, match=r"patch_size=\[2, .*cannot use the patch embedding"):
        BACKBONE_REGISTRY.build(name, num_frames=4, patch_size=[2, patch(name), patch(name)])
    encoder = BACKBONE_REGISTRY.build(name, patch_size=patch(name), img_size=4 * patch(name))
    assert tuple(encoder.patch_embed.patch_size)[-2:] == (patch(name), patch(name))


def test_an_extra_band_starts_new_while_the_pretrained_bands_keep_their_weights(name, weights):
    encoder = BACKBONE_REGISTRY.build(name, bands=[*PRETRAINED_BANDS, 7], in_chans=7, img_size=4 * patch(name))
    published = torch.load(checkpoint_file(weights, name), weights_only=True)
    key = next(key for key in published if key.endswith("patch_embed.proj.weight"))
    weight = encoder.patch_embed.proj.weight
    assert weight.shape[1] == 7
    assert torch.equal(weight[:, :6], published[key])
    with torch.no_grad():
        assert len(encoder.eval()(images(name, channels=7), **coordinates(name))) == TINY_PRITHVI["depth"]


def test_prompt_tokens_and_new_coordinate_encodings_are_named_as_new_weights(name, caplog):
    with caplog.at_level(logging.INFO, logger="axs_lib.models.loading"):
        encoder = BACKBONE_REGISTRY.build(
            name, img_size=4 * patch(name), vpt=True, vpt_n_tokens=2, coords_encoding=["time", "location"], drop_path=0.1,
        ).eval()
    lines = [record.getMessage() for record in caplog.records if "newly initialised" in record.getMessage()]
    assert len(lines) == 1
    assert "vpt_prompt_embeddings.0" in lines[0]
    assert ("temporal_embed_enc.scale" in lines[0]) is not bool(coordinates(name))  # TL files hold the scales
    assert all(not p.is_meta for p in encoder.parameters())
    with torch.no_grad():
        features = encoder(images(name), **coordinates(name) or {
            "temporal_coords": torch.tensor([[[2021.0, 100.0]]]), "location_coords": torch.tensor([[45.5, 9.2]])})
    assert features[-1].shape == (1, 1 + 16, TINY_PRITHVI["embed_dim"])
