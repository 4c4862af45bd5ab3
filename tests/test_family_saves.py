"""Fine-tuned on any Prithvi EO backbone: a TerraTorch run's checkpoint becomes a shareable folder that loads,
in a new process, with the same logits; the folder names the base model it was fine-tuned from."""

from __future__ import annotations

import json
import subprocess
import sys

import lightning.pytorch as pl
import numpy as np
import pytest
import rasterio
import torch
from terratorch.models.backbones.prithvi_vit import prithvi_cfgs
from terratorch.tasks import SemanticSegmentationTask

from axs_lib.errors import InvalidArgumentError
from axs_lib.models import PrithviSegmentation
from axs_lib.cli.scenes import main
from axs_lib.demo.synthetic_scene import write_synthetic_scene
from axs_lib.models.pretrained import base_fingerprint
from axs_lib.models.segmentation import build_from_recipe
from axs_lib.weights.catalog import KNOWN_MODELS
from test_pretrained import LOAD_IN_FRESH_PROCESS, load_in_fresh_process
from helpers import process_environment

FAMILY_MEMBERS = ["Prithvi-EO-1.0-100M", "Prithvi-EO-2.0-300M-TL"]
"""EO 1.0 (flat checkpoint layout, 16-pixel patches) and a TL model (time and location inputs)."""


@pytest.fixture
def weights(tiny_weights, use_weights):
    return use_weights(tiny_weights)


def tile(name: str) -> int:
    return 4 * prithvi_cfgs[KNOWN_MODELS[name].builder]["patch_size"][-1]


def model_args(name: str) -> dict:
    """The shipped YAML's model, on another backbone of the family (tiny depth: 4 blocks)."""
    return {
        "backbone": f"axs_{KNOWN_MODELS[name].builder}", "backbone_pretrained": True, "backbone_img_size": tile(name),
        "necks": [{"name": "SelectIndices", "indices": [0, 1, 2, 3]}, {"name": "ReshapeTokensToImage"},
                  {"name": "LearnedInterpolateToPyramidal"}],
        "decoder": "UperNetDecoder", "decoder_channels": 16, "num_classes": 2,
        "peft_config": {"method": "LORA", "replace_qkv": "qkv",
                        "peft_config_kwargs": {"r": 4, "lora_alpha": 8, "target_modules": ["qkv.q_linear", "qkv.v_linear"]}},
    }


def trained_checkpoint(name: str, folder) -> tuple:
    """Two training steps of TerraTorch's task on random tiles; Lightning's checkpoint of the run."""
    task = SemanticSegmentationTask(model_factory="EncoderDecoderFactory", model_args=model_args(name), loss="ce",
                                    ignore_index=-1, lr=1e-2)
    size = tile(name)
    samples = [{"image": torch.randn(6, size, size), "mask": torch.randint(0, 2, (size, size))} for _ in range(4)]
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(task, train_dataloaders=torch.utils.data.DataLoader(samples, batch_size=2))
    trainer.save_checkpoint(folder / "run.ckpt")
    return folder / "run.ckpt", task


