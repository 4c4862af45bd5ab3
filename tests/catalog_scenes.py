"""One small scene published the way each catalog publishes it: per-band COGs and a STAC item in the catalog's
own keys, band names, scales, offsets, fill values and masks (facts: ../shared/DESIGN.md, "Real data").

The scene's *truth* is reflectance x 10000 for each Sentinel-2 band (and linear backscatter for Sentinel-1):
what the models take. Each catalog's files hold the numbers that catalog would store for that truth, so a
reader that gets every convention right returns the truth, and a test can say so without the code under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.control import GroundControlPoint
from rasterio.io import MemoryFile
from rasterio.shutil import copy as copy_raster

HEIGHT, WIDTH = 64, 80
PIXEL = 10.0
CRS = "EPSG:32633"
TRANSFORM = Affine(PIXEL, 0, 399960.0, 0, -PIXEL, 5000040.0)
HOLE = (slice(5, 11), slice(6, 14))
"""Pixels missing in every band (stored as the catalog's fill value)."""
CLOUD = (slice(30, 36), slice(40, 52))
"""Pixels the item's own cloud mask marks as cloud."""
DATETIME = "2024-06-15T10:20:30Z"
BLOCK = 128

S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
S2_COMMON = ("coastal", "blue", "green", "red", "rededge", "rededge", "rededge", "nir", "nir08", "nir09", "swir16", "swir22")
EARTH_SEARCH_KEYS = ("coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08", "nir09", "swir16", "swir22")
"""Earth Search's asset keys for S2_BANDS, in that order."""
L30_BANDS = {"B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "nir08", "B06": "swir16",
             "B07": "swir22", "B10": "lwir11", "B11": "lwir12"}
"""HLS L30's bands after Landsat 8/9, with their common names."""
PRITHVI_S2_IDS = ("B02", "B03", "B04", "B8A", "B11", "B12")
"""Prithvi's BLUE GREEN RED NIR_NARROW SWIR_1 SWIR_2 as Sentinel-2 band ids."""
S2_OFFSET_DN = 1000
"""Processing baseline 04.00 and later store reflectance x 10000 + 1000."""


def truth(seed: int = 0) -> dict[str, np.ndarray]:
    """Reflectance x 10000 of each Sentinel-2 band (whole numbers, 0 in the hole), by band id."""
    rng = np.random.default_rng(seed)
    values = {}
    for number, band in enumerate(S2_BANDS):
        image = rng.integers(200, 5000, (HEIGHT, WIDTH)).astype(np.float64) + 37 * number
        image[HOLE] = 0
        values[band] = image
    return values


def backscatter(seed: int = 1) -> dict[str, np.ndarray]:
    """Linear power of VV and VH (positive; 0 in the hole)."""
    rng = np.random.default_rng(seed)
    values = {"vv": rng.uniform(0.01, 0.4, (HEIGHT, WIDTH)), "vh": rng.uniform(0.001, 0.05, (HEIGHT, WIDTH))}
    for image in values.values():
        image[HOLE] = 0
    return values


def write_cog(path: Path, image: np.ndarray, dtype: str, nodata: float | None, transform: Affine = TRANSFORM,
              crs: str | None = CRS) -> Path:
    """One band as a Cloud-Optimized GeoTIFF (GDAL's COG driver, 128-pixel blocks, deflate)."""
    profile = {"driver": "GTiff", "height": image.shape[0], "width": image.shape[1], "count": 1, "dtype": dtype,
               "crs": crs, "transform": transform, "nodata": nodata}
    with MemoryFile() as memory:
        with memory.open(**profile) as dataset:
            dataset.write(image.astype(dtype), 1)
        with memory.open() as dataset:
            copy_raster(dataset, path, driver="COG", BLOCKSIZE=BLOCK, COMPRESS="DEFLATE", OVERVIEWS="NONE")
    return path


def _item(item_id: str, collection: str | None, properties: dict, assets: dict, transform: Affine = TRANSFORM) -> dict:
    west, north = 14.9, 45.15  # about where the grid lies; searches use it
    item = {
        "type": "Feature", "stac_version": "1.0.0", "id": item_id,
        "geometry": {"type": "Polygon", "coordinates": [[[west, north - 0.01], [west + 0.01, north - 0.01],
                                                          [west + 0.01, north], [west, north], [west, north - 0.01]]]},
        "bbox": [west, north - 0.01, west + 0.01, north],
        "properties": {"datetime": DATETIME, **properties},
        "links": [], "assets": assets,
        "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json",
                            "https://stac-extensions.github.io/raster/v1.1.0/schema.json"],
    }
    if collection:
        item["collection"] = collection
    return item


def save_item(folder: Path, item: dict, name: str | None = None) -> Path:
    path = folder / (name or f"{item['id']}.json")
    path.write_text(json.dumps(item, indent=1))
    return path


