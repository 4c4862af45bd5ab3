"""Streaming whole-scene inference (axs_lib.scenes): seams, grid, nodata, atomic and resumable outputs, torchrun."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.crs import CRS
from torch import nn

from axs_lib.scenes import InvalidSceneError, OutputExistsError, plan_windows, stream_model

CRS_UTM33 = CRS.from_epsg(32633)
TRANSFORM = Affine(10.0, 0.0, 399960.0, 0.0, -10.0, 5000040.0)
NODATA = -9999.0
WORKER = Path(__file__).with_name("scene_worker.py")


def write_raster(path: Path, data: np.ndarray, crs: CRS | None = CRS_UTM33, nodata: float | None = NODATA) -> Path:
    profile = {
        "driver": "GTiff", "count": data.shape[0], "height": data.shape[1], "width": data.shape[2],
        "dtype": "float32", "crs": crs, "transform": TRANSFORM, "nodata": nodata,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(np.float32))
    return path


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def convolution(seed: int = 0) -> nn.Module:
    """Two 5x5 convolutions: a receptive field of 4 pixels on each side."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 4, 5, padding=2), nn.Tanh(), nn.Conv2d(4, 3, 5, padding=2)).eval()


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    data = np.random.default_rng(0).normal(0, 1, (2, 150, 201))
    return write_raster(tmp_path_factory.mktemp("scene") / "scene.tif", data)


@pytest.mark.parametrize(("height", "width", "tile", "overlap"), [(150, 201, 64, 16), (5, 7, 32, 8), (64, 64, 64, 0)])
def test_window_cores_partition_the_scene_and_keep_half_the_overlap_as_context(height, width, tile, overlap):
    plan = plan_windows(height, width, tile, overlap)
    covered = np.zeros((height, width), dtype=int)
    for window in plan.windows:
        covered[window.core_row : window.core_row + window.core_height, window.core_col : window.core_col + window.core_width] += 1
        rows, cols = window.core_in_tile()
        assert 0 <= rows.start and rows.stop <= tile and 0 <= cols.start and cols.stop <= tile
        for inside, core, size in ((rows, window.core_row, height), (cols, window.core_col, width)):
            assert core == 0 or inside.start >= overlap // 2, "context before the core, unless at the scene edge"
            window_end = core - inside.start + tile
            assert window_end >= size or tile - inside.stop >= overlap // 2, "context after the core, unless the window reaches the edge"
    assert (covered == 1).all()
    rng = np.random.default_rng(height)
    for _ in range(20):
        top, left = int(rng.integers(0, height)), int(rng.integers(0, width))
        rows, cols = int(rng.integers(1, height - top + 1)), int(rng.integers(1, width - left + 1))
        expected = [
            w for w in plan.windows
            if w.core_row < top + rows and top < w.core_row + w.core_height
            and w.core_col < left + cols and left < w.core_col + w.core_width
        ]
        assert plan.cores_overlapping(top, left, rows, cols) == expected


def test_streamed_output_equals_the_whole_scene_result_away_from_the_edge(scene, work):
    model = convolution()
    output = stream_model(model, scene, work / "out.tif", tile=64, overlap=16, batch_size=3)
    with torch.no_grad():
        whole = model(torch.from_numpy(read(scene))[None])[0].numpy()
    edge = 4
    error = np.abs(read(output) - whole)[:, edge:-edge, edge:-edge].max()
    assert error <= 1e-4, f"max seam error {error}"


def test_output_is_a_tiled_geotiff_on_the_input_grid_with_nodata_kept(work):
    data = np.random.default_rng(1).normal(0, 1, (2, 70, 90))
    data[:, 10:20, 30:45] = NODATA
    source = write_raster(work / "in.tif", data)
    output = stream_model(convolution(), source, work / "out.tif", tile=32, overlap=8, output_dtype="float32")
    with rasterio.open(output) as src:
        assert (src.count, src.height, src.width, src.crs, src.transform) == (3, 70, 90, CRS_UTM33, TRANSFORM)
        assert src.profile["tiled"] and src.compression.name.lower() == "deflate"
        values, masks = src.read(), src.read_masks()
    hole = np.zeros((70, 90), dtype=bool)
    hole[10:20, 30:45] = True
    assert np.isnan(values[:, hole]).all() and (masks[:, hole] == 0).all()
    assert np.isfinite(values[:, ~hole]).all()
    assert sorted(p.name for p in work.iterdir()) == ["in.tif", "out.tif"]


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"bands": 3}, "has 2 band(s); expected 3"),
        ({"tile": 30, "multiple_of": 16}, "--tile must be a positive multiple of the model's patch size 16, got 30"),
        ({"overlap": 16}, "--overlap must be at least 0 and less than half of --tile (32), got 16"),
    ],
)
def test_bad_tiling_or_bands_are_refused_before_anything_is_written(scene, work, change, complaint):
    arguments = {"tile": 32, "overlap": 8, **change}
    with pytest.raises(InvalidSceneError, match=complaint.replace("(", r"\(").replace(")", r"\)")):
        stream_model(convolution(), scene, work / "out.tif", **arguments)
    assert list(work.iterdir()) == []


