"""PNG previews of a finished raster (RGB, or a class map in fixed colours), read strip by strip so any
scene size fits in memory."""

from __future__ import annotations

import colorsys
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.windows import Window

QUICKLOOK_MAX_SIDE = 2048
STRIP_ROWS = 256
"""Rows read at a time: the outputs' block height, so each compressed block is read once."""
GOLDEN_RATIO_CONJUGATE = (math.sqrt(5) - 1) / 2
NODATA_COLOUR = (0, 0, 0)


@dataclass(frozen=True)
class Quicklook:
    """A PNG to write from a finished raster.

    Attributes:
        path: the PNG.
        rgb_bands: the 0-based bands shown as red, green and blue; ``None`` for a one-band class map,
            shown in the colours of :func:`class_colour`.
    """

    path: Path
    rgb_bands: tuple[int, int, int] | None = None

    def write(self, raster: Path) -> None:
        if self.rgb_bands is None:
            write_class_quicklook(raster, self.path)
        else:
            write_quicklook(raster, self.path, self.rgb_bands)


def class_colour(value: int) -> tuple[int, int, int]:
    """The fixed colour of class ``value`` in class-map quick-looks and legends: hues a golden angle apart."""
    red, green, blue = colorsys.hsv_to_rgb((value * GOLDEN_RATIO_CONJUGATE) % 1.0, 0.7, 0.95)
    return round(red * 255), round(green * 255), round(blue * 255)


def write_quicklook(raster: Path, png: Path, rgb_bands: tuple[int, int, int]) -> None:
    """Write ``png`` from the 0-based ``rgb_bands`` of ``raster``: a 2-98 percentile stretch per band, nodata black.

    Scenes larger than ``QUICKLOOK_MAX_SIDE`` pixels on a side are shown decimated (see :func:`_decimated`).
    Pixels equal to the raster's nodata value, or not finite, are nodata.
    """
    values, nodata = _decimated(raster, [band + 1 for band in rgb_bands])
    values = values.astype(np.float32)
    valid = np.isfinite(values).all(axis=0)
    if nodata is not None and not math.isnan(nodata):
        valid &= (values != nodata).all(axis=0)
    rgb = np.zeros((*valid.shape, 3), dtype=np.uint8)
    if valid.any():
        for channel, band in enumerate(values):
            low, high = np.percentile(band[valid], (2, 98))
            stretched = (band - low) / max(high - low, 1e-6)
            rgb[..., channel] = np.where(valid, np.rint(np.clip(stretched, 0, 1) * 255), 0)
    _save_png(Image.fromarray(rgb), png)


def write_class_quicklook(raster: Path, png: Path) -> None:
    """Write ``png`` from the one-band class map ``raster`` (uint8): class ``c`` in :func:`class_colour` ``(c)``,
    nodata black, as a palette PNG (decimated like :func:`write_quicklook`)."""
    values, nodata = _decimated(raster, [1])
    palette = [class_colour(value) for value in range(256)]
    if nodata is not None:
        palette[int(nodata)] = NODATA_COLOUR
    image = Image.fromarray(values[0].astype(np.uint8), mode="P")
    image.putpalette([channel for colour in palette for channel in colour])
    _save_png(image, png)


def _decimated(raster: Path, indexes: list[int]) -> tuple[np.ndarray, float | None]:
    """The 1-based ``indexes`` of ``raster``, every step-th pixel of every step-th row, and its nodata value.

    The step is the smallest whole number that brings the longer side to ``QUICKLOOK_MAX_SIDE`` or less. The
    raster is read at full resolution, strip by strip, and decimated here: GDAL's own decimated read of a
    pixel-interleaved, compressed GeoTIFF took minutes for a 3072 x 3072 scene.
    """
    strips = []
    with rasterio.open(raster) as src:
        step = max(1, math.ceil(max(src.height, src.width) / QUICKLOOK_MAX_SIDE))
        for top in range(0, src.height, STRIP_ROWS):
            window = Window(0, top, src.width, min(STRIP_ROWS, src.height - top))
            strips.append(src.read(indexes, window=window)[:, -top % step :: step, ::step])
        nodata = src.nodata
    return np.concatenate(strips, axis=1), nodata


def _save_png(image: Image.Image, png: Path) -> None:
    temporary = png.with_name(f".{png.name}.{os.getpid()}.tmp")
    try:
        image.save(temporary, format="PNG")
        os.replace(temporary, png)
    finally:
        temporary.unlink(missing_ok=True)
