"""COG share benchmark: how much of a scene command's wall time writing the Cloud-Optimized GeoTIFF takes.

Runs the scene tasks on the tiny test models over a synthetic scene of ``--size``² pixels and times the whole
call and, inside it, GDAL's COG copy (``outputs.write_cog``) and the whole assembly (block assembly, COG copy,
quick-look): ``segment --probabilities`` (a tiny Prithvi segmentation model, six float32 bands in, three
float32 probabilities out) and ``sar-to-optical`` (tiny TerraMind 1.0 large, two timesteps; 12-band uint16 and,
with ``--as-float``, float32 output). The goal (docs/performance.md): the COG copy at most 20 % of the wall time.

    python benchmarks/cog_share.py --size 3072
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from scenes import write_scene


def timed(record: dict, name: str, function):
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            record[name] = record.get(name, 0.0) + time.perf_counter() - started

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=3072)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="axs-cog-share-"))
    os.environ["AXS_WEIGHTS_DIR"] = str(workdir / "weights")

    import torch

    from axs_lib.demo.tiny_weights import write_tiny_weights
    from axs_lib.weights.catalog import KNOWN_MODELS, PRITHVI_600M, TERRAMIND_LARGE, Family

    names = [PRITHVI_600M, TERRAMIND_LARGE, *(n for n, s in KNOWN_MODELS.items() if s.family is Family.TERRAMIND_TOKENIZER)]
    weights = write_tiny_weights(workdir / "weights", names=names)
    from axs_lib.models import build_prithvi_600
    from axs_lib.scenes import outputs, tasks

    torch.manual_seed(0)
    model = build_prithvi_600(num_classes=3, img_size=224, checkpoint_path=weights[PRITHVI_600M])
    folder = model.save_pretrained(workdir / "segmenter", include_base=True)
    optical, sar = workdir / "optical.tif", workdir / "sar.tif"
    write_scene(optical, args.size, count=6, noise=lambda rng, shape: rng.uniform(0, 3000, shape))
    write_scene(sar, args.size, count=2)

    record: dict = {}
    outputs.write_cog = timed(record, "cog", outputs.write_cog)
    outputs.PartialOutput.assemble = timed(record, "assembly", outputs.PartialOutput.assemble)
    cases = {
        "segment --probabilities": lambda out: tasks.segment_scene(folder, optical, out, probabilities=True, batch_size=8),
        "sar-to-optical": lambda out: tasks.sar_to_optical_scene(sar, out, timesteps=2, batch_size=8),
        "sar-to-optical --float": lambda out: tasks.sar_to_optical_scene(sar, out, timesteps=2, batch_size=8, as_float=True),
    }
    print("| command (tiny model) | size | wall s | COG copy s | COG share | assembly s | assembly share |")
    print("|---|---|---|---|---|---|---|")
    for index, (name, run) in enumerate(cases.items()):
        record.clear()
        started = time.perf_counter()
        run(workdir / f"out{index}.tif")
        wall = time.perf_counter() - started
        print(f"| {name} | {args.size}² | {wall:.1f} | {record['cog']:.1f} | {record['cog'] / wall:.1%} | "
              f"{record['assembly']:.1f} | {record['assembly'] / wall:.1%} |", flush=True)
    print(json.dumps({"workdir": str(workdir)}))


if __name__ == "__main__":
    main()
