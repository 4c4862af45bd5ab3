"""The synthetic scene published as a catalog publishes real data: one Cloud-Optimized GeoTIFF per band and a
STAC item per sensor, in Earth Search's conventions.

- Sentinel-2 L2A (``sentinel-2-l2a``): uint16 numbers of processing baseline 05.10, that is reflectance x 10000
  **+ 1000**, nodata 0; asset keys by common name (``blue``, ``rededge1``, ``nir08``...); ``raster:bands`` scale
  0.0001 and offset -0.1; ``earthsearch:boa_offset_applied: false``.
- Sentinel-1 (``sentinel-1-grd``): calibrated backscatter as float32 linear power on the scene's map grid,
  assets ``vv`` and ``vh``.

Relative hrefs, so the folder can be read from disk or served (:class:`.catalog_server.CatalogServer`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.io import MemoryFile
from rasterio.shutil import copy as copy_raster
from rasterio.warp import transform_bounds

from ..scenes import bands as B
from .synthetic_scene import SyntheticScene

EARTH_SEARCH_KEYS = ("coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08", "nir09",
                     "swir16", "swir22")
"""Earth Search's asset key of each band of ``scenes.bands.S2L2A_BANDS``, in that order."""
BOA_ADD_OFFSET = 1000
"""What processing baseline 04.00 and later add to reflectance x 10000."""
DATETIME = "2024-06-15T10:20:30Z"


@dataclass(frozen=True)
class PublishedScene:
    """The items' files: ``sentinel2`` (the optical reference as an L2A item) and ``sentinel1``."""

    sentinel2: Path
    sentinel1: Path


def publish_scene(scene: SyntheticScene, folder: Path) -> PublishedScene:
    """Write the scene's Sentinel-2 reference and Sentinel-1 image as per-band COGs and STAC items in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    with rasterio.open(scene.optical_reference) as src:
        optical, profile = src.read(), src.profile
    with rasterio.open(scene.sar) as src:
        sar_db = src.read()
    footprint = transform_bounds(profile["crs"], "EPSG:4326", *rasterio.transform.array_bounds(
        profile["height"], profile["width"], profile["transform"]))
    assets = {}
    for index, ((band_id, name), key) in enumerate(zip(B.S2L2A_BANDS, EARTH_SEARCH_KEYS)):
        stored = (optical[index].astype(np.uint32) + BOA_ADD_OFFSET).astype(np.uint16)
        _write_cog(folder / f"{band_id}.tif", stored, profile, nodata=0)
        assets[key] = {
            "href": f"./{band_id}.tif", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "roles": ["data"], "eo:bands": [{"name": key, "common_name": B.S2L2A_COMMON_NAMES[name]}],
            "raster:bands": [{"nodata": 0, "data_type": "uint16", "scale": 0.0001, "offset": -0.1}],
        }
    properties = {"s2:processing_baseline": "05.10", "earthsearch:boa_offset_applied": False, "eo:cloud_cover": 0}
    sentinel2 = _write_item(folder / "sentinel2_l2a.json", "synthetic_S2_L2A", "sentinel-2-l2a", footprint, properties, assets)
    assets = {}
    for index, key in enumerate(("vv", "vh")):
        linear = (10 ** (sar_db[index].astype(np.float64) / 10)).astype(np.float32)
        _write_cog(folder / f"{key}.tif", linear, profile, nodata=None)
        assets[key] = {"href": f"./{key}.tif", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                       "roles": ["data"], "raster:bands": [{"data_type": "float32", "unit": "linear power"}]}
    properties = {"sar:polarizations": ["VV", "VH"], "sar:product_type": "GRD"}
    sentinel1 = _write_item(folder / "sentinel1_grd.json", "synthetic_S1_GRD", "sentinel-1-grd", footprint, properties, assets)
    return PublishedScene(sentinel2, sentinel1)


def _write_cog(path: Path, image: np.ndarray, profile: dict, nodata: float | None) -> None:
    band = {"driver": "GTiff", "height": image.shape[0], "width": image.shape[1], "count": 1,
            "dtype": image.dtype.name, "crs": profile["crs"], "transform": profile["transform"], "nodata": nodata}
    partial = path.with_name(f".{path.name}.partial")
    with MemoryFile() as memory:
        with memory.open(**band) as dataset:
            dataset.write(image, 1)
        with memory.open() as dataset:
            copy_raster(dataset, partial, driver="COG", BLOCKSIZE=128, COMPRESS="DEFLATE")
    os.replace(partial, path)


def _write_item(path: Path, item_id: str, collection: str, footprint, properties: dict, assets: dict) -> Path:
    west, south, east, north = footprint
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    item = {
        "type": "Feature", "stac_version": "1.0.0", "id": item_id, "collection": collection,
        "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json",
                            "https://stac-extensions.github.io/raster/v1.1.0/schema.json"],
        "geometry": {"type": "Polygon", "coordinates": [ring]}, "bbox": [west, south, east, north],
        "properties": {"datetime": DATETIME, **properties}, "links": [], "assets": assets,
    }
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(item, indent=1))
    os.replace(partial, path)
    return path
