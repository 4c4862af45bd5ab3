"""The scene commands (``axs-scenes segment | sar-to-optical | pipeline``) with the tiny checkpoints."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image

from axs_lib.cli.scenes import main
from test_scenes import CRS_UTM33, NODATA, TRANSFORM, read, read_only_mount, write_raster
from helpers import process_environment

ROOT = Path(__file__).resolve().parents[1]
HEIGHT, WIDTH = 100, 130
HOLE = (slice(10, 30), slice(20, 50))
CLASSES = 3


def hole_mask() -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[HOLE] = True
    return mask


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> dict[str, Path]:
    """A Sentinel-1 scene in dB and a six-band reflectance scene, both with a nodata hole."""
    folder = tmp_path_factory.mktemp("scenes")
    rng = np.random.default_rng(0)
    sar = np.stack([rng.normal(-12, 3, (HEIGHT, WIDTH)), rng.normal(-20, 3, (HEIGHT, WIDTH))])
    optical = rng.uniform(0, 5000, (6, HEIGHT, WIDTH))
    for data in (sar, optical):
        data[(slice(None), *HOLE)] = NODATA
    return {"sar": write_raster(folder / "s1.tif", sar), "optical": write_raster(folder / "hls.tif", optical)}


@pytest.fixture(scope="module")
def segmentation_folder(tiny_weights, tmp_path_factory) -> Path:
    """A tiny Prithvi segmentation model saved with its base weights, so the folder is self-contained."""
    from axs_lib.models import build_prithvi_600

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AXS_WEIGHTS_DIR", str(tiny_weights))
        model = build_prithvi_600(num_classes=CLASSES, img_size=56)
        return model.save_pretrained(tmp_path_factory.mktemp("model") / "segmenter", include_base=True)


@pytest.fixture
def terramind(tiny_weights, use_weights):
    use_weights(tiny_weights)


def test_sar_to_optical_writes_twelve_georeferenced_bands_a_quicklook_and_nothing_else(scenes, terramind, work, capsys):
    output = work / "s2.tif"
    code = main(["sar-to-optical", str(scenes["sar"]), str(output), "--tile", "64", "--overlap", "16", "--timesteps", "6", "--quiet"])

    assert code == 0, capsys.readouterr().err
    with rasterio.open(output) as src:
        assert (src.count, src.width, src.height, src.crs, src.transform) == (12, WIDTH, HEIGHT, CRS_UTM33, TRANSFORM)
        assert set(src.dtypes) == {"uint16"} and src.profile["tiled"]
        assert src.descriptions[3] == "B04" and src.tags(4)["name"] == "RED"
        values, masks = src.read(), src.read_masks()
    hole = hole_mask()
    assert (values[:, hole] == 65535).all() and (masks[:, hole] == 0).all()
    assert (values[:, ~hole] <= 10000).all() and (masks[:, ~hole] == 255).all()
    with Image.open(output.with_suffix(".png")) as quicklook:
        assert quicklook.mode == "RGB" and quicklook.size == (WIDTH, HEIGHT)
    assert sorted(path.name for path in work.iterdir()) == ["s2.png", "s2.tif"]


def test_sar_to_optical_generates_with_the_terramind_size_asked_for(scenes, tiny_weights, use_weights, work, capsys):
    use_weights(tiny_weights)
    output = work / "s2.tif"
    options = ["--tile", "64", "--overlap", "16", "--timesteps", "1", "--quiet", "--size", "small"]
    assert main(["sar-to-optical", str(scenes["sar"]), str(output), *options]) == 0, capsys.readouterr().err
    with rasterio.open(output) as src:
        assert src.tags()["SOURCE"] == "TerraMind 1.0 Small S1GRD -> S2L2A"
    old_name = [*options[:-2], "--generator", "small"]
    assert main(["sar-to-optical", str(scenes["sar"]), str(work / "old.tif"), *old_name]) == 0
    assert "warning: --generator is deprecated: use --size" in capsys.readouterr().err
    use_weights(work)
    assert main(["sar-to-optical", str(scenes["sar"]), str(work / "other.tif"), *options]) != 0
    assert "TerraMind-1.0-small" in capsys.readouterr().err


def test_generation_noise_depends_on_the_seed_and_window_not_on_the_batch(scenes, terramind, work):
    common = [str(scenes["sar"]), "--tile", "64", "--overlap", "16", "--timesteps", "6", "--quiet", "--float"]
    assert main(["sar-to-optical", common[0], str(work / "a.tif"), *common[1:], "--batch-size", "1"]) == 0
    assert main(["sar-to-optical", common[0], str(work / "b.tif"), *common[1:], "--batch-size", "4"]) == 0
    assert main(["sar-to-optical", common[0], str(work / "c.tif"), *common[1:], "--seed", "1"]) == 0
    np.testing.assert_array_equal(read(work / "a.tif"), read(work / "b.tif"))
    assert not np.array_equal(read(work / "a.tif"), read(work / "c.tif"))


def test_segment_writes_a_class_map_with_nodata_or_probabilities(scenes, segmentation_folder, work):
    assert main(["segment", str(scenes["optical"]), str(work / "classes.tif"), "--model", str(segmentation_folder), "--tile", "56", "--overlap", "8", "--quiet"]) == 0
    assert main(["segment", str(scenes["optical"]), str(work / "probabilities.tif"), "--model", str(segmentation_folder), "--tile", "56", "--overlap", "8", "--quiet", "--probabilities"]) == 0

    hole = hole_mask()
    with rasterio.open(work / "classes.tif") as src:
        assert (src.count, src.dtypes[0], src.nodata, src.crs, src.transform) == (1, "uint8", 255, CRS_UTM33, TRANSFORM)
        classes = src.read(1)
    assert (classes[hole] == 255).all() and (classes[~hole] < CLASSES).all()
    probabilities = read(work / "probabilities.tif")
    assert probabilities.shape == (CLASSES, HEIGHT, WIDTH) and np.isnan(probabilities[:, hole]).all()
    np.testing.assert_allclose(probabilities[:, ~hole].sum(axis=0), 1, rtol=1e-5)
    np.testing.assert_array_equal(probabilities[:, ~hole].argmax(axis=0), classes[~hole])


def test_pipeline_gives_the_optical_scene_of_sar_to_optical_and_its_classes(scenes, segmentation_folder, terramind, work):
    options = ["--tile", "112", "--overlap", "16", "--timesteps", "6", "--quiet"]
    assert main(["pipeline", str(scenes["sar"]), str(work / "classes.tif"), "--model", str(segmentation_folder), "--optical", str(work / "optical.tif"), *options]) == 0
    assert main(["sar-to-optical", str(scenes["sar"]), str(work / "s2.tif"), *options]) == 0

    np.testing.assert_array_equal(read(work / "optical.tif"), read(work / "s2.tif"))
    classes = read(work / "classes.tif")[0]
    assert (classes[hole_mask()] == 255).all() and (classes[~hole_mask()] < CLASSES).all()


def test_stream_model_standardises_a_segmentation_models_input_with_its_pretraining_statistics(segmentation_folder, work):
    from axs_lib.models import SegmentationModel
    from axs_lib.scenes import stream_model
    from axs_lib.weights.catalog import KNOWN_MODELS, PRITHVI_600M

    model = SegmentationModel.from_pretrained(segmentation_folder)
    base = KNOWN_MODELS[PRITHVI_600M]  # the pretraining statistics the catalog publishes for Prithvi EO 2.0
    raw = np.random.default_rng(4).uniform(0, 4000, (6, 70, 90))
    standardised = (raw - np.array(base.mean)[:, None, None]) / np.array(base.std)[:, None, None]
    windows = {"tile": 56, "overlap": 14}

    by_model = stream_model(model, write_raster(work / "raw.tif", raw, nodata=None), work / "a.tif", **windows)
    by_hand = stream_model(model, write_raster(work / "std.tif", standardised, nodata=None), work / "b.tif",
                           standardize=False, **windows)
    unstandardised = stream_model(model, work / "raw.tif", work / "c.tif", standardize=False, **windows)
    np.testing.assert_allclose(read(by_model), read(by_hand), atol=1e-4)
    assert not np.allclose(read(by_model), read(unstandardised), atol=1e-2)


@pytest.mark.parametrize("given", ["Prithvi-EO-2.0-600M", "Prithvi-EO-2.0-600M/Prithvi_EO_V2_600M.pt"])
def test_foundation_weights_given_as_the_model_say_that_segment_needs_a_fine_tuned_one(scenes, tiny_weights, work, capsys, given):
    output = work / "classes.tif"
    assert main(["segment", str(scenes["optical"]), str(output), "--model", str(tiny_weights / given)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "holds the foundation weights of Prithvi-EO-2.0-600M, not a fine-tuned model" in error
    assert "--model takes a segmentation model fine-tuned from them" in error and "docs/fine_tuning.md" in error
    assert not output.exists()


def test_an_existing_output_is_refused_before_the_model_loads(scenes, segmentation_folder, work, capsys, monkeypatch):
    from axs_lib.models import SegmentationModel

    def loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(SegmentationModel, "_from_pretrained", classmethod(loading))
    output = work / "classes.tif"
    output.write_bytes(b"kept")
    assert main(["segment", str(scenes["optical"]), str(output), "--model", str(segmentation_folder)]) == 2
    assert f"error: {output} exists; pass --overwrite to replace it" in capsys.readouterr().err
    assert output.read_bytes() == b"kept"


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        (["sar-to-optical", "hls.tif", "out.tif"], "hls.tif has 6 band(s); expected 2 (VV, VH)"),
        (["sar-to-optical", "no-crs.tif", "out.tif"], "no-crs.tif has no CRS"),
        (["sar-to-optical", "s1.tif", "out.tif", "--tile", "100"], "--tile must be a positive multiple of the model's patch size 16, got 100"),
        (["segment", "hls.tif", "out.tif", "--model", "MODEL", "--tile", "64", "--overlap", "8"], "--tile must be a positive multiple of the model's patch size 14, got 64"),
        (["sar-to-optical", "s1.tif", "out.tif", "--tile", "64", "--overlap", "32"], "--overlap must be at least 0 and less than half of --tile (64), got 32"),
        (["sar-to-optical", "s1.tif", "existing.tif"], "existing.tif exists; pass --overwrite to replace it"),
        (["segment", "hls.tif", "out.tif", "--model", "not-a-model"], "not-a-model is not a saved axs_lib model"),
        (["sar-to-optical", "s1.tif", "missing/out.tif"], "output folder not found: missing; create it first"),
        (["sar-to-optical", "s1.tif", "not-a-model"], "not-a-model is a folder; give the output a file name (e.g. not-a-model/out.tif)"),
        (["sar-to-optical", "s1.tif", "out.tif", "--quicklook", "missing/out.png"], "output folder not found: missing; create it first"),
        (["sar-to-optical", "s1.tif", "out.tif", "--device", "tpu"], "--device tpu is not a device: pass cpu, cuda or cuda:N"),
        (["sar-to-optical", "s1.tif", "./s1.tif", "--overwrite"], "the output s1.tif is the input s1.tif: write the output to another file"),
        (["pipeline", "s1.tif", "out.tif", "--model", "MODEL", "--optical", "./out.tif"], "out.tif is given for two outputs: give each output its own file"),
    ],
)
def test_bad_input_is_one_line_exit_code_2_and_nothing_written(
    scenes, segmentation_folder, terramind, work, monkeypatch, capsys, arguments, complaint
):
    for name, path in (("s1.tif", scenes["sar"]), ("hls.tif", scenes["optical"])):
        (work / name).symlink_to(path)
    write_raster(work / "no-crs.tif", np.zeros((2, 16, 16)), crs=None)
    (work / "existing.tif").write_bytes(b"keep")
    (work / "not-a-model").mkdir()
    (work / "not-a-model" / "notes.txt").write_text("not a model")
    before = sorted(path.name for path in work.iterdir())
    monkeypatch.chdir(work)

    assert main([argument.replace("MODEL", str(segmentation_folder)) for argument in arguments]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {complaint}") and error.count("\n") == 1, error
    assert sorted(path.name for path in work.iterdir()) == before
    assert (work / "existing.tif").read_bytes() == b"keep"


def test_segment_runs_as_a_command_from_another_folder(scenes, segmentation_folder, work):
    env = process_environment(LIGHTLY_DID_VERSION_CHECK="True", HF_HUB_OFFLINE="1", AXS_WEIGHTS_DIR=None)
    result = subprocess.run(
        [sys.executable, "-m", "axs_lib.cli.scenes", "segment", str(scenes["optical"]), "classes.tif",
         "--model", str(segmentation_folder), "--tile", "56", "--overlap", "8", "--quiet"],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("wrote classes.tif in ")
    assert read(work / "classes.tif").shape == (1, HEIGHT, WIDTH)


def test_the_example_script_is_the_sar_to_optical_command():
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "sar_to_optical.py"), "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stdout.startswith("usage: axs-scenes sar-to-optical")


def test_a_read_only_output_folder_is_one_line_before_any_model_is_loaded(scenes, work, capsys):
    (work / "read-only").mkdir()
    with read_only_mount(work / "read-only") as folder:
        assert main(["sar-to-optical", str(scenes["sar"]), str(folder / "s2.tif")]) == 2
    assert capsys.readouterr().err == f"error: cannot write in the output folder {folder} (read-only): choose a writable folder\n"


@contextmanager
def small_disk(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``folder``; the test is skipped where mounting is not permitted."""
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_is_one_line_saying_where_to_continue_and_the_same_command_continues_there(
    scenes, terramind, work, capsys
):
    (work / "disk").mkdir()
    with small_disk(work / "disk", "150k") as disk:
        command = ["sar-to-optical", str(scenes["sar"]), str(disk / "s2.tif"), "--tile", "64", "--overlap", "16", "--timesteps", "6", "--quiet"]
        assert main(command) == 1
        saved = len(list((disk / "s2.tif.partial").glob("r*.npy")))
        error = capsys.readouterr().err
        assert error.startswith(f"error: cannot save a window in {disk / 's2.tif.partial'} (") and error.count("\n") == 1, error
        assert error.endswith(
            "; the disk is probably full: make room on it, then rerun the same command to continue from "
            f"window {saved + 1} of 9\n"
        )
        subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)
        assert main(command) == 0
        assert read(disk / "s2.tif").shape == (12, HEIGHT, WIDTH)
        assert sorted(path.name for path in disk.iterdir()) == ["s2.png", "s2.tif"]


def test_a_base_model_mismatch_names_the_command_line_option_that_gives_the_right_base(
    scenes, tiny_weights, use_weights, work, capsys
):
    from axs_lib.models import build_prithvi_600
    from axs_lib.weights.catalog import PRITHVI_600M
    from axs_lib.demo.tiny_weights import prithvi_state_dict, write_tiny_weights

    use_weights(tiny_weights)
    folder = build_prithvi_600(num_classes=CLASSES, img_size=56).save_pretrained(work / "without-base")
    other = work / "other-weights"
    write_tiny_weights(other, names=[PRITHVI_600M])
    torch.save(prithvi_state_dict(seed=1), other / PRITHVI_600M / "Prithvi_EO_V2_600M.pt")
    use_weights(other)
    command = ["segment", str(scenes["optical"]), str(work / "classes.tif"), "--model", str(folder), "--tile", "56", "--overlap", "8", "--quiet"]

    assert main(command) == 2
    error = capsys.readouterr().err
    assert "pass --base-checkpoint <the original base weights>" in error and "checkpoint_path" not in error, error
    assert main([*command, "--base-checkpoint", str(tiny_weights / PRITHVI_600M)]) == 0