@pytest.mark.parametrize("name", FAMILY_MEMBERS)
def test_a_run_on_any_prithvi_backbone_saves_and_reloads_in_a_new_process(name, weights, tmp_path):
    checkpoint, task = trained_checkpoint(name, tmp_path)
    model = PrithviSegmentation.from_pretrained(checkpoint)
    size = tile(name)
    images = torch.randn(2, 6, size, size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(model(images).output, task.model.eval()(images).output)

    folder = model.save_pretrained(tmp_path / "fine-tuned")
    config = json.loads((folder / "config.json").read_text())
    base_file = weights / name / KNOWN_MODELS[name].filename
    assert config["base_model"]["name"] == name
    assert config["base_model"]["fingerprint"] == base_fingerprint(base_file)
    assert config["base_model"]["frozen_weights_from_base"]
    reloaded = load_in_fresh_process(folder, images, tmp_path, weights, LOAD_IN_FRESH_PROCESS)
    with torch.no_grad():
        assert torch.equal(reloaded["folder"], model(images).output)
        assert torch.equal(reloaded["auto"], model(images).output)


def test_a_tl_model_uses_time_and_location_and_takes_time_stacks(weights):
    name = "Prithvi-EO-2.0-300M-TL"
    arguments = {**model_args(name), "backbone_num_frames": 2, "necks": [
        {"name": "SelectIndices", "indices": [0, 1, 2, 3]}, {"name": "ReshapeTokensToImage", "effective_time_dim": 2},
        {"name": "LearnedInterpolateToPyramidal"}]}
    model = build_from_recipe("EncoderDecoderFactory", arguments, pretrained=True, checkpoint_path=None,
                              device=torch.device("cpu"), dtype=None).eval()
    size = tile(name)
    stack = torch.randn(1, 6, 2, size, size)
    spring = {"temporal_coords": torch.tensor([[[2021.0, 100.0], [2021.0, 130.0]]]), "location_coords": torch.tensor([[45.5, 9.2]])}
    autumn = {**spring, "temporal_coords": torch.tensor([[[2021.0, 280.0], [2021.0, 310.0]]])}
    with torch.no_grad():
        logits = model(stack, **spring)
        assert logits.shape == (1, 2, size, size)
        assert not torch.equal(logits, model(stack, **autumn))
        assert not torch.equal(logits, model(stack))


def test_a_backbone_outside_the_family_is_refused_by_name(weights):
    with pytest.raises(InvalidArgumentError, match="'terramind_v1_base'.*axs_prithvi_eo_v2_300_tl"):
        build_from_recipe("EncoderDecoderFactory", {**model_args("Prithvi-EO-2.0-300M"), "backbone": "terramind_v1_base"},
                          pretrained=True, checkpoint_path=None, device=torch.device("cpu"), dtype=None)


def test_the_scene_command_segments_with_a_model_of_another_family_member_and_its_statistics(weights, tmp_path):
    name = "Prithvi-EO-1.0-100M"
    model = build_from_recipe("EncoderDecoderFactory", model_args(name), pretrained=True, checkpoint_path=None,
                              device=torch.device("cpu"), dtype=None)
    folder = model.save_pretrained(tmp_path / "v1-model")
    scene = write_synthetic_scene(tmp_path / "scene", size=96)
    output = tmp_path / "classes.tif"
    result = subprocess.run(
        [sys.executable, "-m", "axs_lib.cli.scenes", "segment", str(scene.hls), str(output), "--model", str(folder),
         "--tile", str(tile(name)), "--overlap", "16", "--quiet", "--stac"],
        env=process_environment(AXS_WEIGHTS_DIR=str(weights), HF_HUB_OFFLINE="1"), capture_output=True, text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with rasterio.open(output) as written:
        assert written.tags()["AXS_SEGMENTATION_MODEL"] == name
    item = json.loads(output.with_suffix(".json").read_text())
    (model_input,) = item["properties"]["mlm:input"]
    standardised_with = [scaling["mean"] for scaling in model_input["value_scaling"]]
    assert standardised_with == prithvi_cfgs["prithvi_eo_v1_100"]["mean"] != prithvi_cfgs["prithvi_eo_v2_600"]["mean"]


def run_segment(*arguments: str, weights) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "axs_lib.cli.scenes", "segment", *arguments, "--quiet"],
        env=process_environment(AXS_WEIGHTS_DIR=str(weights), HF_HUB_OFFLINE="1"), capture_output=True, text=True,
        timeout=600,
    )


TL_MODEL = "Prithvi-EO-2.0-300M-TL"


def two_date_tl_model(folder) -> object:
    """A segmentation model on the 300M-TL backbone built for time stacks of two dates, saved in ``folder``."""
    arguments = {**model_args(TL_MODEL), "backbone_num_frames": 2, "necks": [
        {"name": "SelectIndices", "indices": [0, 1, 2, 3]}, {"name": "ReshapeTokensToImage", "effective_time_dim": 2},
        {"name": "LearnedInterpolateToPyramidal"}]}
    model = build_from_recipe("EncoderDecoderFactory", arguments, pretrained=True, checkpoint_path=None,
                              device=torch.device("cpu"), dtype=None)
    return model.save_pretrained(folder)


