"""An RGB PNG preview of a finished raster, read strip by strip so any scene size fits in memory."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.windows import Window

QUICKLOOK_MAX_SIDE = 2048
STRIP_ROWS = 256
"""Rows read at a time: the outputs' block height, so each compressed block is read once."""


def write_quicklook(raster: Path, png: Path, rgb_bands: tuple[int, int, int]) -> None:
    """Write ``png`` from the 0-based ``rgb_bands`` of ``raster``: a 2-98 percentile stretch per band, nodata black.

    Scenes larger than ``QUICKLOOK_MAX_SIDE`` pixels on a side are shown decimated by the smallest whole step
    that fits (every step-th pixel of every step-th row). The raster is read at full resolution, strip by
    strip, and decimated here: GDAL's own decimated read of a pixel-interleaved, compressed GeoTIFF took
    minutes for a 3072 x 3072 scene. Pixels equal to the raster's nodata value, or not finite, are nodata.
    """
    indexes = [band + 1 for band in rgb_bands]
    strips = []
    with rasterio.open(raster) as src:
        step = max(1, math.ceil(max(src.height, src.width) / QUICKLOOK_MAX_SIDE))
        for top in range(0, src.height, STRIP_ROWS):
            window = Window(0, top, src.width, min(STRIP_ROWS, src.height - top))
            strips.append(src.read(indexes, window=window)[:, -top % step :: step, ::step].astype(np.float32))
        nodata = src.nodata
    values = np.concatenate(strips, axis=1)
    valid = np.isfinite(values).all(axis=0)
    if nodata is not None and not math.isnan(nodata):
        valid &= (values != nodata).all(axis=0)
    rgb = np.zeros((*valid.shape, 3), dtype=np.uint8)
    if valid.any():
        for channel, band in enumerate(values):
            low, high = np.percentile(band[valid], (2, 98))
            stretched = (band - low) / max(high - low, 1e-6)
            rgb[..., channel] = np.where(valid, np.rint(np.clip(stretched, 0, 1) * 255), 0)
    temporary = png.with_name(f".{png.name}.{os.getpid()}.tmp")
    try:
        Image.fromarray(rgb).save(temporary, format="PNG")
        os.replace(temporary, png)
    finally:
        temporary.unlink(missing_ok=True)
