"""Scene benchmark: peak memory and windows/s of streaming inference against TerraTorch's in-memory tiling.

For each scene size it writes a two-band float32 GeoTIFF of noise, then, each in a fresh process:

- **streamed**: ``axs_lib.scenes.stream_model`` with a small convolutional stand-in model (2 -> 16 -> 12
  channels, 3x3 kernels; the tiny-weights scale: the model's own memory is negligible, so what is measured
  is the engine's), ``--tile`` 224, ``--overlap`` 32, ``--batch-size`` 8, float32 12-band output, then the
  RGB quick-look PNG that ``sar-to-optical`` writes, from that output;
- **stock** (sizes up to ``--stock-max``): the scene read whole, TerraTorch's ``tiled_inference`` (crop 224,
  stride 192, delta 16, batch 8) and the output written whole.

Peak RSS is the process's ``VmHWM`` (imports included). With ``--generator`` it also builds TerraMind's
real-size generator with random weights (``build_terramind_generator(pretrained=False)``, about 30 s and
6 GB) and times one 224 x 224 window on the CPU.

    python benchmarks/scenes.py                                   # 1024, 3072, 4096, 10240 px; stock up to 4096
    python benchmarks/scenes.py --sizes 1024 3072 --generator --timesteps 12
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TILE, OVERLAP, BATCH = 224, 32, 8


def peak_rss_mb(field: str = "VmHWM") -> float:
    """This process's peak resident memory in MB (``field="VmRSS"``: its current one)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def stand_in_model():
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 12, 3, padding=1)).eval()


def write_scene(path: Path, size: int, count: int = 2, dtype: str = "float32", noise=None, seed: int = 0) -> None:
    """A tiled ``size`` x ``size`` GeoTIFF of ``count`` bands, written in strips: ``noise(rng, shape)`` (default:
    Sentinel-1-like dB values) cast to ``dtype``."""
    import numpy as np
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    profile = {
        "driver": "GTiff", "count": count, "height": size, "width": size, "dtype": dtype, "crs": "EPSG:32633",
        "transform": Affine(10, 0, 399960, 0, -10, 5000040), "tiled": True, "blockxsize": 256, "blockysize": 256,
        "BIGTIFF": "IF_SAFER",
    }
    rng = np.random.default_rng(seed)
    noise = noise or (lambda generator, shape: generator.normal(-15, 4, shape))
    with rasterio.Env(GDAL_CACHEMAX=64), rasterio.open(path, "w", **profile) as dst:
        for row in range(0, size, 256):
            rows = min(256, size - row)
            dst.write(noise(rng, (count, rows, size)).astype(dtype), window=Window(0, row, size, rows))


def child_streamed(source: str, output: str) -> dict:
    import torch

    from axs_lib.scenes import plan_windows, stream_model
    from axs_lib.scenes.quicklook import write_quicklook
    from axs_lib.scenes.inputs import gdal_environment

    torch.set_num_threads(os.cpu_count() or 1)
    model = stand_in_model()
    started = time.perf_counter()
    stream_model(model, source, output, tile=TILE, overlap=OVERLAP, batch_size=BATCH)
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    with gdal_environment():
        write_quicklook(Path(output), Path(output).with_suffix(".png"), (3, 2, 1))
    quicklook_seconds = time.perf_counter() - started
    import rasterio

    with rasterio.open(source) as src:
        windows = len(plan_windows(src.height, src.width, TILE, OVERLAP))
    return {"seconds": seconds, "quicklook_seconds": quicklook_seconds, "windows": windows, "peak_rss_mb": peak_rss_mb()}


def child_stock(source: str, output: str) -> dict:
    import rasterio
    import torch
    from terratorch.tasks.tiled_inference import tiled_inference

    model = stand_in_model()
    started = time.perf_counter()
    with rasterio.open(source) as src:
        scene, profile = torch.from_numpy(src.read())[None], src.profile
    with torch.no_grad():
        result = tiled_inference(model, scene, crop=TILE, stride=TILE - OVERLAP, delta=OVERLAP // 2, batch_size=BATCH)
    profile.update(count=result.shape[1])
    with rasterio.open(output, "w", **profile) as dst:
        dst.write(result[0].numpy())
    return {"seconds": time.perf_counter() - started, "peak_rss_mb": peak_rss_mb()}


def child_generator(timesteps: int) -> dict:
    import torch

    from axs_lib.models import build_terramind_generator

    started = time.perf_counter()
    model = build_terramind_generator(pretrained=False, timesteps=timesteps)
    built = time.perf_counter() - started
    sar = torch.randn(1, 2, TILE, TILE) * 4 - 15
    torch.manual_seed(0)
    cpu = time.process_time()
    started = time.perf_counter()
    with torch.inference_mode():
        model({"S1GRD": sar})
    return {
        "build_s": built, "tile_s": time.perf_counter() - started, "tile_cpu_s": time.process_time() - cpu,
        "threads": torch.get_num_threads(), "peak_rss_mb": peak_rss_mb(), "timesteps": timesteps,
    }


def run_child(*arguments: str, script: str = __file__) -> dict:
    """Run ``script --child ARGUMENTS`` in a fresh process; its last line of output, parsed as JSON."""
    env = {**os.environ, "LIGHTLY_DID_VERSION_CHECK": "True"}
    result = subprocess.run([sys.executable, script, "--child", *arguments], capture_output=True, text=True, env=env)
    if result.returncode:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 3072, 4096, 10240])
    parser.add_argument("--stock-max", type=int, default=4096, help="largest size run through TerraTorch's in-memory tiling")
    parser.add_argument("--generator", action="store_true", help="also time one window of the real-size generator")
    parser.add_argument("--timesteps", type=int, default=12)
    parser.add_argument("--workdir", type=Path, help="where scenes are written (default: a temp folder)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        function = {"streamed": child_streamed, "stock": child_stock}.get(kind)
        print(json.dumps(function(*rest) if function else child_generator(int(rest[0]))))
        return

    rows = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
        for size in args.sizes:
            source = Path(folder) / f"scene_{size}.tif"
            write_scene(source, size)
            streamed = run_child("streamed", str(source), str(Path(folder) / f"streamed_{size}.tif"))
            stock = run_child("stock", str(source), str(Path(folder) / f"stock_{size}.tif")) if size <= args.stock_max else None
            rows.append((size, streamed, stock))
            for path in Path(folder).glob(f"*_{size}.*"):
                path.unlink()
    print(
        "| scene | windows | streamed peak RSS (MB) | streamed windows/s | quick-look s "
        "| stock peak RSS (MB) | stock s | RSS stock ÷ streamed |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for size, streamed, stock in rows:
        rate = streamed["windows"] / streamed["seconds"]
        stock_cells = (
            f"{stock['peak_rss_mb']:.0f} | {stock['seconds']:.1f} | {stock['peak_rss_mb'] / streamed['peak_rss_mb']:.1f}"
            if stock else "not run | | "
        )
        print(
            f"| {size}² | {streamed['windows']} | {streamed['peak_rss_mb']:.0f} | {rate:.1f} "
            f"| {streamed['quicklook_seconds']:.1f} | {stock_cells} |"
        )
    if args.generator:
        generator = run_child("generator", str(args.timesteps))
        print(
            f"\nTerraMind generator (random init, real size): built in {generator['build_s']:.1f} s; one {TILE}² window "
            f"with {generator['timesteps']} timesteps: {generator['tile_s']:.1f} s wall, {generator['tile_cpu_s']:.1f} s CPU "
            f"({generator['threads']} threads); peak RSS {generator['peak_rss_mb']:.0f} MB"
        )


if __name__ == "__main__":
    main()