def test_the_scene_command_segments_a_time_stack_with_its_dates_and_the_scene_centre(weights, tmp_path, capsys):
    name = TL_MODEL
    folder = two_date_tl_model(tmp_path / "tl-model")
    scene = write_synthetic_scene(tmp_path / "scene", size=84)
    stack = tmp_path / "stack.tif"  # the layout docs/scenes.md documents: date 1's six bands, then date 2's
    with rasterio.open(scene.hls) as source:
        first = source.read().astype("float32")
        profile = {**source.profile, "count": 12, "dtype": "float32"}
    with rasterio.open(stack, "w", **profile) as out:
        out.write(np.concatenate([first, first[::-1] * 0.5]))
    window = ["--model", str(folder), "--tile", str(tile(name)), "--overlap", "14", "--probabilities"]

    spring = run_segment(str(stack), str(tmp_path / "spring.tif"), *window, "--dates", "2021-04-10", "2021-05-10", weights=weights)
    autumn = run_segment(str(stack), str(tmp_path / "autumn.tif"), *window, "--dates", "2021-09-10", "2021-10-10", weights=weights)
    assert spring.returncode == 0 and autumn.returncode == 0, spring.stderr[-2000:] + autumn.stderr[-2000:]
    with rasterio.open(tmp_path / "spring.tif") as one, rasterio.open(tmp_path / "autumn.tif") as other:
        assert one.read().shape == (2, 84, 84)
        assert not np.array_equal(one.read(), other.read())  # the dates reach the model

    wrong = run_segment(str(stack), str(tmp_path / "wrong.tif"), *window, "--dates", "2021-04-10", weights=weights)
    assert wrong.returncode == 2
    assert wrong.stderr.strip().splitlines()[-1].endswith(
        "--dates gives 1 date(s); the model takes 2 time step(s), one date each")

    generated = main(["pipeline", str(scene.sar), str(tmp_path / "generated.tif"), "--model", str(folder),
                      "--tile", "112", "--overlap", "16", "--quiet"])
    assert generated == 2 and capsys.readouterr().err.strip() == (
        "error: the segmentation model takes time stacks of 2 dates; the pipeline generates one date: segment a "
        "stack of scenes (items, or a stacked GeoTIFF with --dates), or use a single-date model")
    assert not (tmp_path / "generated.tif").exists()


def test_a_time_stack_of_items_gives_the_stacked_geotiff_result_with_the_items_dates(weights, tmp_path, capsys):
    from axs_lib.demo.stac_items import publish_scene

    name = TL_MODEL
    folder = two_date_tl_model(tmp_path / "tl-model")
    dates = ("2021-09-10", "2021-04-10")  # the collection lists the later date first
    features, layers = [], []
    for index, day in enumerate(dates):
        scene = write_synthetic_scene(tmp_path / f"scene{index}", size=84, seed=index)
        item = json.loads(publish_scene(scene, tmp_path / f"catalog{index}").sentinel2.read_text())
        item["id"], item["properties"]["datetime"] = f"date{index}", f"{day}T10:00:00Z"
        item["links"] = [{"rel": "self", "href": str(tmp_path / f"catalog{index}" / "sentinel2_l2a.json")}]
        features.append(item)
        with rasterio.open(scene.hls) as source:
            layers.append(source.read().astype("float32"))
            profile = {**source.profile, "count": 12, "dtype": "float32"}
    collection = tmp_path / "stack.json"
    collection.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    stack = tmp_path / "stack.tif"  # by date: April's six bands, then September's
    with rasterio.open(stack, "w", **profile) as out:
        out.write(np.concatenate([layers[1], layers[0]]))
    window = ["--model", str(folder), "--tile", str(tile(name)), "--overlap", "14", "--probabilities", "--quiet"]

    assert main(["segment", str(collection), str(tmp_path / "items.tif"), *window]) == 0, capsys.readouterr().err
    assert main(["segment", str(stack), str(tmp_path / "file.tif"), *window, "--dates", *sorted(dates)]) == 0
    with rasterio.open(tmp_path / "items.tif") as one, rasterio.open(tmp_path / "file.tif") as other:
        np.testing.assert_array_equal(one.read(), other.read())
        assert json.loads(one.tags()["AXS_INPUT_ITEMS"])[0]["id"] == "date1"