def test_the_quicklook_of_a_large_scene_is_every_step_th_pixel_read_strip_by_strip_with_nodata_black(work, monkeypatch):
    from PIL import Image

    from axs_lib.scenes import quicklook

    monkeypatch.setattr(quicklook, "QUICKLOOK_MAX_SIDE", 40)
    monkeypatch.setattr(quicklook, "STRIP_ROWS", 7)  # several strips, most not starting on a multiple of the step
    data = np.random.default_rng(2).uniform(0, 1000, (3, 100, 130))
    data[:, 10:30, 20:50] = NODATA
    quicklook.write_quicklook(write_raster(work / "rgb.tif", data), work / "rgb.png", (0, 1, 2))

    png = np.asarray(Image.open(work / "rgb.png"))
    assert png.shape == (25, 33, 3), "130 columns shown at a step of 4 (the smallest that fits 40)"
    hole = (data[0] == NODATA)[::4, ::4]
    assert (png[hole] == 0).all() and png[~hole].any()
    for channel in range(3):
        shown, values = png[..., channel][~hole].astype(int), data[channel][::4, ::4][~hole]
        assert (np.diff(shown[np.argsort(values)]) >= 0).all(), "each shown pixel is the scene's pixel at that step"


def test_the_output_is_written_block_by_block_so_it_is_no_larger_than_the_same_raster_written_at_once(work, monkeypatch):
    from axs_lib.scenes import rasters

    monkeypatch.setattr(rasters, "GDAL_CACHE_MB", 1)  # smaller than a row of output blocks, as on big scenes
    source = write_raster(work / "in.tif", np.random.default_rng(3).normal(0, 1, (2, 600, 700)))
    output = stream_model(convolution(), source, work / "out.tif", tile=64, overlap=16, batch_size=8)
    with rasterio.open(output) as src:
        profile, values = src.profile, src.read()
    with rasterio.Env(GDAL_CACHEMAX=1), rasterio.open(work / "at-once.tif", "w", **profile) as dst:
        dst.write(values)
    rasters.write_cog(work / "at-once.tif", work / "at-once-cog.tif", "nearest", rasters.BLOCK_SIZE)
    assert output.stat().st_size <= 1.01 * (work / "at-once-cog.tif").stat().st_size


def test_input_without_crs_is_refused(work):
    source = write_raster(work / "in.tif", np.zeros((2, 8, 8)), crs=None)
    with pytest.raises(InvalidSceneError, match="has no CRS"):
        stream_model(convolution(), source, work / "out.tif", tile=32, overlap=8)


def test_existing_output_is_kept_unless_overwrite(scene, work):
    output = work / "out.tif"
    output.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="exists; pass --overwrite"):
        stream_model(convolution(), scene, output, tile=64, overlap=16)
    assert output.read_bytes() == b"precious"
    stream_model(convolution(), scene, output, tile=64, overlap=16, overwrite=True)
    assert read(output).shape == (3, 150, 201)


def run_worker(source: Path, output: Path, *extra: str, launcher: tuple[str, ...] = ()) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *launcher, str(WORKER), str(source), str(output), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=output.parent,
        env={**os.environ, "TMPDIR": str(output.parent)},  # torchrun's own temp folders go with the test
    )


def finished(process: subprocess.Popen) -> None:
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 0, out


@pytest.fixture(scope="module")
def reference(scene, tmp_path_factory) -> np.ndarray:
    """The noisy model's output from one uninterrupted process, in batches of 4."""
    output = tmp_path_factory.mktemp("reference") / "out.tif"
    finished(run_worker(scene, output))
    return read(output)


def test_run_killed_part_way_resumes_to_the_uninterrupted_output(scene, reference, work):
    output = work / "out.tif"
    partial = work / "out.tif.partial"
    process = run_worker(scene, output, "--sleep", "0.3", "--batch-size", "1")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not partial.is_dir() or len(list(partial.glob("r*.npy"))) < 5):
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    saved = len(list(partial.glob("r*.npy")))
    assert not output.exists() and 5 <= saved < len(plan_windows(150, 201, 32, 8))

    finished(run_worker(scene, output, "--batch-size", "3"))
    assert not partial.exists()
    np.testing.assert_array_equal(read(output), reference)


def test_torchrun_with_two_processes_gives_the_single_process_output(scene, reference, work):
    output = work / "out.tif"
    launcher = ("-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2")
    finished(run_worker(scene, output, launcher=launcher))
    np.testing.assert_array_equal(read(output), reference)