def earth_search_sentinel2(folder: Path, *, offset_applied: bool, collection: str = "sentinel-2-l2a",
                           bands: tuple[str, ...] = S2_BANDS, item_id: str = "S2B_33TUN_20240615_0_L2A",
                           values: dict[str, np.ndarray] | None = None, scl: bool = True) -> Path:
    """Earth Search: keys by common name (``rededge1``...), ``-jp2`` twins, ``raster:bands`` scale 0.0001 and
    offset -0.1 always, and ``earthsearch:boa_offset_applied`` when the COGs had the +1000 removed."""
    folder.mkdir(parents=True, exist_ok=True)
    values = truth() if values is None else values
    assets = {}
    for band in bands:
        index = S2_BANDS.index(band)
        key = EARTH_SEARCH_KEYS[index]
        stored = values[band] + (0 if offset_applied else S2_OFFSET_DN) * (values[band] > 0)
        write_cog(folder / f"{band}.tif", stored, "uint16", 0)
        eo = [{"name": key, "common_name": S2_COMMON[index]}]
        raster = [{"nodata": 0, "data_type": "uint16", "spatial_resolution": PIXEL, "scale": 0.0001, "offset": -0.1}]
        assets[key] = {"href": f"./{band}.tif", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                       "roles": ["data"], "eo:bands": eo, "raster:bands": raster}
        assets[f"{key}-jp2"] = {"href": f"./{band}.jp2", "type": "image/jp2", "roles": ["data"], "eo:bands": eo,
                                "raster:bands": raster}
    if scl:
        assets["scl"] = _scl(folder)
    properties = {"s2:processing_baseline": "05.10", "eo:cloud_cover": 12.5}
    if collection == "sentinel-2-l2a":
        properties["earthsearch:boa_offset_applied"] = offset_applied
    return save_item(folder, _item(item_id, collection, properties, assets))


def planetary_computer_sentinel2(folder: Path, *, baseline: str, bands: tuple[str, ...] = S2_BANDS,
                                 item_id: str = "S2B_MSIL2A_20240615T101559_R065_T33TUN") -> Path:
    """Planetary Computer: keys by band id, no scale or offset published, ``s2:processing_baseline``."""
    folder.mkdir(parents=True, exist_ok=True)
    values = truth()
    with_offset = tuple(int(part) for part in baseline.split(".")) >= (4, 0)
    assets = {}
    for band in bands:
        index = S2_BANDS.index(band)
        stored = values[band] + (S2_OFFSET_DN if with_offset else 0) * (values[band] > 0)
        write_cog(folder / f"{band}.tif", stored, "uint16", 0)
        assets[band] = {"href": f"./{band}.tif", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                        "roles": ["data"], "eo:bands": [{"name": band, "common_name": S2_COMMON[index]}],
                        "gsd": PIXEL}
    assets["SCL"] = _scl(folder)
    properties = {"s2:processing_baseline": baseline, "eo:cloud_cover": 40.0}
    return save_item(folder, _item(item_id, "sentinel-2-l2a", properties, assets))


def _scl(folder: Path) -> dict:
    """Scene classification: 4 (vegetation) everywhere, 9 (cloud high probability) over CLOUD, 0 in the hole."""
    classes = np.full((HEIGHT, WIDTH), 4, dtype=np.uint8)
    classes[CLOUD] = 9
    classes[HOLE] = 0
    write_cog(folder / "SCL.tif", classes, "uint8", 0)
    return {"href": "./SCL.tif", "type": "image/tiff; application=geotiff; profile=cloud-optimized", "roles": ["data"],
            "raster:bands": [{"nodata": 0, "data_type": "uint8"}]}


def hls(folder: Path, *, landsat: bool, item_id: str | None = None) -> Path:
    """HLS v2: int16 reflectance x 10000, fill -9999, ``Fmask`` bits (1 cloud, 3 shadow). S30 keeps Sentinel-2's
    band ids (with ``eo:bands``); L30 numbers after Landsat (NIR B05, SWIR B06/B07, thermal B10/B11) and is
    published here without ``eo:bands``, as some catalogs do, so its keys alone must be read right."""
    folder.mkdir(parents=True, exist_ok=True)
    values = truth()
    assets = {}
    if landsat:
        sources = {"B01": "B01", "B02": "B02", "B03": "B03", "B04": "B04", "B05": "B8A", "B06": "B11", "B07": "B12",
                   "B10": "B05", "B11": "B06"}
        for key, truth_band in sources.items():
            stored = np.where(values[truth_band] > 0, values[truth_band], -9999)
            scale = 0.01 if key in ("B10", "B11") else 0.0001
            write_cog(folder / f"{key}.tif", stored, "int16", -9999)
            assets[key] = {"href": f"./{key}.tif", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                           "roles": ["data"], "raster:bands": [{"scale": scale, "nodata": -9999, "data_type": "int16"}]}
        collection, default_id = "hls2-l30", "HLS.L30.T33TUN.2024167T095031.v2.0"
    else:
        for band in S2_BANDS:
            stored = np.where(values[band] > 0, values[band], -9999)
            write_cog(folder / f"{band}.tif", stored, "int16", -9999)
            assets[band] = {"href": f"./{band}.tif", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                            "roles": ["data"], "eo:bands": [{"name": band, "common_name": S2_COMMON[S2_BANDS.index(band)]}],
                            "raster:bands": [{"scale": 0.0001, "nodata": -9999, "data_type": "int16"}]}
        collection, default_id = "hls2-s30", "HLS.S30.T33TUN.2024167T100559.v2.0"
    fmask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    fmask[CLOUD] = 1 << 1
    fmask[HOLE] = 255
    write_cog(folder / "Fmask.tif", fmask, "uint8", 255)
    assets["Fmask"] = {"href": "./Fmask.tif", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                       "roles": ["data"]}
    return save_item(folder, _item(item_id or default_id, collection, {"eo:cloud_cover": 5}, assets))


