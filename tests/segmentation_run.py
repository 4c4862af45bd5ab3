"""A tiny TerraTorch segmentation run on synthetic GeoTIFFs, from the shipped YAML with tiny-model overrides."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
from helpers import process_environment

REPO = Path(__file__).resolve().parents[1]
SHIPPED_CONFIG = REPO / "configs" / "prithvi_600_lora_segmentation.yaml"
TILE = 28
BANDS = 6


def write_tiles(folder: Path, count: int, seed: int) -> None:
    """``count`` 6-band reflectance tiles ``<n>_img.tif`` and 2-class masks ``<n>_mask.tif`` (GeoTIFF)."""
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir(parents=True)
    profile = {"driver": "GTiff", "width": TILE, "height": TILE, "crs": "EPSG:32633",
               "transform": from_origin(500000, 4000000, 30, 30)}
    for index in range(count):
        image = rng.uniform(0, 4000, (BANDS, TILE, TILE)).astype("float32")
        mask = (image[3] > image[2]).astype("int16")[None]
        with rasterio.open(folder / "images" / f"{index}_img.tif", "w", count=BANDS, dtype="float32", **profile) as out:
            out.write(image)
        with rasterio.open(folder / "labels" / f"{index}_mask.tif", "w", count=1, dtype="int16", **profile) as out:
            out.write(mask)


def tiny_config(root: Path, depth: int = 4) -> Path:
    """The shipped config, changed only where a tiny model, tiny tiles and a 2-step CPU run need it."""
    config = yaml.safe_load(SHIPPED_CONFIG.read_text())
    trainer = config["trainer"]
    trainer.update(accelerator="cpu", devices=1, precision="32-true", max_steps=2, max_epochs=1,
                   limit_val_batches=1, limit_test_batches=1, log_every_n_steps=1,
                   default_root_dir=str(root / "run"), logger=False)
    trainer["callbacks"] = []
    data = config["data"]["init_args"]
    data.update(batch_size=2, num_workers=0)
    for split in ("train", "val", "test"):
        data[f"{split}_data_root"] = str(root / "data" / split / "images")
        data[f"{split}_label_data_root"] = str(root / "data" / split / "labels")
    data["predict_data_root"] = str(root / "data" / "test" / "images")
    model_args = config["model"]["init_args"]["model_args"]
    model_args["backbone_img_size"] = TILE
    model_args["necks"][0]["indices"] = list(range(depth))
    model_args["decoder_channels"] = 16
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def prepare(root: Path) -> Path:
    for split, count in (("train", 4), ("val", 2), ("test", 2)):
        write_tiles(root / "data" / split, count, seed=len(split))
    return tiny_config(root)


def run_cli(arguments: list[str], cwd: Path, weights: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python -m axs_lib.cli.terratorch <arguments>`` in a fresh process that finds ``weights``, offline."""
    env = process_environment(AXS_WEIGHTS_DIR=str(weights), HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cwd / "hf-cache"))
    return subprocess.run(
        [sys.executable, "-m", "axs_lib.cli.terratorch", *arguments], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout,
    )
