"""``axs-scenes evaluate``: a prediction raster scored against a reference, streamed window by window.

The scene is cut into ``tile`` x ``tile`` blocks; each is read from both rasters (with a halo for SSIM),
scored by :mod:`.metrics` and dropped, so memory does not grow with the scene. Both are read through the scene
reader (:class:`axs_lib.scenes.inputs.SceneReader`): a reference on another grid is warped on the fly onto the
prediction's grid (bilinear for reflectance, nearest for labels), and a STAC item as the reference gives the
prediction's bands (by their descriptions) as reflectance x 10000 by its catalog's conventions.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.warp import transform_bounds
from tqdm.auto import tqdm

from ..errors import InvalidSceneError
from .conventions import BAND_IDENTIFIERS
from .hrefs import without_query
from .inputs import BandRead, Grid, SceneInput, gdal_environment, read_header
from .items import item_scene
from .metrics import SSIM_HALO, ClassMetrics, OpticalMetrics
from .sources import open_source

logger = logging.getLogger(__name__)

KINDS = ("optical", "classes")
DEFAULT_TILE = 512
REFLECTANCE_SCALE = 10000
MAX_CLASSES = 1000
"""Largest class count inferred or accepted: a larger value is almost always an undeclared nodata value."""


def evaluate_scene(
    prediction: str | Path,
    reference: object,
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
        reference: a raster, or a STAC item (file, URL or ``pystac.Item``) whose bands are matched to the
            prediction's band descriptions (``B04``, ``RED``...) and read as reflectance x 10000 by its catalog's
            conventions (then ``reference_offset`` is not used).
        tile: block size in pixels; memory grows with its square, not with the scene.

    Pixels are valid where neither raster's mask (nodata value, mask band or alpha) marks them, every band is
    finite, and, for classes, the reference is not ``ignore_index``. Raises :class:`InvalidSceneError` for
    missing files, rasters without CRS, rasters that do not overlap, mismatched bands or no valid pixel.
    """
    if tile < 2 * SSIM_HALO + 1:
        raise InvalidSceneError(f"`tile` must be at least {2 * SSIM_HALO + 1} pixels, got {tile}")
    predicted = _prediction(Path(prediction))
    kind = kind or _infer_kind(predicted)
    if kind not in KINDS:
        raise InvalidSceneError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "classes" and len(predicted.bands) != 1:
        raise InvalidSceneError(f"a class map has one band; {prediction} has {len(predicted.bands)}")
    resampling = "nearest" if kind == "classes" else "bilinear"
    expected, reprojected = _reference(reference, predicted, reference_bands, resampling, reference_offset)
    summary = {
        "kind": kind, "prediction": str(prediction), "reference": without_query(str(reference)),
        "reprojected": resampling if reprojected else None, "width": predicted.width, "height": predicted.height,
    }
    with gdal_environment(), _Pair(predicted, expected) as pair:
        if kind == "optical":
            names = [band.band for band in predicted.bands]
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

    def __init__(self, prediction: SceneInput, reference: SceneInput):
        self.scenes = (prediction, reference)
        self.height, self.width = prediction.height, prediction.width

    def __enter__(self) -> _Pair:
        self.readers = [scene.reader() for scene in self.scenes]
        return self

    def __exit__(self, *exc: object) -> None:
        for reader in self.readers:
            reader.close()

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
        values, valid = [], np.ones((bottom - top, right - left), dtype=bool)
        for reader in self.readers:
            read, readable = reader.read_area(top, left, bottom - top, right - left)
            valid &= readable
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


def _prediction(path: Path) -> SceneInput:
    """The prediction: every band in file order, as stored, named by its description."""
    if not path.is_file():
        raise InvalidSceneError(f"raster not found: {path}")
    header = read_header(str(path))
    if header.located_by_gcps:
        raise InvalidSceneError(f"{path} has no CRS; georeference it first (e.g. gdal_edit.py -a_srs EPSG:<code>)")
    bands = tuple(
        BandRead(str(path), index, (name or f"band {index}").strip())
        for index, name in enumerate(header.descriptions, start=1)
    )
    return SceneInput(str(path), header.grid, bands, path=path, dtypes=header.dtypes)


def _infer_kind(prediction: SceneInput) -> str:
    integer = np.issubdtype(np.dtype(prediction.dtypes[0]), np.integer)
    return "classes" if len(prediction.bands) == 1 and integer else "optical"


