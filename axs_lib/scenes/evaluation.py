"""``axs-scenes evaluate``: a prediction raster scored against a reference, streamed window by window.

The scene is cut into ``tile`` x ``tile`` blocks; each is read from both rasters (with a halo for SSIM),
scored by :mod:`.metrics` and dropped, so memory does not grow with the scene. A reference on another grid
is reprojected on the fly to the prediction's grid with rasterio's ``WarpedVRT`` (bilinear for reflectance,
nearest for labels).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window as RasterWindow
from tqdm.auto import tqdm

from ..errors import InvalidSceneError
from .metrics import SSIM_HALO, ClassMetrics, OpticalMetrics
from .inputs import gdal_environment

logger = logging.getLogger(__name__)

KINDS = ("optical", "classes")
DEFAULT_TILE = 512
REFLECTANCE_SCALE = 10000
MAX_CLASSES = 1000
"""Largest class count inferred or accepted: a larger value is almost always an undeclared nodata value."""


def evaluate_scene(
    prediction: Path,
    reference: Path,
    kind: str | None = None,
    *,
    num_classes: int | None = None,
    ignore_index: int | None = None,
    scale: float = REFLECTANCE_SCALE,
    reference_offset: float = 0.0,
    reference_bands: Sequence[int] | None = None,
    tile: int = DEFAULT_TILE,
    progress: bool = False,
) -> dict:
    """Score ``prediction`` against ``reference`` over the pixels valid in both; returns a JSON-ready dict.

    Args:
        kind: ``"optical"`` (PSNR, SSIM, MAE per band and overall, SAM) or ``"classes"`` (confusion matrix,
            IoU and F1 per class, mIoU, overall accuracy). Default: ``"classes"`` for a one-band integer
            prediction, ``"optical"`` otherwise.
        num_classes: classes ``0..num_classes - 1``; default: the largest class in either raster plus one
            (found in a first pass).
        ignore_index: a reference label left out (classes only).
        scale, reference_offset: reflectance = value / ``scale`` for the prediction and
            (value + ``reference_offset``) / ``scale`` for the reference (Sentinel-2 L2A of processing
            baseline 04.00 or later: ``reference_offset=-1000``); optical only.
        reference_bands: 1-based reference bands in the prediction's band order; default: the bands whose
            descriptions name the prediction's, else all bands in file order.
        tile: block size in pixels; memory grows with its square, not with the scene.

    Pixels are valid where neither raster's mask (nodata value, mask band or alpha) marks them, every band is
    finite, and, for classes, the reference is not ``ignore_index``. Raises :class:`InvalidSceneError` for
    missing files, rasters without CRS, rasters that do not overlap, mismatched bands or no valid pixel.
    """
    if tile < 2 * SSIM_HALO + 1:
        raise InvalidSceneError(f"`tile` must be at least {2 * SSIM_HALO + 1} pixels, got {tile}")
    with gdal_environment(), ExitStack() as stack:
        predicted = _open(stack, prediction)
        kind = kind or _infer_kind(predicted)
        if kind not in KINDS:
            raise InvalidSceneError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if kind == "classes" and predicted.count != 1:
            raise InvalidSceneError(f"a class map has one band; {prediction} has {predicted.count}")
        resampling = Resampling.nearest if kind == "classes" else Resampling.bilinear
        expected = _open(stack, reference)
        indexes = _reference_indexes(predicted, expected, reference_bands)
        expected, reprojected = _on_grid(stack, expected, predicted, resampling)
        pair = _Pair(predicted, tuple(range(1, predicted.count + 1)), expected, indexes)
        summary = {
            "kind": kind, "prediction": str(prediction), "reference": str(reference),
            "reprojected": resampling.name if reprojected else None,
            "width": predicted.width, "height": predicted.height,
        }
        if kind == "optical":
            names = [name or f"band {index}" for index, name in enumerate(predicted.descriptions, start=1)]
            metrics = _optical(pair, names, scale, reference_offset, tile, progress)
            return {**summary, "scale": scale, "reference_offset": reference_offset, **metrics}
        metrics = _classes(pair, num_classes, ignore_index, tile, progress)
        return {**summary, "ignore_index": ignore_index, **metrics}


def format_report(result: dict) -> str:
    """The result of :func:`evaluate_scene` as a table for the terminal."""
    reprojected = f", reference reprojected ({result['reprojected']})" if result["reprojected"] else ""
    pixels = result["width"] * result["height"]
    head = (
        f"{result['prediction']} vs {result['reference']}{reprojected}: {result['kind']}, "
        f"{result['valid_pixels']:,} of {pixels:,} pixels valid in both"
    )
    if result["kind"] == "optical":
        return "\n".join([head, *_optical_table(result)])
    return "\n".join([head, *_class_table(result)])


def _optical_table(result: dict) -> list[str]:
    rows = [f"{'band':<8} {'PSNR dB':>8} {'SSIM':>7} {'MAE':>8}"]
    for band in (*result["bands"], {"band": "all", **result["overall"]}):
        rows.append(f"{band['band']:<8} {_cell(band['psnr_db'], 2, 8)} {_cell(band['ssim'], 4, 7)} {_cell(band['mae'], 4, 8)}")
    rows.append(
        f"SAM {_cell(result['overall']['sam_degrees'], 2, 0)} degrees (mean spectral angle); MAE in reflectance "
        f"(value / {result['scale']:g}); PSNR and SSIM with data range {result['data_range']:g}; "
        f"SSIM over {result['ssim_pixels']:,} pixels whose 11 x 11 window is valid"
    )
    return rows


def _class_table(result: dict) -> list[str]:
    rows = [
        f"overall accuracy {result['overall_accuracy']:.4f}, mIoU {_cell(result['miou'], 4, 0)}",
        f"{'class':>5} {'IoU':>7} {'F1':>7} {'reference px':>13} {'predicted px':>13}",
    ]
    for entry in result["classes"]:
        rows.append(
            f"{entry['class']:>5} {_cell(entry['iou'], 4, 7)} {_cell(entry['f1'], 4, 7)} "
            f"{entry['reference_pixels']:>13,} {entry['predicted_pixels']:>13,}"
        )
    matrix = result["confusion_matrix"]
    if len(matrix) <= 12:
        width = max(len(f"{count:,}") for row in matrix for count in row) + 1
        rows.append("confusion matrix (rows: reference, columns: prediction)")
        rows += ["".join(f"{count:>{width},}" for count in row) for row in matrix]
    return rows


def _cell(value: float | None, digits: int, width: int) -> str:
    return f"{'n/a' if value is None else f'{value:.{digits}f}':>{width}}"


class _Pair:
    """The prediction and the reference on the prediction's grid, read block by block."""

    def __init__(self, prediction, prediction_indexes: tuple[int, ...], reference, reference_indexes: tuple[int, ...]):
        self.rasters = ((prediction, prediction_indexes), (reference, reference_indexes))
        self.height, self.width = prediction.height, prediction.width

    def blocks(self, tile: int, progress: bool) -> Iterator[tuple[slice, slice]]:
        rows, cols = range(0, self.height, tile), range(0, self.width, tile)
        bar = tqdm(total=len(rows) * len(cols), unit="window", disable=not progress)
        for row in rows:
            for col in cols:
                yield slice(row, min(row + tile, self.height)), slice(col, min(col + tile, self.width))
                bar.update()
        bar.close()

    def read(self, rows: slice, cols: slice, halo: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(prediction, reference, valid)`` of the block widened by ``halo`` on every side, mirrored past
        the scene's edge: values ``[bands, h, w]`` float32 (0 where not valid), ``valid`` ``[h, w]``."""
        top, bottom = max(rows.start - halo, 0), min(rows.stop + halo, self.height)
        left, right = max(cols.start - halo, 0), min(cols.stop + halo, self.width)
        area = RasterWindow(left, top, right - left, bottom - top)
        values, valid = [], np.ones((bottom - top, right - left), dtype=bool)
        for raster, indexes in self.rasters:
            read = raster.read(indexes, window=area, out_dtype="float32")
            valid &= (raster.read_masks(indexes, window=area) > 0).all(axis=0) & np.isfinite(read).all(axis=0)
            values.append(read)
        values = [np.where(valid, read, np.float32(0)) for read in values]
        pad = ((top - (rows.start - halo), rows.stop + halo - bottom), (left - (cols.start - halo), cols.stop + halo - right))
        if any(any(side) for side in pad):
            if min(bottom - top, right - left) <= halo:
                raise InvalidSceneError(f"the scene is too small for SSIM: at least {halo + 1} pixels on each side")
            values = [np.pad(read, ((0, 0), *pad), mode="reflect") for read in values]
            valid = np.pad(valid, pad, mode="reflect")
        return values[0], values[1], valid


def _optical(pair: _Pair, names: list[str], scale: float, offset: float, tile: int, progress: bool) -> dict:
    metrics = OpticalMetrics(names)
    core = (slice(SSIM_HALO, -SSIM_HALO), slice(SSIM_HALO, -SSIM_HALO))
    for rows, cols in pair.blocks(tile, progress):
        prediction, reference, valid = pair.read(rows, cols, SSIM_HALO)
        metrics.update(
            torch.from_numpy(prediction / scale), torch.from_numpy((reference + offset) / scale),
            torch.from_numpy(valid), core,
        )
    return metrics.compute()


def _classes(pair: _Pair, num_classes: int | None, ignore_index: int | None, tile: int, progress: bool) -> dict:
    def labelled() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for rows, cols in pair.blocks(tile, progress):
            prediction, reference, valid = pair.read(rows, cols)
            if ignore_index is not None:
                valid &= reference[0] != ignore_index
            prediction, reference = prediction[0][valid], reference[0][valid]
            for name, values in (("prediction", prediction), ("reference", reference)):
                if (values != np.round(values)).any():
                    raise InvalidSceneError(f"the {name} holds values that are not whole numbers: is it a class map?")
            yield prediction.astype(np.int64), reference.astype(np.int64)

    if num_classes is None:
        largest = max((int(max(p.max(initial=-1), r.max(initial=-1))) for p, r in labelled()), default=-1)
        if largest < 0:
            raise InvalidSceneError("no pixel is valid in both the prediction and the labels")
        num_classes = largest + 1
        logger.info("%d classes (the largest class found is %d)", num_classes, largest)
    if not 1 <= num_classes <= MAX_CLASSES:
        raise InvalidSceneError(
            f"{num_classes} classes: 1 to {MAX_CLASSES} are supported; a larger class value is usually an undeclared "
            "nodata value: declare it (gdal_edit.py -a_nodata), or pass `ignore_index` or `num_classes`"
        )
    metrics = ClassMetrics(num_classes)
    for prediction, reference in labelled():
        metrics.update(torch.from_numpy(prediction), torch.from_numpy(reference))
    return {"num_classes": num_classes, **metrics.compute()}


def _open(stack: ExitStack, path: Path):
    if not Path(path).is_file():
        raise InvalidSceneError(f"raster not found: {path}")
    try:
        raster = stack.enter_context(rasterio.open(path))
    except RasterioIOError as error:
        raise InvalidSceneError(f"cannot read {path}: {error}") from error
    if raster.crs is None:
        raise InvalidSceneError(f"{path} has no CRS; georeference it first (e.g. gdal_edit.py -a_srs EPSG:<code>)")
    return raster


def _infer_kind(prediction) -> str:
    integer = np.issubdtype(np.dtype(prediction.dtypes[0]), np.integer)
    return "classes" if prediction.count == 1 and integer else "optical"


def _on_grid(stack: ExitStack, reference, prediction, resampling: Resampling):
    """``(reference on the prediction's grid, whether it was reprojected)``; refuses rasters that do not overlap."""
    same_grid = (
        reference.crs == prediction.crs and reference.transform.almost_equals(prediction.transform)
        and reference.shape == prediction.shape
    )
    if same_grid:
        return reference, False
    left, bottom, right, top = transform_bounds(reference.crs, prediction.crs, *reference.bounds)
    bounds = prediction.bounds
    if not (left < bounds.right and bounds.left < right and bottom < bounds.top and bounds.bottom < top):
        raise InvalidSceneError(
            f"{reference.name} and {prediction.name} do not overlap (reference bounds in the prediction's CRS "
            f"{prediction.crs}: {left:.6g}, {bottom:.6g}, {right:.6g}, {top:.6g}; prediction: {bounds.left:.6g}, "
            f"{bounds.bottom:.6g}, {bounds.right:.6g}, {bounds.top:.6g})"
        )
    logger.info("reprojecting %s to the grid of %s (%s)", reference.name, prediction.name, resampling.name)
    warped = WarpedVRT(
        reference, crs=prediction.crs, transform=prediction.transform, width=prediction.width,
        height=prediction.height, resampling=resampling, dtype="float32", nodata=math.nan,
    )
    return stack.enter_context(warped), True


def _reference_indexes(prediction, reference, chosen: Sequence[int] | None) -> tuple[int, ...]:
    count = prediction.count
    if chosen:
        if len(chosen) != count or not all(1 <= index <= reference.count for index in chosen):
            raise InvalidSceneError(
                f"`reference_bands` needs {count} band number(s) between 1 and {reference.count}, got {list(chosen)}"
            )
        return tuple(chosen)
    names = [(name or "").strip().upper() for name in reference.descriptions]
    wanted = [(name or "").strip().upper() for name in prediction.descriptions]
    if all(wanted) and all(name in names for name in wanted):
        return tuple(names.index(name) + 1 for name in wanted)
    if reference.count == count:
        return tuple(range(1, count + 1))
    raise InvalidSceneError(
        f"{reference.name} has {reference.count} band(s) and the prediction {count}, and their descriptions do not name "
        "the same bands: pass `reference_bands` with the reference's band numbers in the prediction's order"
    )
