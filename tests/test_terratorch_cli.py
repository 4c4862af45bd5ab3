"""TerraTorch's CLI with the axs_* names, the shipped config, and its Lightning checkpoint turned into a folder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from axs_lib.models import PrithviSegmentation
from segmentation_run import SHIPPED_CONFIG, TILE, prepare, run_cli
from test_pretrained import load_in_fresh_process
from helpers import process_environment


@pytest.fixture(scope="module")
def trained_run(tiny_weights, tmp_path_factory):
    """A 2-step ``fit`` of the shipped config (tiny weights, synthetic GeoTIFFs), from another working folder."""
    root = tmp_path_factory.mktemp("cli-run")
    config = prepare(root)
    result = run_cli(["fit", "--config", str(config)], cwd=root, weights=tiny_weights)
    assert result.returncode == 0, result.stderr[-4000:]
    checkpoints = sorted((root / "run").rglob("*.ckpt"))
    assert checkpoints, f"no checkpoint under {root / 'run'}"
    return root, config, checkpoints[0]


@pytest.fixture
def weights(tiny_weights, use_weights):
    return use_weights(tiny_weights)


def test_the_shipped_config_has_the_real_size_values():
    config = yaml.safe_load(SHIPPED_CONFIG.read_text())
    task = config["model"]["init_args"]
    model_args = task["model_args"]
    assert model_args["backbone"] == "axs_prithvi_eo_v2_600"
    assert model_args["necks"][0] == {"name": "SelectIndices", "indices": [7, 15, 23, 31]}
    assert model_args["peft_config"]["replace_qkv"] == "qkv"
    assert model_args["peft_config"]["peft_config_kwargs"]["target_modules"] == ["qkv.q_linear", "qkv.v_linear"]
    assert isinstance(task["ignore_index"], int) and task["freeze_backbone"] is False


def test_fit_trains_the_lora_model_and_writes_a_lightning_checkpoint(trained_run):
    _, _, checkpoint = trained_run
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert saved["global_step"] == 2
    assert any(".lora_A." in key for key in saved["state_dict"])


def test_predict_from_the_checkpoint_with_the_console_script(trained_run, tiny_weights):
    root, config, checkpoint = trained_run
    script = Path(sys.executable).with_name("axs-terratorch")
    assert script.is_file(), "pip install -e . installs the axs-terratorch console script"
    out = root / "predictions"
    env = process_environment(AXS_WEIGHTS_DIR=str(tiny_weights), HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [str(script), "predict", "--config", str(config), "--ckpt_path", str(checkpoint), "--predict_output_dir", str(out)],
        cwd=root, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    predictions = sorted(path.name for path in out.iterdir())
    assert len(predictions) == 2 and all(name.endswith(".tif") for name in predictions), predictions


def test_the_lightning_checkpoint_loads_with_the_lightning_models_logits(trained_run, weights):
    from terratorch.tasks import SemanticSegmentationTask

    _, _, checkpoint = trained_run
    task = SemanticSegmentationTask.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    model = PrithviSegmentation.from_pretrained(checkpoint)
    images = torch.randn(2, 6, TILE, TILE)
    with torch.no_grad():
        expected = task.model(images).output
        assert torch.equal(model(images), expected), (model(images) - expected).abs().max()
    assert not model.training and (model.in_channels, model.num_classes, model.patch_size) == (6, 2, 14)


def test_the_checkpoint_becomes_a_small_shareable_folder(trained_run, weights, tmp_path):
    _, _, checkpoint = trained_run
    model = PrithviSegmentation.from_pretrained(checkpoint)
    folder = model.save_pretrained(tmp_path / "shared")
    config = json.loads((folder / "config.json").read_text())
    assert config["build"]["factory"] == "EncoderDecoderFactory"
    assert config["base_model"]["frozen_weights_from_base"] is True
    assert "backbone_pretrained" not in config["build"]["arguments"]
    assert (folder / "adapter_model.safetensors").is_file()
    images = torch.randn(2, 6, TILE, TILE)
    loaded = load_in_fresh_process(folder, images, tmp_path, weights)
    with torch.no_grad():
        assert torch.equal(loaded["folder"], model(images).output)
        assert torch.equal(loaded["auto"], model(images).output)


def test_a_run_without_the_base_weights_says_where_it_looked(trained_run, tmp_path):
    from axs_lib.models import CheckpointNotFoundError

    _, _, checkpoint = trained_run
    copied = Path(shutil.copy(checkpoint, tmp_path / "run.ckpt"))
    with pytest.raises(CheckpointNotFoundError, match="Prithvi-EO-2.0-600M"):
        PrithviSegmentation.from_pretrained(copied)


def test_frozen_weights_that_differ_from_the_base_are_saved_not_referred_to(trained_run, weights, tmp_path):
    _, _, checkpoint = trained_run
    run = torch.load(checkpoint, map_location="cpu", weights_only=True)
    key = next(key for key in run["state_dict"] if key.endswith("blocks.0.mlp.fc1.weight"))
    run["state_dict"][key] = run["state_dict"][key] + 1
    edited = tmp_path / "edited.ckpt"
    torch.save(run, edited)
    model = PrithviSegmentation.from_pretrained(edited)
    folder = model.save_pretrained(tmp_path / "m")
    assert json.loads((folder / "config.json").read_text())["base_model"]["frozen_weights_from_base"] is False
    reloaded = PrithviSegmentation.from_pretrained(folder)
    images = torch.randn(1, 6, TILE, TILE)
    with torch.no_grad():
        assert torch.equal(reloaded(images), model(images))
    assert torch.equal(reloaded.state_dict()[key], run["state_dict"][key])


def test_the_lightning_checkpoint_segments_a_whole_scene_with_the_scene_command(trained_run, weights, tmp_path):
    import numpy as np
    import rasterio

    from axs_lib.cli.scenes import main
    from test_scenes import write_raster

    _, _, checkpoint = trained_run
    scene = write_raster(tmp_path / "hls.tif", np.random.default_rng(0).uniform(0, 4000, (6, 60, 75)))
    assert main(["segment", str(scene), str(tmp_path / "classes.tif"), "--model", str(checkpoint),
                 "--tile", str(TILE), "--overlap", "4", "--quiet"]) == 0
    with rasterio.open(tmp_path / "classes.tif") as src:
        classes = src.read(1)
    assert classes.shape == (60, 75) and set(np.unique(classes)) <= {0, 1}


def test_neck_indices_beyond_the_encoders_depth_are_one_error_line_naming_both_before_terratorch_starts(tiny_weights, tmp_path):
    config = prepare(tmp_path)
    values = yaml.safe_load(config.read_text())
    values["model"]["init_args"]["model_args"]["necks"][0]["indices"] = [7, 15, 23, 31]  # the 600M's, on 4 blocks
    config.write_text(yaml.safe_dump(values))

    result = run_cli(["fit", "--config", str(config)], cwd=tmp_path, weights=tiny_weights)

    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-3000:]
    assert result.stderr.startswith(f"error: {config}: the SelectIndices neck takes blocks [7, 15, 23, 31], but "
                                    "axs_prithvi_eo_v2_600 (Prithvi-EO-2.0-600M, weights ")
    assert "has 4 blocks, 0 to 3; use indices within them, e.g. [0, 1, 2, 3]" in result.stderr
    assert not (tmp_path / "run").exists(), "nothing was trained"
