"""Streaming whole-scene inference (axs_lib.scenes): seams, grid, nodata, atomic and resumable outputs, torchrun."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.crs import CRS
from torch import nn

from axs_lib.errors import SceneReadError
from axs_lib.scenes import InvalidSceneError, OutputExistsError, plan_windows, stream_model
from helpers import process_environment

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


def reaching(pixels: int, seed: int = 0) -> nn.Module:
    """5x5 convolutions whose receptive field reaches exactly ``pixels`` (even) on each side."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Conv2d(2, 4, 5, padding=2)]
    for _ in range(pixels // 2 - 1):
        layers += [nn.Tanh(), nn.Conv2d(4, 4, 5, padding=2)]
    return nn.Sequential(*layers).eval()


def test_streamed_output_equals_the_whole_scene_result_away_from_the_edge(scene, work):
    overlap = 16
    model = reaching(overlap // 2)  # any core off by one pixel sees the window's padding, and differs
    output = stream_model(model, scene, work / "out.tif", tile=64, overlap=overlap, batch_size=3)
    with torch.no_grad():
        whole = model(torch.from_numpy(read(scene))[None])[0].numpy()
    edge = overlap // 2
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
        ({"tile": 30, "multiple_of": 16}, "`tile` must be a positive multiple of the model's patch size 16, got 30"),
        ({"overlap": 16}, "`overlap` must be at least 0 and less than half of `tile` (32), got 16"),
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
    from axs_lib.scenes import inputs, outputs

    monkeypatch.setattr(inputs, "GDAL_CACHE_MB", 1)  # smaller than a row of output blocks, as on big scenes
    source = write_raster(work / "in.tif", np.random.default_rng(3).normal(0, 1, (2, 600, 700)))
    output = stream_model(convolution(), source, work / "out.tif", tile=64, overlap=16, batch_size=8)
    with rasterio.open(output) as src:
        profile, values = src.profile, src.read()
    with rasterio.Env(GDAL_CACHEMAX=1), rasterio.open(work / "at-once.tif", "w", **profile) as dst:
        dst.write(values)
    outputs.write_cog(work / "at-once.tif", work / "at-once-cog.tif", "nearest", outputs.BLOCK_SIZE)
    assert output.stat().st_size <= 1.01 * (work / "at-once-cog.tif").stat().st_size


def test_input_without_crs_is_refused(work):
    source = write_raster(work / "in.tif", np.zeros((2, 8, 8)), crs=None)
    with pytest.raises(InvalidSceneError, match="has no CRS"):
        stream_model(convolution(), source, work / "out.tif", tile=32, overlap=8)


def test_existing_output_is_kept_unless_overwrite(scene, work):
    output = work / "out.tif"
    output.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="exists; pass `overwrite=True`"):
        stream_model(convolution(), scene, output, tile=64, overlap=16)
    assert output.read_bytes() == b"precious"
    stream_model(convolution(), scene, output, tile=64, overlap=16, overwrite=True)
    assert read(output).shape == (3, 150, 201)


TORCHRUN = ("-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2")


def run_worker(
    source: Path, output: Path, *extra: str, launcher: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> subprocess.Popen:
    """The worker (or a torchrun job of it) in its own process group, so a kill reaches torchrun's ranks too."""
    return subprocess.Popen(
        [sys.executable, *launcher, str(WORKER), str(source), str(output), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=output.parent, start_new_session=True,
        env=process_environment(TMPDIR=str(output.parent), **(env or {})),  # torchrun's own temp folders go with the test
    )


def finished(process: subprocess.Popen) -> None:
    out, _ = process.communicate(timeout=180)
    assert process.returncode == 0, out


def refused(process: subprocess.Popen, code: int = 2) -> str:
    """The one line a worker printed when it stopped with ``code``."""
    out, _ = process.communicate(timeout=180)
    lines = [line for line in out.splitlines() if line.startswith("error: ")]
    assert process.returncode == code and len(lines) == 1, out
    return lines[0]


def wait_for_windows(partial: Path, count: int) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and (not partial.is_dir() or len(list(partial.glob("r*.npy"))) < count):
        time.sleep(0.05)


def kill(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.fixture(scope="module")
def reference(scene, tmp_path_factory) -> np.ndarray:
    """The noisy model's output from one uninterrupted process, in batches of 4."""
    output = tmp_path_factory.mktemp("reference") / "out.tif"
    finished(run_worker(scene, output))
    return read(output)


def test_a_second_run_is_refused_naming_the_first_and_after_a_sigkill_the_next_resumes_to_the_uninterrupted_output(
    scene, reference, work
):
    output = work / "out.tif"
    partial = work / "out.tif.partial"
    first = run_worker(scene, output, "--sleep", "1", "--batch-size", "1")
    try:
        wait_for_windows(partial, 2)
        assert refused(run_worker(scene, output)) == (
            f"error: {output} is being written by another run (pid {first.pid} on {socket.gethostname()}): "
            "wait for it to end, or write to another file"
        )
    finally:
        kill(first)
    saved = len(list(partial.glob("r*.npy")))
    assert not output.exists() and 2 <= saved < len(plan_windows(150, 201, 32, 8))

    finished(run_worker(scene, output, "--batch-size", "3"))
    assert sorted(path.name for path in work.iterdir()) == ["out.tif"], "no partial folder, no lock file"
    np.testing.assert_array_equal(read(output), reference)


def test_torchrun_with_two_processes_gives_the_single_process_output(scene, reference, work):
    output = work / "out.tif"
    finished(run_worker(scene, output, launcher=TORCHRUN))
    np.testing.assert_array_equal(read(output), reference)


def test_the_ranks_of_a_torchrun_job_share_its_lock_and_a_second_job_is_refused(scene, work):
    output = work / "out.tif"
    first = run_worker(scene, output, "--sleep", "1", "--batch-size", "1", launcher=TORCHRUN)
    try:
        wait_for_windows(work / "out.tif.partial", 2)
        second = run_worker(scene, output, launcher=TORCHRUN)
        out, _ = second.communicate(timeout=300)
        assert second.returncode != 0
        assert f"error: {output} is being written by another run (pid " in out, out
        assert first.poll() is None, "the first job runs on"
    finally:
        kill(first)


def test_batched_results_are_equal_across_process_counts_at_one_thread_per_process(scene, work):
    one_thread = {"OMP_NUM_THREADS": "1"}
    finished(run_worker(scene, work / "single.tif", "--model", "wide", "--batch-size", "2", env=one_thread))
    finished(run_worker(scene, work / "ranks.tif", "--model", "wide", "--batch-size", "2", launcher=TORCHRUN, env=one_thread))
    assert np.array_equal(read(work / "single.tif"), read(work / "ranks.tif"))


def test_a_partial_output_is_resumed_only_by_the_same_weights(scene, work):
    output = work / "out.tif"
    arguments = {"tile": 64, "overlap": 16, "batch_size": 1}
    first = convolution(seed=0)
    calls = []

    def stop_after_three_calls(module, inputs, result):
        calls.append(len(inputs))
        if len(calls) > 3:
            raise RuntimeError("stopped")

    hook = first.register_forward_hook(stop_after_three_calls)
    with pytest.raises(RuntimeError, match="stopped"):
        stream_model(first, scene, output, **arguments)
    hook.remove()
    with pytest.raises(OutputExistsError, match=r"holds a partial output of a different run \(weights changed\)"):
        stream_model(convolution(seed=1), scene, output, **arguments)

    stream_model(convolution(seed=1), scene, output, overwrite=True, **arguments)
    stream_model(convolution(seed=1), scene, work / "fresh.tif", **arguments)
    np.testing.assert_array_equal(read(output), read(work / "fresh.tif"))


def write_truncated_raster(path: Path) -> Path:
    """A tiled, compressed two-band raster whose second half of blocks was cut off: it opens, then fails to read."""
    data = np.random.default_rng(4).normal(0, 1, (2, 150, 201)).astype(np.float32)
    profile = {
        "driver": "GTiff", "count": 2, "height": 150, "width": 201, "dtype": "float32", "crs": CRS_UTM33,
        "transform": TRANSFORM, "tiled": True, "blockxsize": 16, "blockysize": 16, "compress": "deflate",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    os.truncate(path, path.stat().st_size // 2)
    return path


def test_a_truncated_input_stops_the_run_at_its_resume_point_and_overwrite_keeps_the_old_output(work):
    source = write_truncated_raster(work / "in.tif")
    output = work / "out.tif"
    output.write_bytes(b"previous result")
    with pytest.raises(SceneReadError) as error:
        stream_model(convolution(), source, output, tile=32, overlap=8, batch_size=1, overwrite=True)

    saved = len(list((work / "out.tif.partial").glob("r*.npy")))
    assert saved > 0 and error.value.partial == work / "out.tif.partial"
    assert str(error.value).startswith(f"cannot read {source} (")
    assert str(error.value).endswith(
        "the file is truncated or corrupt: check or replace it, then call again with the same arguments "
        f"to continue from window {saved + 1} of 63 ({work / 'out.tif.partial'} is kept)"
    )
    assert output.read_bytes() == b"previous result"


@pytest.mark.parametrize(
    ("limit", "stage"),
    [
        (4096, r"cannot save a window in \S*out.tif.partial \(.*\); the disk is probably full: make room on it, "
               r"then call again with the same arguments to continue from window 1 of 63"),
        (65536, r"cannot write \S*out.tif \(.*\); the disk is probably full: make room on it, "
                r"then call again with the same arguments to assemble it from the 63 saved windows"),
    ],
    ids=["saving-windows", "assembling"],
)
def test_a_full_disk_stops_the_run_in_one_line_keeping_the_old_output_and_the_finished_windows(
    scene, reference, work, limit, stage
):
    output = work / "out.tif"
    output.write_bytes(b"previous result")
    message = refused(run_worker(scene, output, "--overwrite", "--file-size-limit", str(limit)), code=1)
    assert re.fullmatch(f"error: {stage} \\(\\S*out.tif.partial is kept\\)", message), message
    assert output.read_bytes() == b"previous result" and (work / "out.tif.partial" / "run.json").is_file()

    finished(run_worker(scene, output, "--overwrite"))
    np.testing.assert_array_equal(read(output), reference)


def test_a_partial_folder_left_by_a_run_killed_after_its_final_rename_is_removed_by_the_next_run(scene, reference, work):
    output = work / "out.tif"
    killed = run_worker(scene, output, "--die-before-cleanup")
    killed.communicate(timeout=180)
    assert killed.returncode == -signal.SIGKILL and (work / "out.tif.partial").is_dir()
    np.testing.assert_array_equal(read(output), reference)

    assert refused(run_worker(scene, output)) == f"error: {output} exists; pass `overwrite=True` to replace it"
    assert sorted(path.name for path in work.iterdir()) == ["out.tif"]


@pytest.mark.parametrize(
    ("input_name", "output_name"),
    [("x.tif", "x.tif"), ("x.tif", "ABSOLUTE"), ("sub/../x.tif", "x.tif"), ("x.tif", "symlink.tif"), ("x.tif", "hardlink.tif")],
)
def test_the_input_is_never_its_own_output_however_the_path_is_spelled(work, monkeypatch, input_name, output_name):
    source = write_raster(work / "x.tif", np.random.default_rng(5).normal(0, 1, (2, 40, 40)))
    (work / "sub").mkdir()
    (work / "symlink.tif").symlink_to(source)
    os.link(source, work / "hardlink.tif")
    before = source.read_bytes()
    monkeypatch.chdir(work)
    output = source if output_name == "ABSOLUTE" else Path(output_name)

    with pytest.raises(InvalidSceneError, match=f"the output {output} is the input {input_name}: write the output to another file"):
        stream_model(convolution(), Path(input_name), output, tile=32, overlap=8, overwrite=True)
    assert source.read_bytes() == before
    assert sorted(path.name for path in work.iterdir()) == ["hardlink.tif", "sub", "symlink.tif", "x.tif"]


@contextmanager
def read_only_mount(folder: Path) -> Iterator[Path]:
    """``folder`` bind-mounted read-only onto itself; the test is skipped where mounting is not permitted."""
    mounted = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"a read-only bind mount is not permitted here: {mounted.stderr.strip()}")
    try:
        remounted = subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], capture_output=True, text=True)
        if remounted.returncode != 0:
            pytest.skip(f"a read-only bind mount is not permitted here: {remounted.stderr.strip()}")
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_read_only_output_folder_is_refused_before_anything_runs(scene, work):
    (work / "read-only").mkdir()
    with read_only_mount(work / "read-only") as folder:
        with pytest.raises(InvalidSceneError, match=f"cannot write in the output folder {folder} \\(read-only\\): choose a writable folder"):
            stream_model(convolution(), scene, folder / "out.tif", tile=64, overlap=16)
