"""examples/sar_to_optical.py, run in-process on a small synthetic scene with the tiny checkpoints."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image
from rasterio.crs import CRS
from affine import Affine

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sar_to_optical.py"
HEIGHT, WIDTH = 100, 130
NODATA = -9999.0
HOLE = (slice(10, 30), slice(20, 50))
CRS_UTM33 = CRS.from_epsg(32633)
TRANSFORM = Affine(10.0, 0.0, 399960.0, 0.0, -10.0, 5000040.0)


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("sar_to_optical_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def write_raster(path: Path, data: np.ndarray) -> Path:
    profile = {
        "driver": "GTiff", "count": data.shape[0], "height": data.shape[1], "width": data.shape[2],
        "dtype": "float32", "crs": CRS_UTM33, "transform": TRANSFORM, "nodata": NODATA,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(np.float32))
    return path


@pytest.fixture
def sar_tif(tmp_path) -> Path:
    folder = tmp_path / "scene"
    folder.mkdir()
    rng = np.random.default_rng(0)
    data = np.stack([rng.normal(-12, 3, (HEIGHT, WIDTH)), rng.normal(-20, 3, (HEIGHT, WIDTH))])
    data[(slice(None), *HOLE)] = NODATA
    return write_raster(folder / "s1.tif", data)


def test_scene_becomes_a_georeferenced_twelve_band_image_and_a_quicklook(
    example, sar_tif, tiny_weights, use_weights, capsys
):
    use_weights(tiny_weights)
    output = sar_tif.parent / "s2.tif"
    code = example.main([str(sar_tif), str(output), "--tile", "64", "--overlap", "16", "--timesteps", "6"])

    assert code == 0
    assert "6 tiles" in capsys.readouterr().out
    with rasterio.open(output) as src:
        assert (src.count, src.width, src.height) == (12, WIDTH, HEIGHT)
        assert src.crs == CRS_UTM33 and src.transform == TRANSFORM
        assert set(src.dtypes) == {"uint16"}
        assert src.descriptions[3] == "B04" and src.tags(4)["name"] == "RED"
        assert src.compression.name.lower() == "deflate" and src.profile["tiled"]
        values, masks = src.read(), src.read_masks()
        nodata = src.nodata
    hole = np.zeros((HEIGHT, WIDTH), dtype=bool)
    hole[HOLE] = True
    assert (values[:, hole] == nodata).all() and (masks[:, hole] == 0).all()
    assert (values[:, ~hole] <= 10000).all() and (masks[:, ~hole] == 255).all()
    with Image.open(output.with_suffix(".png")) as quicklook:
        assert quicklook.mode == "RGB" and quicklook.size == (WIDTH, HEIGHT)
    assert sorted(path.name for path in output.parent.iterdir()) == ["s1.tif", "s2.png", "s2.tif"]


def test_three_band_input_is_refused_in_one_line(example, tmp_path, capsys):
    three_bands = write_raster(tmp_path / "s1.tif", np.zeros((3, 32, 32)))
    assert example.main([str(three_bands), str(tmp_path / "s2.tif")]) == 2
    assert capsys.readouterr().err == f"error: {three_bands} has 3 band(s); expected 2 (VV, VH)\n"


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        (["missing.tif", "s2.tif"], "input not found: missing.tif"),
        (["s1.tif", "s2.tif", "--tile", "100"], "--tile must be a positive multiple of 16, got 100"),
        (["s1.tif", "s2.tif", "--tile", "64", "--overlap", "64"], "--overlap must be at least 0 and less than --tile"),
    ],
)
def test_bad_arguments_are_refused_in_one_line(example, sar_tif, monkeypatch, capsys, arguments, complaint):
    monkeypatch.chdir(sar_tif.parent)
    assert example.main(arguments) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {complaint}") and error.count("\n") == 1


@pytest.mark.parametrize(("height", "width"), [(100, 130), (5, 7), (64, 64)])
def test_tiles_cover_the_image_and_blend_back_exactly(example, height, width):
    tile, overlap = 64, 16
    windows = example.tile_windows(height, width, tile, overlap)
    assert max(row for row, _ in windows) + tile >= height and max(col for _, col in windows) + tile >= width
    sar = np.random.default_rng(0).normal(-15, 5, (2, height, width)).astype(np.float32)

    def copy_vv(tiles: torch.Tensor) -> torch.Tensor:
        return tiles[:, :1].repeat(1, 12, 1, 1)

    optical = example.generate(copy_vv, sar, tile, overlap, batch_size=3)
    assert optical.shape == (12, height, width)
    np.testing.assert_allclose(optical, np.broadcast_to(sar[0], optical.shape), rtol=1e-5)


def test_linear_power_is_converted_to_db_and_nodata_filled_with_the_median(example, tmp_path):
    power = np.full((2, 4, 4), 0.01)
    power[1] = 0.1
    power[:, 0, 0] = NODATA
    scene = example.read_sar(write_raster(tmp_path / "s1.tif", power), linear=True)
    assert not scene.valid[0, 0] and scene.valid.sum() == 15
    np.testing.assert_allclose(scene.data[:, 0, 0], [-20, -10], rtol=1e-6)
    np.testing.assert_allclose(scene.data[:, 1:, 1:], np.broadcast_to([[[-20]], [[-10]]], (2, 3, 3)), rtol=1e-6)


def test_float_output_keeps_values_unclipped_with_nan_nodata(example, tmp_path):
    optical = np.full((12, 4, 5), 12345.5, dtype=np.float32)
    valid = np.ones((4, 5), dtype=bool)
    valid[0, 0] = False
    profile = {"driver": "GTiff", "height": 4, "width": 5, "crs": CRS_UTM33, "transform": TRANSFORM}
    example.write_geotiff(tmp_path / "s2.tif", optical, valid, profile, as_float=True)
    with rasterio.open(tmp_path / "s2.tif") as src:
        assert set(src.dtypes) == {"float32"} and np.isnan(src.nodata)
        values = src.read()
    assert np.isnan(values[:, 0, 0]).all() and (values[:, valid] == 12345.5).all()
