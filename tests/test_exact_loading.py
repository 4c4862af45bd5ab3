"""After loading, every parameter holds the checkpoint's tensor; anything less is an error, never random weights."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest
import torch

from axs_lib.errors import UnsafeCheckpointError
from axs_lib.models import (
    KNOWN_MODELS,
    CheckpointMismatchError,
    CorruptCheckpointError,
    UnknownTokenizerPresetError,
    build_prithvi_600_backbone,
    build_prithvi_backbone,
    build_terramind_backbone,
    build_terramind_generator,
)
from axs_lib.weights.catalog import PRITHVI_600M, TERRAMIND_LARGE
from helpers import assert_parameters_equal, checkpoint

TERRAMIND_FILE = f"{TERRAMIND_LARGE}/{KNOWN_MODELS[TERRAMIND_LARGE].filename}"
PRITHVI_FILE = f"{PRITHVI_600M}/{KNOWN_MODELS[PRITHVI_600M].filename}"
TOKENIZER = "TerraMind-1.0-Tokenizer-S2L2A"


def test_terramind_backbone_parameters_are_the_checkpoint_tensors(tiny_weights):
    model = build_terramind_backbone(checkpoint_path=tiny_weights / TERRAMIND_LARGE)
    saved = checkpoint(tiny_weights / TERRAMIND_FILE)
    parameters = dict(model.named_parameters())
    assert_parameters_equal(model, {name: saved[name] for name in parameters})
    assert not any(p.is_meta for p in model.parameters())


def test_generator_parameters_are_terramind_and_tokenizer_tensors(tiny_weights):
    model = build_terramind_generator(checkpoint_path=tiny_weights / TERRAMIND_LARGE)
    terramind = checkpoint(tiny_weights / TERRAMIND_FILE)
    tokenizer = checkpoint(tiny_weights / TOKENIZER / KNOWN_MODELS[TOKENIZER].filename)
    expected = {}
    for name, _ in model.named_parameters():
        if name.startswith("model.sampler.model."):
            expected[name] = terramind[name.removeprefix("model.sampler.model.")]
        else:
            expected[name] = tokenizer[name.removeprefix("model.tokenizer.tok_sen2l2a@224.")]
    assert assert_parameters_equal(model, expected) == sum(1 for _ in model.parameters())


def test_prithvi_encoder_parameters_are_the_mae_encoder_tensors(tiny_weights):
    model = build_prithvi_600_backbone(checkpoint_path=tiny_weights / PRITHVI_600M)
    saved = checkpoint(tiny_weights / PRITHVI_FILE)
    expected = {name: saved[f"encoder.{name}"] for name, _ in model.named_parameters()}
    assert assert_parameters_equal(model, expected) == len(list(model.parameters()))


def test_prithvi_with_fewer_bands_keeps_their_pretrained_patch_embedding(tiny_weights):
    model = build_prithvi_600_backbone(checkpoint_path=tiny_weights / PRITHVI_600M, in_channels=3)
    saved = checkpoint(tiny_weights / PRITHVI_FILE)["encoder.patch_embed.proj.weight"]
    assert torch.equal(model.patch_embed.proj.weight, saved[:, :3])


def test_prithvi_with_extra_bands_adds_new_patch_embedding_channels(tiny_weights):
    model = build_prithvi_600_backbone(checkpoint_path=tiny_weights / PRITHVI_600M, in_channels=8)
    saved = checkpoint(tiny_weights / PRITHVI_FILE)["encoder.patch_embed.proj.weight"]
    weight = model.patch_embed.proj.weight
    assert weight.shape[1] == 8
    assert torch.equal(weight[:, :6], saved)
    assert weight[:, 6:].abs().sum() > 0


def test_a_checkpoint_of_another_model_is_refused_naming_the_file_and_what_it_looks_like(tiny_weights, caplog):
    with pytest.raises(CheckpointMismatchError) as raised:
        build_terramind_backbone(checkpoint_path=tiny_weights / PRITHVI_FILE)
    message = str(raised.value)
    assert str(tiny_weights / PRITHVI_FILE) in message
    assert "missing from the checkpoint" in message
    assert "encoder_embeddings.untok_sen1grd@224.proj.weight" in message
    assert "looks like a Prithvi EO checkpoint (Prithvi-EO-1.0-100M or a Prithvi-EO-2.0 model)" in message
    assert not [record for record in caplog.records if record.name.startswith("terratorch")], caplog.text


@pytest.mark.parametrize(
    ("build", "wrong_file", "looks_like"),
    [
        (build_prithvi_600_backbone, TERRAMIND_FILE, "a TerraMind 1.0 checkpoint (TerraMind-1.0-tiny, -small, -base or -large)"),
        (build_prithvi_600_backbone, f"{TOKENIZER}/TerraMind_Tokenizer_S2L2A.pt", "a TerraMind 1.0 tokenizer checkpoint"),
        (build_terramind_generator, PRITHVI_FILE, "a Prithvi EO checkpoint"),
    ],
    ids=["terramind-to-prithvi", "tokenizer-to-prithvi", "prithvi-to-generator"],
)
def test_the_error_says_which_known_model_a_wrong_file_looks_like(tiny_weights, build, wrong_file, looks_like, caplog):
    with pytest.raises(CheckpointMismatchError, match=re.escape(f"The file looks like {looks_like}")):
        build(checkpoint_path=tiny_weights / wrong_file)
    assert "random initialization" not in caplog.text


def test_an_incomplete_checkpoint_is_refused(weights_copy):
    path = weights_copy / TERRAMIND_FILE
    state = checkpoint(path)
    del state["encoder.3.mlp.fc1.weight"]
    torch.save(state, path)
    with pytest.raises(CheckpointMismatchError, match=r"1 key missing from the checkpoint: encoder\.3\.mlp\.fc1\.weight"):
        build_terramind_backbone(checkpoint_path=path)


def test_a_wrong_shape_is_refused_with_both_shapes(weights_copy):
    path = weights_copy / TERRAMIND_FILE
    state = checkpoint(path)
    state["encoder.0.attn.proj.weight"] = torch.zeros(7, 7)
    torch.save(state, path)
    with pytest.raises(CheckpointMismatchError, match=r"wrong shape: encoder\.0\.attn\.proj\.weight \(checkpoint .*\[7, 7\]"):
        build_terramind_backbone(checkpoint_path=path)


def test_a_broken_tokenizer_is_blamed_on_the_tokenizer_file(weights_copy):
    path = weights_copy / TOKENIZER / KNOWN_MODELS[TOKENIZER].filename
    state = checkpoint(path)
    state.pop(next(iter(state)))
    torch.save(state, path)
    with pytest.raises(CheckpointMismatchError) as raised:
        build_terramind_generator(checkpoint_path=weights_copy / TERRAMIND_LARGE)
    assert f"Checkpoint {path} " in str(raised.value)


def test_prithvi_with_another_patch_size_is_refused_not_randomised(weights_copy):
    path = weights_copy / PRITHVI_FILE
    state = checkpoint(path)
    state["encoder.patch_embed.proj.weight"] = torch.zeros(32, 6, 1, 16, 16)
    torch.save(state, path)
    with pytest.raises(CheckpointMismatchError, match="patch_embed.proj.weight"):
        build_prithvi_600_backbone(checkpoint_path=path)


def test_a_truncated_file_is_reported_as_corrupt(weights_copy):
    path = weights_copy / TERRAMIND_FILE
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptCheckpointError, match="truncated or corrupt"):
        build_terramind_backbone(checkpoint_path=path)


def test_a_file_that_is_not_a_state_dict_is_reported_as_corrupt(tmp_path):
    path = tmp_path / KNOWN_MODELS[TERRAMIND_LARGE].filename
    torch.save([1, 2, 3], path)
    with pytest.raises(CorruptCheckpointError, match="does not hold a state dict"):
        build_terramind_backbone(checkpoint_path=path)


def test_pickled_code_is_never_executed(tmp_path):
    path = tmp_path / KNOWN_MODELS[TERRAMIND_LARGE].filename
    torch.save({"weights": shutil.copyfileobj}, path)
    with pytest.raises(UnsafeCheckpointError, match="shutil.copyfileobj"):
        build_terramind_backbone(checkpoint_path=path)


def test_the_encoder_alone_is_built_for_the_tile_size_given(tiny_weights):
    model = build_prithvi_600_backbone(checkpoint_path=tiny_weights / PRITHVI_600M, img_size=60)
    assert list(model.patch_embed.grid_size[-2:]) == [60 // 14, 60 // 14]


def test_tied_token_embeddings_stay_one_parameter(tiny_weights):
    model = build_terramind_generator(checkpoint_path=tiny_weights / TERRAMIND_LARGE)
    embedding = model.model.sampler.model.decoder_embeddings["tok_sen2l2a@224"]
    assert embedding.to_logits.weight is embedding.token_emb.weight


def test_a_checkpoint_whose_tied_weights_differ_is_refused(weights_copy):
    path = weights_copy / TERRAMIND_FILE
    state = checkpoint(path)
    key = "decoder_embeddings.tok_sen2l2a@224.to_logits.weight"
    state[key] = state[key] + 1
    torch.save(state, path)
    with pytest.raises(CheckpointMismatchError, match="to_logits.weight \\(must equal the tied"):
        build_terramind_generator(checkpoint_path=path)


def test_terratorchs_tokenizer_table_is_left_as_it_was(tiny_weights):
    from terratorch.models.backbones.terramind.model.terramind_register import tokenizer_dict

    before = dict(tokenizer_dict["v1"])
    build_terramind_generator(checkpoint_path=tiny_weights / TERRAMIND_LARGE)
    assert tokenizer_dict["v1"] == before


def test_a_fresh_process_builds_tiny_tokenizers_installing_only_the_toy_presets_their_config_names(tiny_weights):
    script = f"""
