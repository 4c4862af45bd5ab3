"""A small synthetic georeferenced scene: fields of water, vegetation and bare soil seen by Sentinel-1 and -2.

Every raster shares one grid (UTM zone 33N, 10 m pixels). The class of each field sets its Sentinel-2
reflectance (a typical spectrum per class, with noise) and its Sentinel-1 backscatter (typical dB, with
speckle), so the optical reference and the label raster are what a perfect model would return.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from ..scenes import bands as B

CRS = "EPSG:32633"
ORIGIN = (399960.0, 5000040.0)
"""West and north edges of the grid (those of Sentinel-2 tile 33TUN's grid)."""
PIXEL_METRES = 10.0
FIELD_PIXELS = 16
"""Side of the square fields the scene is made of."""
LABEL_NODATA = 255

CLASS_NAMES = ("water", "vegetation", "bare soil")
REFLECTANCE = np.array([
    [500, 450, 400, 300, 250, 200, 180, 150, 140, 100, 80, 60],
    [300, 400, 700, 400, 1100, 2500, 3000, 3200, 3300, 3300, 1800, 900],
    [1200, 1400, 1700, 2000, 2200, 2400, 2500, 2600, 2700, 2700, 3200, 2800],
], dtype=np.float32)
"""Reflectance x 10000 of each class in TerraMind's S2L2A band order (``scenes.bands.S2L2A_BANDS``)."""
BACKSCATTER_DB = np.array([[-22.0, -28.0], [-9.0, -15.0], [-13.0, -21.0]], dtype=np.float32)
"""VV and VH backscatter of each class, in dB."""
REFLECTANCE_NOISE = 0.05
SPECKLE_DB = 1.5


@dataclass(frozen=True)
class SyntheticScene:
    """The scene's GeoTIFFs.

    Attributes:
        sar: Sentinel-1 GRD, bands VV and VH in dB (float32): input of ``sar-to-optical`` and ``pipeline``.
        hls: six-band HLS-like reflectance x 10000 in Prithvi's band order (uint16): input of ``segment``.
        optical_reference: twelve-band Sentinel-2 L2A reflectance x 10000 (uint16), the truth for generated optical.
        labels: class of each pixel (uint8, ``CLASS_NAMES`` order, 255 nodata), the truth for class maps.
    """

    sar: Path
    hls: Path
    optical_reference: Path
    labels: Path


def write_synthetic_scene(folder: Path, size: int = 192, seed: int = 0) -> SyntheticScene:
    """Write a ``size`` x ``size`` pixel scene into ``folder`` (created if needed); each file appears complete or not at all."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    fields = -(-size // FIELD_PIXELS)
    classes = rng.integers(len(CLASS_NAMES), size=(fields, fields))
    classes = np.kron(classes, np.ones((FIELD_PIXELS, FIELD_PIXELS), dtype=classes.dtype))[:size, :size]
    optical = REFLECTANCE[classes].transpose(2, 0, 1)
    optical = optical * rng.normal(1.0, REFLECTANCE_NOISE, optical.shape).astype(np.float32)
    optical = np.clip(np.rint(optical), 0, B.REFLECTANCE_MAX).astype(np.uint16)
    sar = BACKSCATTER_DB[classes].transpose(2, 0, 1)
    sar = (sar + rng.normal(0.0, SPECKLE_DB, sar.shape)).astype(np.float32)
    return SyntheticScene(
        sar=_write(folder / "s1_grd_db.tif", sar, B.S1GRD_BANDS),
        hls=_write(folder / "hls.tif", optical[list(B.PRITHVI_FROM_S2L2A)], B.PRITHVI_BANDS),
        optical_reference=_write(folder / "s2l2a_reference.tif", optical, [band for band, _ in B.S2L2A_BANDS]),
        labels=_write(folder / "labels.tif", classes.astype(np.uint8)[None], ["class"], nodata=LABEL_NODATA),
    )


def _write(path: Path, data: np.ndarray, descriptions, nodata: float | None = None) -> Path:
    count, height, width = data.shape
    profile = {
        "driver": "GTiff", "count": count, "height": height, "width": width, "dtype": data.dtype.name, "crs": CRS,
        "transform": Affine(PIXEL_METRES, 0.0, ORIGIN[0], 0.0, -PIXEL_METRES, ORIGIN[1]), "nodata": nodata,
        "compress": "deflate",
    }
    partial = path.with_name(f".{path.name}.partial")
    with rasterio.open(partial, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = tuple(descriptions)
    os.replace(partial, path)
    return path
