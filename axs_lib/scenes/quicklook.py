"""An RGB PNG preview of a finished raster, read at reduced resolution so any scene size fits in memory."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.enums import Resampling

QUICKLOOK_MAX_SIDE = 2048


def write_quicklook(raster: Path, png: Path, rgb_bands: tuple[int, int, int]) -> None:
    """Write ``png`` from the 0-based ``rgb_bands`` of ``raster``: a 2-98 percentile stretch per band, nodata black.

    Scenes larger than ``QUICKLOOK_MAX_SIDE`` pixels on a side are shown downsampled (nearest neighbour).
    """
    with rasterio.open(raster) as src:
        scale = max(src.height, src.width) / QUICKLOOK_MAX_SIDE
        shape = (max(1, round(src.height / scale)), max(1, round(src.width / scale))) if scale > 1 else src.shape
        indexes = [band + 1 for band in rgb_bands]
        values = src.read(indexes, out_shape=(3, *shape), resampling=Resampling.nearest, out_dtype="float32")
        valid = (src.read_masks(indexes, out_shape=(3, *shape), resampling=Resampling.nearest) > 0).all(axis=0)
    rgb = np.zeros((*shape, 3), dtype=np.uint8)
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