def _reference(
    reference: object, prediction: SceneInput, chosen: Sequence[int] | None, resampling: str, offset: float
) -> tuple[SceneInput, bool]:
    """The reference's bands matching the prediction's, on the prediction's grid; and whether it is warped."""
    opened = open_source(reference)
    if opened.path is None:
        scene = _reference_item(opened, prediction, chosen, offset)
        grids = [read_header(location).grid for location in {band.location for band in scene.bands}]
        return scene, not all(grid.same_as(prediction.grid) for grid in grids)
    path = opened.path
    if not path.is_file():
        raise InvalidSceneError(f"raster not found: {path}")
    header = read_header(str(path))
    indexes = _reference_indexes(prediction, header.descriptions, len(header.dtypes), chosen, path)
    if not header.grid.same_as(prediction.grid):
        _check_overlap(header.grid, prediction.grid, path, prediction.name)
        logger.info("reprojecting %s to the grid of %s (%s)", path, prediction.name, resampling)
    bands = tuple(BandRead(str(path), index, f"reference band {index}", resampling=resampling) for index in indexes)
    return SceneInput(str(path), prediction.grid, bands, path=path), not header.grid.same_as(prediction.grid)


def _reference_item(opened, prediction: SceneInput, chosen: Sequence[int] | None, offset: float) -> SceneInput:
    if chosen or offset:
        raise InvalidSceneError(
            "`reference_bands` and `reference_offset` are for reference rasters: an item's bands are matched by name "
            "and its offset comes from its catalog's conventions"
        )
    if len(opened.items) != 1:
        raise InvalidSceneError(f"the reference is one item; {opened.name} gives {len(opened.items)}")
    names = [_model_band(band.band) for band in prediction.bands]
    if None in names:
        raise InvalidSceneError(
            f"the prediction's band descriptions ({', '.join(band.band for band in prediction.bands)}) do not name "
            "Sentinel-2 bands, so the item's bands cannot be matched to them"
        )
    return item_scene(opened.items, names, grid=prediction.grid)


def _model_band(description: str) -> str | None:
    """The model band a description names: a model band name, a Sentinel-2 band id or a unique common name."""
    for band, identity in BAND_IDENTIFIERS.items():
        if description.upper() == band or description in identity.names or description.upper() in identity.names:
            return band
    return None


def _check_overlap(reference: Grid, prediction: Grid, reference_name: object, prediction_name: str) -> None:
    west, south, east, north = rasterio.transform.array_bounds(reference.height, reference.width, reference.transform)
    left, bottom, right, top = transform_bounds(reference.crs, prediction.crs, west, south, east, north)
    p_left, p_bottom, p_right, p_top = rasterio.transform.array_bounds(prediction.height, prediction.width, prediction.transform)
    if not (left < p_right and p_left < right and bottom < p_top and p_bottom < top):
        raise InvalidSceneError(
            f"{reference_name} and {prediction_name} do not overlap (reference bounds in the prediction's CRS "
            f"{prediction.crs}: {left:.6g}, {bottom:.6g}, {right:.6g}, {top:.6g}; prediction: {p_left:.6g}, "
            f"{p_bottom:.6g}, {p_right:.6g}, {p_top:.6g})"
        )


def _reference_indexes(
    prediction: SceneInput, descriptions: Sequence[str | None], count: int, chosen: Sequence[int] | None, path: Path
) -> tuple[int, ...]:
    wanted_count = len(prediction.bands)
    if chosen:
        if len(chosen) != wanted_count or not all(1 <= index <= count for index in chosen):
            raise InvalidSceneError(
                f"`reference_bands` needs {wanted_count} band number(s) between 1 and {count}, got {list(chosen)}"
            )
        return tuple(chosen)
    names = [(name or "").strip().upper() for name in descriptions]
    wanted = [band.band.upper() for band in prediction.bands]
    described = all(not name.startswith("BAND ") for name in wanted)
    if described and all(name in names for name in wanted):
        return tuple(names.index(name) + 1 for name in wanted)
    if count == wanted_count:
        return tuple(range(1, count + 1))
    raise InvalidSceneError(
        f"{path} has {count} band(s) and the prediction {wanted_count}, and their descriptions do not name "
        "the same bands: pass `reference_bands` with the reference's band numbers in the prediction's order"
    )
