"""Remote benchmark: a scene read as a Sentinel-2 item over HTTP with latency, against the same scene as a local file.

For each size it writes Prithvi's six bands twice: as an Earth Search ``sentinel-2-l2a`` item (one deflate COG
per band, 512-pixel blocks, ``earthsearch:boa_offset_applied``) and as one local six-band GeoTIFF of the same
values. Then, each in a fresh process, it streams a model over the local file and over the item served by
:class:`axs_lib.demo.catalog_server.CatalogServer` with each added latency per request (the server answers
requests concurrently, as an object store does), with the engine the scene commands use (``run_scene``: tile
224, overlap 32, batch 8, reads ahead of the model) and reports windows/s, the remote/local time ratio, the
bytes fetched against the assets' size, and peak RSS (``VmHWM``, imports included).

Models (``--model``): ``tiny``, a tiny-weights Prithvi segmentation model as the tests use; ``100m``, a model
of Prithvi EO 2.0 100M's size (TerraTorch's ``prithvi_eo_v2_100_tl`` encoder, random weights, and a 1x1
convolution over its last tokens).

    python benchmarks/remote.py --sizes 1024 2048 --latencies 0 20 50 100 --model 100m
    python benchmarks/remote.py --sizes 1024 3072 --model tiny
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TILE, OVERLAP, BATCH, BLOCK = 224, 32, 8, 512
BANDS = ("B02", "B03", "B04", "B8A", "B11", "B12")
KEYS = ("blue", "green", "red", "nir08", "swir16", "swir22")
MODEL_BANDS = ("BLUE", "GREEN", "RED", "NIR_NARROW", "SWIR_1", "SWIR_2")


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def band_values(size: int, index: int):
    """Reflectance x 10000 with structure at several scales (compresses as real scenes do), strip by strip."""
    import numpy as np

    rng = np.random.default_rng(index)
    coarse = rng.uniform(500, 4000, (size // 64 + 2, size // 64 + 2))
    for top in range(0, size, BLOCK):
        rows = np.arange(top, min(top + BLOCK, size))
        columns = np.arange(size)
        base = coarse[rows[:, None] // 64, columns[None, :] // 64]
        yield top, (base + rng.normal(0, 50, base.shape)).clip(1, 10000).astype("uint16")


def prepare(folder: Path, size: int) -> tuple[Path, Path]:
    """The item (``folder/item/item.json``) and the local six-band GeoTIFF of the same reflectance."""
    import numpy as np
    import rasterio
    from affine import Affine
    from rasterio.shutil import copy as copy_raster
    from rasterio.warp import transform_bounds
    from rasterio.windows import Window

    item_folder = folder / "item"
    item_folder.mkdir(parents=True, exist_ok=True)
    transform = Affine(10, 0, 399960, 0, -10, 5000040)
    profile = {"driver": "GTiff", "height": size, "width": size, "crs": "EPSG:32633", "transform": transform,
               "tiled": True, "blockxsize": BLOCK, "blockysize": BLOCK}
    local = folder / "local.tif"
    with rasterio.open(local, "w", count=len(BANDS), dtype="float32", nodata=-9999, compress="DEFLATE", **profile) as dst:
        for index, band in enumerate(BANDS):
            plain = folder / f"{band}.plain.tif"
            with rasterio.open(plain, "w", count=1, dtype="uint16", nodata=0, **profile) as single:
                for top, values in band_values(size, index):
                    window = Window(0, top, size, values.shape[0])
                    single.write(values, 1, window=window)
                    dst.write(values.astype(np.float32), index + 1, window=window)
            copy_raster(plain, item_folder / f"{band}.tif", driver="COG", compress="DEFLATE", predictor="YES",
                        blocksize=BLOCK, overviews="NONE")
            plain.unlink()
    bounds = rasterio.transform.array_bounds(size, size, transform)
    west, south, east, north = transform_bounds("EPSG:32633", "EPSG:4326", *bounds)
    raster = [{"nodata": 0, "data_type": "uint16", "scale": 0.0001, "offset": -0.1}]
    item = {
        "type": "Feature", "stac_version": "1.0.0", "id": f"S2B_33TUN_bench_{size}", "collection": "sentinel-2-l2a",
        "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json",
                            "https://stac-extensions.github.io/raster/v1.1.0/schema.json"],
        "bbox": [west, south, east, north],
        "geometry": {"type": "Polygon", "coordinates": [[[west, south], [east, south], [east, north], [west, north], [west, south]]]},
        "properties": {"datetime": "2024-06-15T10:20:30Z", "earthsearch:boa_offset_applied": True,
                       "s2:processing_baseline": "05.10", "proj:epsg": 32633},
        "links": [],
        "assets": {key: {"href": f"./{band}.tif", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                         "roles": ["data"], "eo:bands": [{"name": key, "common_name": key}], "raster:bands": raster}
                   for band, key in zip(BANDS, KEYS)},
    }
    (item_folder / "item.json").write_text(json.dumps(item))
    return item_folder / "item.json", local


def model_predict(kind: str, workdir: Path):
    """``predict`` for ``run_scene``: ``[B, 6, 224, 224]`` -> ``[B, 3, 224, 224]``."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    if kind == "tiny":
        from axs_lib.demo.tiny_weights import write_tiny_weights
        from axs_lib.models import build_prithvi_600
        from axs_lib.weights.catalog import PRITHVI_600M

        weights = write_tiny_weights(workdir / "weights", names=[PRITHVI_600M])[PRITHVI_600M]
        model = build_prithvi_600(num_classes=3, img_size=TILE, checkpoint_path=weights)
    else:
        from axs_lib.models import build_prithvi_backbone

        class Sized(nn.Module):
            """Prithvi EO 2.0 100M's encoder and a 1x1 convolution over its last tokens."""

            def __init__(self):
                super().__init__()
                self.encoder = build_prithvi_backbone("prithvi_eo_v2_100_tl", pretrained=False)
                self.head = nn.Conv2d(768, 3, 1)

            def forward(self, x):
                tokens = self.encoder(x)[-1][:, 1:]
                side = int(tokens.shape[1] ** 0.5)
                grid = tokens.transpose(1, 2).reshape(x.shape[0], -1, side, side)
                return nn.functional.interpolate(self.head(grid), size=x.shape[-2:], mode="nearest")

        model = Sized().eval()

    def predict(batch):
        with torch.inference_mode():
            output = model(batch)
        return getattr(output, "output", output).float()

    return predict


