"""``axs-scenes evaluate``: streamed metrics equal whole-image torchmetrics; masks, ignored labels, reprojection."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.warp import transform as transform_points
from rasterio.warp import transform_bounds
from scipy.ndimage import minimum_filter
from torchmetrics.classification import MulticlassConfusionMatrix, MulticlassF1Score, MulticlassJaccardIndex
from torchmetrics.functional.image import peak_signal_noise_ratio, spectral_angle_mapper, structural_similarity_index_measure

from axs_lib.cli.scenes import main
from axs_lib.scenes.evaluation import evaluate_scene
from axs_lib.scenes.metrics import SSIM_HALO
from helpers import process_environment

SIZE, TILE = 256, 64
UTM33, UTM32 = "EPSG:32633", "EPSG:32632"
GRID = Affine(10.0, 0.0, 399960.0, 0.0, -10.0, 5000040.0)
BANDS = ("B02", "B03", "B04", "B08")
CLASSES = 4
IGNORED = 9
METRIC_TOLERANCE = {"psnr_db": 1e-4, "ssim": 1e-4, "mae": 1e-6, "sam_degrees": 1e-4}


def write(path: Path, data: np.ndarray, crs: str | None = UTM33, transform: Affine = GRID, nodata=None, descriptions=()) -> Path:
    profile = {
        "driver": "GTiff", "count": data.shape[0], "height": data.shape[1], "width": data.shape[2],
        "dtype": data.dtype, "crs": crs, "transform": transform, "nodata": nodata,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for index, description in enumerate(descriptions, start=1):
            dst.set_band_description(index, description)
    return path


def centres(transform: Affine, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    xs, ys = transform @ (cols, rows)
    return xs, ys


def reflectance_field(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Smooth reflectance x 10000 of four bands at map coordinates (UTM 33N)."""
    return np.stack([
        3000 + 1500 * np.sin(xs / (150 + 20 * band) + band) * np.cos(ys / 200 - band) for band in range(len(BANDS))
    ]).astype(np.float32)