def sentinel1_rtc(folder: Path, item_id: str = "S1A_IW_GRDH_1SDV_20240615T050000_rtc") -> Path:
    """Planetary Computer sentinel-1-rtc: linear gamma0, float32, on the map grid, keys ``vv`` and ``vh``."""
    folder.mkdir(parents=True, exist_ok=True)
    assets = {}
    for key, image in backscatter().items():
        stored = np.where(image > 0, image, -32768).astype(np.float32)
        write_cog(folder / f"{key}.tif", stored, "float32", -32768)
        assets[key] = {"href": f"./{key}.tif", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                       "roles": ["data"], "raster:bands": [{"nodata": -32768, "data_type": "float32"}]}
    properties = {"sar:polarizations": ["VV", "VH"], "sar:product_type": "GRD", "platform": "SENTINEL-1A"}
    return save_item(folder, _item(item_id, "sentinel-1-rtc", properties, assets))


GCP_CRS = "EPSG:4326"
GCP_ORIGIN = (15.0, 45.0)
"""Longitude and latitude of the radar image's first pixel corner; rows run north to south on the map as the
image's rows run *up* (a flipped image, as from an ascending pass)."""
GCP_STEP = 0.0001


def sentinel1_grd(folder: Path, *, calibrated: bool, item_id: str = "S1A_IW_GRDH_1SDV_20240615T050000_GRD") -> Path:
    """Sentinel-1 GRD in radar geometry: no geotransform, only ground control points (EPSG:4326). Calibrated:
    float32 linear sigma0; uncalibrated: uint16 digital numbers. Row 0 of the image is the *south* edge."""
    folder.mkdir(parents=True, exist_ok=True)
    assets = {}
    for key, image in backscatter().items():
        flipped = image[::-1]
        stored = flipped.astype(np.float32) if calibrated else np.round(flipped * 1000).astype(np.uint16)
        path = folder / f"{key}.tif"
        gcps = ground_control_points()
        profile = {"driver": "GTiff", "height": HEIGHT, "width": WIDTH, "count": 1, "dtype": stored.dtype.name,
                   "tiled": True, "blockxsize": BLOCK, "blockysize": BLOCK, "gcps": gcps, "crs": GCP_CRS}
        with rasterio.open(path, "w", **profile) as dataset:
            dataset.write(stored, 1)
        assets[key] = {"href": f"./{key}.tif", "type": "image/tiff; application=geotiff", "roles": ["data"]}
    # The made-up transform some catalogs publish for GRD: wrong, and never to be trusted.
    properties = {"sar:polarizations": ["VV", "VH"], "sar:product_type": "GRD", "proj:epsg": 32633,
                  "proj:transform": [10, 0, 0, 0, -10, 0]}
    return save_item(folder, _item(item_id, "sentinel-1-grd", properties, assets))


def ground_control_points() -> list[GroundControlPoint]:
    """GCPs at the image's corners and centre: pixel (col, row) lies at lon = x0 + col step, lat = y0 + row step."""
    lon0, lat0 = GCP_ORIGIN
    points = []
    for row, col in ((0, 0), (0, WIDTH), (HEIGHT, 0), (HEIGHT, WIDTH), (HEIGHT // 2, WIDTH // 2)):
        points.append(GroundControlPoint(row=row, col=col, x=lon0 + col * GCP_STEP, y=lat0 + row * GCP_STEP))
    return points


def hand_prepared(path: Path, images: list[np.ndarray], names: list[str], nodata: float = -9999.0) -> Path:
    """A local GeoTIFF of ``images`` already in the model's units, band descriptions ``names``; the hole is nodata."""
    profile = {"driver": "GTiff", "height": HEIGHT, "width": WIDTH, "count": len(images), "dtype": "float32",
               "crs": CRS, "transform": TRANSFORM, "nodata": nodata}
    with rasterio.open(path, "w", **profile) as dataset:
        for index, (image, name) in enumerate(zip(images, names), start=1):
            band = image.astype(np.float32).copy()
            band[HOLE] = nodata
            dataset.write(band, index)
            dataset.set_band_description(index, name)
    return path