def terramind_model_args(size: str, modality: str) -> dict:
    """A segmentation model on a TerraMind encoder as IBM's Sen1Floods11 config builds one (tiny depth)."""
    return {
        "backbone": f"axs_terramind_v1_{size}", "backbone_pretrained": True, "backbone_modalities": [modality],
        "necks": [{"name": "SelectIndices", "indices": [2, 5, 8, 11]}, {"name": "ReshapeTokensToImage", "remove_cls_token": False},
                  {"name": "LearnedInterpolateToPyramidal"}],
        "decoder": "UNetDecoder", "decoder_channels": [32, 16, 8, 4], "num_classes": 2,
    }


def test_a_run_on_a_terramind_backbone_saves_and_reloads_in_a_new_process(weights, tmp_path):
    task = SemanticSegmentationTask(model_factory="EncoderDecoderFactory", model_args=terramind_model_args("base", "S1GRD"),
                                    loss="ce", ignore_index=-1, lr=1e-2)
    samples = [{"image": torch.randn(2, 64, 64), "mask": torch.randint(0, 2, (64, 64))} for _ in range(4)]
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(task, train_dataloaders=torch.utils.data.DataLoader(samples, batch_size=2))
    trainer.save_checkpoint(tmp_path / "run.ckpt")

    model = PrithviSegmentation.from_pretrained(tmp_path / "run.ckpt")
    assert (model.in_channels, model.patch_size, model.input_bands) == (2, 16, ("VV", "VH"))
    assert model.base_model.name == "TerraMind-1.0-base"
    images = torch.randn(2, 2, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(model(images).output, task.model.eval()(images).output)

    folder = model.save_pretrained(tmp_path / "fine-tuned")
    config = json.loads((folder / "config.json").read_text())
    assert config["base_model"]["name"] == "TerraMind-1.0-base"
    assert config["base_model"]["fingerprint"] == base_fingerprint(weights / "TerraMind-1.0-base" / "TerraMind_v1_base.pt")
    reloaded = load_in_fresh_process(folder, images, tmp_path, weights, LOAD_IN_FRESH_PROCESS)
    with torch.no_grad():
        assert torch.equal(reloaded["folder"], model(images).output)


def test_the_scene_command_segments_sar_with_a_terramind_model_and_its_statistics(weights, tmp_path):
    model = build_from_recipe("EncoderDecoderFactory", terramind_model_args("tiny", "S1GRD"), pretrained=True,
                              checkpoint_path=None, device=torch.device("cpu"), dtype=None)
    folder = model.save_pretrained(tmp_path / "sar-model")
    scene = write_synthetic_scene(tmp_path / "scene", size=96)
    output = tmp_path / "classes.tif"
    result = run_segment(str(scene.sar), str(output), "--model", str(folder), "--tile", "64", "--overlap", "16",
                         "--stac", weights=weights)
    assert result.returncode == 0, result.stderr[-3000:]
    with rasterio.open(output) as written:
        assert written.tags()["AXS_SEGMENTATION_MODEL"] == "TerraMind-1.0-tiny" and written.shape == (96, 96)
    (model_input,) = json.loads(output.with_suffix(".json").read_text())["properties"]["mlm:input"]
    assert [scaling["mean"] for scaling in model_input["value_scaling"]] == list(model.input_statistics[0])
    assert model.input_statistics[0][0] < 0  # Sentinel-1 backscatter in dB, not Prithvi's reflectance
