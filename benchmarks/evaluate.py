"""Evaluate benchmark: peak memory and speed of ``axs-scenes evaluate`` by scene size, optical and classes.

For each scene size it writes, with the scene benchmark's ``write_scene``, a prediction and a reference of
12 uint16 bands of noise (reflectance x 10000) and two one-band uint8 class maps (8 classes), on the same
grid, then, each in a fresh process, runs ``evaluate_scene`` (what the command runs; default tile 512) on
each pair. Peak RSS is the process's ``VmHWM`` (imports included); *after imports* is its RSS right before
the evaluation starts.

    python benchmarks/evaluate.py                        # 1024, 3072, 10240 px
    python benchmarks/evaluate.py --sizes 1024 3072 --kinds optical
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from scenes import peak_rss_mb, run_child, write_scene

BANDS, CLASSES = 12, 8


def child(kind: str, prediction: str, reference: str, tile: str) -> dict:
    from axs_lib.scenes.evaluation import evaluate_scene

    imported = peak_rss_mb("VmRSS")
    started = time.perf_counter()
    result = evaluate_scene(Path(prediction), Path(reference), kind, tile=int(tile))
    return {
        "seconds": time.perf_counter() - started, "peak_rss_mb": peak_rss_mb(), "imported_rss_mb": imported,
        "valid_pixels": result["valid_pixels"],
    }


def write_pair(folder: Path, kind: str, size: int) -> tuple[Path, Path]:
    if kind == "optical":
        count, dtype, noise = BANDS, "uint16", lambda rng, shape: rng.integers(0, 10000, shape)
    else:
        count, dtype, noise = 1, "uint8", lambda rng, shape: rng.integers(0, CLASSES, shape)
    paths = folder / f"{kind}_prediction_{size}.tif", folder / f"{kind}_reference_{size}.tif"
    for seed, path in enumerate(paths):
        write_scene(path, size, count, dtype, noise, seed)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 3072, 10240])
    parser.add_argument("--kinds", nargs="+", choices=("optical", "classes"), default=["optical", "classes"])
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--workdir", type=Path, help="where scenes are written (default: a temp folder)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return

    rows = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
        for size in args.sizes:
            for kind in args.kinds:
                prediction, reference = write_pair(Path(folder), kind, size)
                measured = run_child(kind, str(prediction), str(reference), str(args.tile), script=__file__)
                rows.append((size, kind, measured))
                prediction.unlink()
                reference.unlink()
    print("| scene | kind | peak RSS (MB) | RSS after imports (MB) | seconds | Mpixel/s |")
    print("|---|---|---|---|---|---|")
    for size, kind, measured in rows:
        rate = size * size / measured["seconds"] / 1e6
        print(
            f"| {size}² | {kind} | {measured['peak_rss_mb']:.0f} | {measured['imported_rss_mb']:.0f} "
            f"| {measured['seconds']:.1f} | {rate:.2f} |"
        )


if __name__ == "__main__":
    main()