import json
from terratorch.models.backbones.terramind.tokenizer.models import vit_models
from terratorch.models.backbones.terramind.tokenizer.models.unet import unet
from axs_lib.models import build_terramind_generator

def installed():
    return {{"encoder": hasattr(vit_models, "axs_tiny_vit_enc"), "diffusion decoder": hasattr(unet, "unet_axs_tiny"),
             "vit decoder": hasattr(vit_models, "axs_tiny_vit_dec")}}

before = installed()
build_terramind_generator(checkpoint_path={str(tiny_weights / TERRAMIND_LARGE)!r})
print(json.dumps([before, installed()]))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    before, after = json.loads(result.stdout.splitlines()[-1])
    assert before == {"encoder": False, "diffusion decoder": False, "vit decoder": False}
    assert after == {"encoder": True, "diffusion decoder": True, "vit decoder": False}  # only the S2L2A tokenizer's


def test_a_tokenizer_config_naming_an_unknown_preset_is_one_clear_error(weights_copy):
    config = weights_copy / TOKENIZER / "config.json"
    config.write_text(json.dumps({"pretrained_cfg": {"enc_type": "vit_xxl_enc", "dec_type": "unet_patched"}}))
    with pytest.raises(UnknownTokenizerPresetError) as raised:
        build_terramind_generator(checkpoint_path=weights_copy / TERRAMIND_LARGE)
    message = str(raised.value)
    assert str(config) in message and "enc_type" in message and "'vit_xxl_enc'" in message
    assert "vit_b_enc" in message and "axs_tiny_vit_enc" in message  # what it could be instead