def child(kind: str, source: str, latency_ms: float, output: Path) -> dict:
    """One run in this process: stream the model over the local file or the served item."""
    import numpy as np

    from axs_lib.demo.catalog_server import CatalogServer
    from axs_lib.scenes.engine import run_scene
    from axs_lib.scenes.inputs import SceneInput
    from axs_lib.scenes.items import item_scene
    from axs_lib.scenes.outputs import OutputSpec
    from axs_lib.scenes.sources import open_source
    from axs_lib.scenes.windows import plan_windows

    predict = model_predict(kind, output.parent)
    spec = OutputSpec(output, 3, "float32", float("nan"), lambda core, valid: np.where(valid, core, np.nan))
    source_path = Path(source)
    server = None
    if source_path.suffix == ".json":
        server = CatalogServer(source_path.parent.parent).__enter__()
        server.latency = latency_ms / 1000
        scene = item_scene(open_source(server.url(f"item/{source_path.name}")).items, MODEL_BANDS)
        server.clear()
    else:
        scene = SceneInput.open(source_path, len(MODEL_BANDS), MODEL_BANDS)
    windows = len(plan_windows(scene.height, scene.width, TILE, OVERLAP))
    started = time.perf_counter()
    run_scene(scene, {"out": spec}, predict, tile=TILE, overlap=OVERLAP, batch_size=BATCH, overwrite=True)
    seconds = time.perf_counter() - started
    record = {"windows": windows, "seconds": round(seconds, 1), "windows_per_s": round(windows / seconds, 2),
              "peak_rss_mb": round(peak_rss_mb())}
    if server is not None:
        assets = sum(path.stat().st_size for path in source_path.parent.glob("*.tif"))
        record.update(requests=len(server.requested(".tif")), fetched_mb=round(server.bytes_sent(".tif") / 2**20, 1),
                      fetched_share=round(server.bytes_sent(".tif") / assets, 3))
        server.__exit__(None, None, None)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 3072])
    parser.add_argument("--latencies", type=float, nargs="+", default=[0, 20, 50, 100], help="milliseconds per request")
    parser.add_argument("--model", choices=["tiny", "100m"], default="tiny")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, source, latency, output = args.child
        print(json.dumps(child(kind, source, float(latency), Path(output))))
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="axs-remote-"))
    print("| model | size | source | latency (ms) | windows/s | time / local | requests | fetched MiB | of the assets | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        folder = workdir / str(size)
        item, local = prepare(folder, size)
        cases = [("local", str(local), 0.0)] + [("item over HTTP", str(item), latency) for latency in args.latencies]
        local_seconds = None
        for name, source, latency in cases:
            command = [sys.executable, __file__, "--child", args.model, source, str(latency), str(folder / "out.tif")]
            result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            local_seconds = local_seconds or result["seconds"]
            shown_latency = "—" if name == "local" else f"{latency:g}"
            print(f"| {args.model} | {size}² | {name} | {shown_latency} | {result['windows_per_s']} | "
                  f"{result['seconds'] / local_seconds:.2f} | {result.get('requests', '—')} | "
                  f"{result.get('fetched_mb', '—')} | {result.get('fetched_share', '—')} | {result['peak_rss_mb']} |",
                  flush=True)


if __name__ == "__main__":
    main()