def class_field(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Blobs of classes 0..3 at map coordinates (UTM 33N)."""
    field = np.sin(xs / 300) + np.cos(ys / 250)
    return np.digitize(field, (-0.8, 0.0, 0.8)).astype(np.uint8)[None]


def grid_in(crs: str, resolution: float, shift: float = 0.0) -> tuple[Affine, int, int]:
    """A grid in ``crs`` covering the prediction's scene with a margin (moved ``shift`` metres east)."""
    left, bottom, right, top = transform_bounds(UTM33, crs, *rasterio.transform.array_bounds(SIZE, SIZE, GRID))
    left, top = left - 50 + shift, top + 50
    width, height = int((right + 50 + shift - left) / resolution), int((top - bottom + 50) / resolution)
    return Affine(resolution, 0, left, 0, -resolution, top), height, width


def in_utm33(crs: str, transform: Affine, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = centres(transform, height, width)
    xs, ys = transform_points(crs, UTM33, xs.ravel(), ys.ravel())
    return np.reshape(xs, (height, width)), np.reshape(ys, (height, width))


@pytest.fixture(scope="module")
def optical(tmp_path_factory) -> dict[str, Path]:
    """A generated-like prediction (reference plus noise) and its reference; a prediction with a nodata hole
    and a reference with NaN; the reference on a UTM 32N grid at 7 m; and one far away."""
    folder = tmp_path_factory.mktemp("optical")
    rng = np.random.default_rng(0)
    reference = reflectance_field(*centres(GRID, SIZE, SIZE))
    prediction = np.clip(reference + rng.normal(0, 250, reference.shape), 0, 10000).astype(np.uint16)
    holed = prediction.copy()
    holed[:, 40:90, 100:180] = 0
    clouded = reference.copy()
    clouded[2, 150:200, 20:60] = np.nan
    transform, height, width = grid_in(UTM32, 7.0)
    shuffled = [3, 0, 2, 1]
    far, far_height, far_width = grid_in(UTM32, 7.0, shift=100_000)
    return {
        "prediction": write(folder / "prediction.tif", prediction, nodata=65535, descriptions=BANDS),
        "reference": write(folder / "reference.tif", reference, descriptions=BANDS),
        "holed": write(folder / "holed.tif", holed, nodata=0, descriptions=BANDS),
        "clouded": write(folder / "clouded.tif", clouded, descriptions=BANDS),
        "shuffled": write(folder / "shuffled.tif", reference[shuffled], descriptions=[BANDS[i] for i in shuffled]),
        "offset": write(folder / "offset.tif", reference + 1000, descriptions=BANDS),
        "utm32": write(
            folder / "utm32.tif", reflectance_field(*in_utm33(UTM32, transform, height, width)), UTM32, transform,
            descriptions=BANDS,
        ),
        "far": write(folder / "far.tif", np.ones((len(BANDS), far_height, far_width), np.float32), UTM32, far),
        "no_crs": write(folder / "no_crs.tif", reference, crs=None),
    }


@pytest.fixture(scope="module")
def classes(tmp_path_factory) -> dict[str, Path]:
    """A class map with 10 % of pixels wrong and a nodata hole, labels with an ignored area, labels on UTM 32N."""
    folder = tmp_path_factory.mktemp("classes")
    rng = np.random.default_rng(1)
    labels = class_field(*centres(GRID, SIZE, SIZE))
    prediction = np.where(rng.random(labels.shape) < 0.1, rng.integers(0, CLASSES, labels.shape), labels).astype(np.uint8)
    prediction[:, 10:40, 10:60] = 255
    ignored = labels.copy()
    ignored[:, 200:240, 150:250] = IGNORED
    transform, height, width = grid_in(UTM32, 7.0)
    return {
        "prediction": write(folder / "classes.tif", prediction, nodata=255),
        "labels": write(folder / "labels.tif", labels),
        "ignored": write(folder / "ignored.tif", ignored),
        "utm32": write(folder / "utm32.tif", class_field(*in_utm33(UTM32, transform, height, width)), UTM32, transform),
    }


def read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Values as float64 and where every band is valid (mask and finite)."""
    with rasterio.open(path) as src:
        values = src.read(out_dtype="float64")
        return values, (src.read_masks() > 0).all(axis=0) & np.isfinite(values).all(axis=0)


def whole_image_optical(prediction: Path, reference: Path) -> dict:
    """The same metrics from the whole images at once, with torchmetrics' functions, over pixels valid in both."""
    predicted, valid = read(prediction)
    expected, valid_reference = read(reference)
    valid &= valid_reference
    predicted, expected = np.where(valid, predicted / 10000, 0), np.where(valid, expected / 10000, 0)
    window_valid = minimum_filter(valid, size=2 * SSIM_HALO + 1, mode="mirror")
    bands = []
    for band in range(predicted.shape[0]):
        p, e = torch.from_numpy(predicted[band]), torch.from_numpy(expected[band])
        _, similarity = structural_similarity_index_measure(p[None, None].float(), e[None, None].float(), data_range=1.0, return_full_image=True)
        bands.append({
            "psnr_db": float(peak_signal_noise_ratio(p[valid], e[valid], data_range=1.0)),
            "ssim": float(similarity[0, 0][torch.from_numpy(window_valid)].double().mean()),
            "mae": float((p[valid] - e[valid]).abs().mean()),
        })
    p, e = torch.from_numpy(predicted[:, valid]), torch.from_numpy(expected[:, valid])
    overall = {
        "psnr_db": float(peak_signal_noise_ratio(p, e, data_range=1.0)),
        "ssim": float(np.mean([band["ssim"] for band in bands])),
        "mae": float((p - e).abs().mean()),
        "sam_degrees": float(torch.rad2deg(spectral_angle_mapper(p[None, :, :, None], e[None, :, :, None]))),
    }
    return {"bands": bands, "overall": overall, "valid_pixels": int(valid.sum()), "ssim_pixels": int(window_valid.sum())}


def largest_differences(streamed: dict, whole: dict) -> dict[str, float]:
    names = [name for name in METRIC_TOLERANCE if name != "sam_degrees"]
    differences = {name: max(abs(s[name] - w[name]) for s, w in zip(streamed["bands"], whole["bands"])) for name in names}
    for name in METRIC_TOLERANCE:
        differences[name] = max(differences.get(name, 0.0), abs(streamed["overall"][name] - whole["overall"][name]))
    return differences


def assert_same_optical_metrics(streamed: dict, whole: dict) -> None:
    differences = largest_differences(streamed, whole)
    assert all(differences[name] <= tolerance for name, tolerance in METRIC_TOLERANCE.items()), differences
    assert (streamed["valid_pixels"], streamed["ssim_pixels"]) == (whole["valid_pixels"], whole["ssim_pixels"])


def test_streamed_optical_metrics_equal_the_whole_image_ones(optical):
    streamed = evaluate_scene(optical["prediction"], optical["reference"], tile=TILE)

    assert streamed["kind"] == "optical" and [band["band"] for band in streamed["bands"]] == list(BANDS)
    assert streamed["valid_pixels"] == SIZE * SIZE and streamed["reprojected"] is None
    assert_same_optical_metrics(streamed, whole_image_optical(optical["prediction"], optical["reference"]))
    assert 25 < streamed["overall"]["psnr_db"] < 40 and 0 < streamed["overall"]["ssim"] < 1


def test_optical_metrics_count_only_pixels_valid_in_both_and_ssim_only_where_its_window_is(optical):
    streamed = evaluate_scene(optical["holed"], optical["clouded"], tile=TILE)
    whole = whole_image_optical(optical["holed"], optical["clouded"])

    assert streamed["valid_pixels"] == SIZE * SIZE - 50 * 80 - 50 * 40
    assert streamed["ssim_pixels"] == whole["ssim_pixels"] < streamed["valid_pixels"]
    assert_same_optical_metrics(streamed, whole)


def test_ssim_does_not_depend_on_the_tile_at_tile_borders_or_the_scene_edge(optical):
    """Tiles of 48 leave a 16-pixel strip at the scene's end; tile 256 is the whole scene in one window."""
    results = [evaluate_scene(optical["holed"], optical["clouded"], tile=tile) for tile in (48, 256)]
    assert largest_differences(*results)["ssim"] < 1e-6


def test_reference_bands_are_matched_by_description(optical):
    in_order = evaluate_scene(optical["prediction"], optical["reference"], tile=TILE)
    shuffled = evaluate_scene(optical["prediction"], optical["shuffled"], tile=TILE)
    assert largest_differences(shuffled, in_order) == pytest.approx(dict.fromkeys(METRIC_TOLERANCE, 0.0), abs=1e-12)


def test_a_reference_offset_is_added_before_scaling(optical):
    """Sentinel-2 L2A of processing baseline 04.00 and later stores reflectance x 10000 + 1000."""
    plain = evaluate_scene(optical["prediction"], optical["reference"], tile=TILE)
    offset = evaluate_scene(optical["prediction"], optical["offset"], reference_offset=-1000, tile=TILE)
    assert largest_differences(offset, plain) == pytest.approx(dict.fromkeys(METRIC_TOLERANCE, 0.0), abs=1e-6)


def test_a_reference_on_another_crs_and_resolution_is_reprojected_to_the_same_metrics(optical):
    on_grid = evaluate_scene(optical["prediction"], optical["reference"], tile=TILE)
    reprojected = evaluate_scene(optical["prediction"], optical["utm32"], tile=TILE)

    assert reprojected["reprojected"] == "bilinear" and reprojected["valid_pixels"] == SIZE * SIZE
    differences = largest_differences(reprojected, on_grid)
    assert differences["psnr_db"] < 0.05 and differences["ssim"] < 2e-3 and differences["mae"] < 1e-4, differences
    assert differences["sam_degrees"] < 0.05, differences


def whole_image_classes(prediction: Path, labels: Path, ignore_index: int | None = None) -> dict:
    predicted, valid = read(prediction)
    expected, valid_labels = read(labels)
    valid &= valid_labels
    if ignore_index is not None:
        valid &= expected[0] != ignore_index
    p, e = torch.from_numpy(predicted[0][valid]).long(), torch.from_numpy(expected[0][valid]).long()
    return {
        "confusion_matrix": MulticlassConfusionMatrix(CLASSES)(p, e).tolist(),
        "iou": MulticlassJaccardIndex(CLASSES, average=None)(p, e).tolist(),
        "f1": MulticlassF1Score(CLASSES, average=None)(p, e).tolist(),
        "miou": float(MulticlassJaccardIndex(CLASSES, average="macro")(p, e)),
        "overall_accuracy": float((p == e).double().mean()),
        "valid_pixels": int(valid.sum()),
    }


def class_differences(streamed: dict, whole: dict) -> dict[str, float]:
    return {
        "iou": max(abs(entry["iou"] - value) for entry, value in zip(streamed["classes"], whole["iou"])),
        "f1": max(abs(entry["f1"] - value) for entry, value in zip(streamed["classes"], whole["f1"])),
        "miou": abs(streamed["miou"] - whole["miou"]),
        "overall_accuracy": abs(streamed["overall_accuracy"] - whole["overall_accuracy"]),
    }


@pytest.mark.parametrize("labels", ["labels", "ignored"])
def test_streamed_class_metrics_equal_the_whole_image_ones(classes, labels):
    ignore_index = IGNORED if labels == "ignored" else None
    streamed = evaluate_scene(classes["prediction"], classes[labels], ignore_index=ignore_index, tile=TILE)
    whole = whole_image_classes(classes["prediction"], classes[labels], ignore_index)

    assert streamed["kind"] == "classes" and streamed["num_classes"] == CLASSES
    assert streamed["confusion_matrix"] == whole["confusion_matrix"]
    assert streamed["valid_pixels"] == whole["valid_pixels"] == SIZE * SIZE - 30 * 50 - (40 * 100 if ignore_index else 0)
    differences = class_differences(streamed, whole)
    assert all(difference <= 1e-6 for difference in differences.values()), differences
    assert 0.5 < streamed["miou"] < 1


def test_a_class_absent_from_both_rasters_has_no_iou_and_is_left_out_of_the_mean(classes):
    streamed = evaluate_scene(classes["prediction"], classes["labels"], num_classes=CLASSES + 1, tile=TILE)

    absent = streamed["classes"][CLASSES]
    assert absent == {"class": CLASSES, "iou": None, "f1": None, "reference_pixels": 0, "predicted_pixels": 0}
    assert streamed["miou"] == pytest.approx(np.mean([entry["iou"] for entry in streamed["classes"][:CLASSES]]), abs=1e-12)


def test_labels_on_another_crs_are_reprojected_with_nearest_to_nearly_the_same_metrics(classes):
    on_grid = evaluate_scene(classes["prediction"], classes["labels"], tile=TILE)
    reprojected = evaluate_scene(classes["prediction"], classes["utm32"], tile=TILE)

    assert reprojected["reprojected"] == "nearest" and reprojected["num_classes"] == CLASSES
    differences = class_differences(reprojected, {**on_grid, "iou": [c["iou"] for c in on_grid["classes"]], "f1": [c["f1"] for c in on_grid["classes"]]})
    assert all(difference < 0.02 for difference in differences.values()), differences


@pytest.mark.parametrize(
    ("reference", "extra", "complaint"),
    [
        ("far", [], "do not overlap"),
        ("no_crs", [], "has no CRS"),
        ("reference", ["--reference-bands", "1", "2"], "--reference-bands needs 4 band number(s)"),
        ("reference", ["--tile", "8"], "--tile must be at least 11"),
    ],
)
def test_unusable_references_are_refused_in_one_line(optical, capsys, reference, extra, complaint):
    code = main(["evaluate", str(optical["prediction"]), str(optical[reference]), "--quiet", *extra])

    error = capsys.readouterr().err
    assert code == 2 and error.startswith("error: ") and complaint in error and error.count("\n") == 1, error


def test_classes_beyond_num_classes_are_refused_in_one_line(classes, capsys):
    code = main(["evaluate", str(classes["prediction"]), str(classes["labels"]), "--num-classes", "2", "--quiet"])

    error = capsys.readouterr().err
    assert code == 2 and "holds class 3, outside 0..1" in error and error.count("\n") == 1, error


def test_the_table_shows_every_band_and_the_spectral_angle(optical, capsys):
    assert main(["evaluate", str(optical["prediction"]), str(optical["reference"]), "--tile", "128", "--quiet"]) == 0

    table = capsys.readouterr().out.splitlines()
    assert table[0].endswith(f"optical, {SIZE * SIZE:,} of {SIZE * SIZE:,} pixels valid in both")
    assert [row.split()[0] for row in table[2:7]] == [*BANDS, "all"] and table[-1].startswith("SAM ")


def test_the_command_prints_json_in_a_fresh_process(classes):
    result = subprocess.run(
        [sys.executable, "-m", "axs_lib.cli.scenes", "evaluate", str(classes["prediction"]), str(classes["ignored"]),
         "--ignore-index", str(IGNORED), "--json", "--quiet", "--tile", str(TILE)],
        env=process_environment(LIGHTLY_DID_VERSION_CHECK="True"), capture_output=True, text=True, timeout=300,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    printed = json.loads(result.stdout)
    assert printed == evaluate_scene(classes["prediction"], classes["ignored"], ignore_index=IGNORED, tile=TILE)
    assert printed["ignore_index"] == IGNORED and len(printed["confusion_matrix"]) == CLASSES
