"""Bytes fetched to read an area of a Sentinel-2 item over HTTP, against the size of its assets.

Writes Prithvi's six bands of a SIZE x SIZE (10 m) Sentinel-2 L2A scene as Earth Search publishes them (one COG
per band, 512-pixel blocks, deflate; B02-B04 at 10 m, B8A, B11, B12 at 20 m), serves them from the local
Range-answering server (axs_lib.demo.catalog_server), and reads an AREA x AREA box with ``--bbox`` semantics
(axs_lib.scenes.items.item_scene, then the scene reader window by window), counting what the server sent.

    python benchmarks/area_reads.py                      # 4096 x 4096 scene; areas of 256, 1024 and 4096 pixels
    python benchmarks/area_reads.py --size 2048 --areas 256 --json results.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.io import MemoryFile
from rasterio.shutil import copy as copy_raster

from axs_lib.demo.catalog_server import CatalogServer
from axs_lib.scenes.inputs import gdal_environment
from axs_lib.scenes.items import item_scene
from axs_lib.scenes.sources import open_source
from axs_lib.scenes.windows import plan_windows

BANDS = {"blue": ("B02", 10), "green": ("B03", 10), "red": ("B04", 10), "nir08": ("B8A", 20), "swir16": ("B11", 20),
         "swir22": ("B12", 20)}
PRITHVI = ("BLUE", "GREEN", "RED", "NIR_NARROW", "SWIR_1", "SWIR_2")
ORIGIN = (399960.0, 5000040.0)
CRS = "EPSG:32633"


def publish(folder: Path, size: int) -> Path:
    rng = np.random.default_rng(0)
    assets = {}
    for key, (band, metres) in BANDS.items():
        side = size * 10 // metres
        smooth = rng.integers(1200, 4000, (side // 64 + 1, side // 64 + 1)).repeat(64, 0).repeat(64, 1)[:side, :side]
        image = (smooth + rng.integers(0, 200, (side, side))).astype(np.uint16)
        profile = {"driver": "GTiff", "height": side, "width": side, "count": 1, "dtype": "uint16", "crs": CRS,
                   "transform": Affine(metres, 0, ORIGIN[0], 0, -metres, ORIGIN[1]), "nodata": 0}
        with MemoryFile() as memory:
            with memory.open(**profile) as dataset:
                dataset.write(image, 1)
            with memory.open() as dataset:
                copy_raster(dataset, folder / f"{band}.tif", driver="COG", BLOCKSIZE=512, COMPRESS="DEFLATE")
        assets[key] = {"href": f"./{band}.tif", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                       "eo:bands": [{"name": key, "common_name": key}],
                       "raster:bands": [{"scale": 0.0001, "offset": -0.1, "nodata": 0}]}
    item = {"type": "Feature", "stac_version": "1.0.0", "id": "benchmark", "collection": "sentinel-2-c1-l2a",
            "geometry": None, "properties": {"datetime": "2024-06-15T10:00:00Z"}, "links": [], "assets": assets}
    path = folder / "item.json"
    path.write_text(json.dumps(item))
    return path


def read_area(server: CatalogServer, area: int) -> dict:
    """Read an ``area`` x ``area`` box at the scene's top-left corner (inset by 100 pixels) through the item."""
    west_east, south_north = rasterio.warp.transform(
        CRS, "EPSG:4326", [ORIGIN[0] + 1000, ORIGIN[0] + 1000 + area * 10], [ORIGIN[1] - 1000 - area * 10, ORIGIN[1] - 1000])
    bbox = [west_east[0] + 1e-7, south_north[0] + 1e-7, west_east[1] - 1e-7, south_north[1] - 1e-7]
    server.clear()
    scene = item_scene(open_source(server.url("item.json")).items, PRITHVI, bbox=bbox)
    plan = plan_windows(scene.height, scene.width, 512, 32)
    with gdal_environment():
        reader = scene.reader()
        try:
            for window in plan.windows:
                reader.read(window, 512)
        finally:
            reader.close()
    fetched = server.bytes_sent(".tif")
    return {"area_pixels": [scene.height, scene.width], "requests": len(server.requested(".tif")), "fetched_bytes": fetched}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=4096, help="scene side in 10 m pixels (default 4096)")
    parser.add_argument("--areas", type=int, nargs="+", default=[256, 1024, 4096], help="box sides in pixels")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="axs-area-reads-") as temporary:
        folder = Path(temporary)
        publish(folder, args.size)
        total = sum(path.stat().st_size for path in folder.glob("*.tif"))
        rows = []
        with CatalogServer(folder) as server:
            for area in args.areas:
                # a fresh URL per area, so GDAL's cache of earlier reads does not hide any fetch
                (folder / f"area{area}").symlink_to(folder, target_is_directory=True)
                row = read_area(_Prefixed(server, f"area{area}"), min(area, args.size - 200))
                rows.append({**row, "assets_bytes": total, "fraction": row["fetched_bytes"] / total})
    print(f"{args.size} x {args.size} scene, six bands, assets {total / 2**20:.1f} MiB in all")
    print(f"{'area (px)':>12} {'requests':>9} {'fetched MiB':>12} {'of assets':>10}")
    for row in rows:
        height, width = row["area_pixels"]
        print(f"{f'{height} x {width}':>12} {row['requests']:>9} {row['fetched_bytes'] / 2**20:>12.2f} {row['fraction']:>9.1%}")
    if args.json:
        args.json.write_text(json.dumps({"size": args.size, "rows": rows}, indent=1))


class _Prefixed:
    """The server, with every URL under a prefix folder (a link to the served folder)."""

    def __init__(self, server: CatalogServer, prefix: str):
        self.server, self.prefix = server, prefix

    def url(self, relative: str) -> str:
        return self.server.url(f"{self.prefix}/{relative}")

    def clear(self) -> None:
        self.server.clear()

    def bytes_sent(self, suffix: str) -> int:
        return self.server.bytes_sent(suffix)

    def requested(self, suffix: str):
        return self.server.requested(suffix)


if __name__ == "__main__":
    main()