def test_new_weights_asked_for_never_hide_a_weight_the_checkpoint_lacks(tiny_weights, tmp_path):
    spec = KNOWN_MODELS["Prithvi-EO-2.0-300M-TL"]
    folder = shutil.copytree(tiny_weights / spec.name, tmp_path / spec.name)
    state = torch.load(folder / spec.filename, weights_only=True)
    del state["encoder.temporal_embed_enc.scale"]
    torch.save(state, folder / spec.filename)
    with pytest.raises(CheckpointMismatchError, match="1 key missing from the checkpoint: temporal_embed_enc.scale"):
        build_prithvi_backbone(spec.builder, checkpoint_path=folder, vpt=True, vpt_n_tokens=1)


def test_a_tl_encoders_coordinate_scales_are_the_checkpoints(tiny_weights):
    spec = KNOWN_MODELS["Prithvi-EO-2.0-tiny-TL"]
    model = build_prithvi_backbone(spec.name, checkpoint_path=tiny_weights / spec.name)
    saved = checkpoint(tiny_weights / spec.name / spec.filename)
    assert torch.equal(model.temporal_embed_enc.scale, saved["encoder.temporal_embed_enc.scale"])
    assert torch.equal(model.location_embed_enc.scale, saved["encoder.location_embed_enc.scale"])
