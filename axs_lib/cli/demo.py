"""``axs-scenes demo``: every scene command, run on a synthetic scene with tiny random-weight models.

Nothing is downloaded: the demo writes a synthetic scene (:mod:`axs_lib.demo.synthetic_scene`), publishes it
as a catalog would (per-band COGs and STAC items in Earth Search's conventions, :mod:`axs_lib.demo.stac_items`)
and serves them from a local HTTP server on 127.0.0.1 that answers Range requests, so the commands read the
scene the way they read real catalogs. It writes tiny checkpoints of TerraMind, its S2L2A tokenizer and Prithvi
in the published layouts (:mod:`axs_lib.demo.tiny_weights`, the same files the test suite loads) and a tiny
Prithvi segmentation model saved with ``save_pretrained``, then runs each command of :func:`demo_steps` through
the command line's own entry point, printing it first: segment, sar-to-optical, pipeline, then evaluate against
the scene's references.
"""

from __future__ import annotations

import argparse
import shlex
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..demo.catalog_server import CatalogServer
from ..demo.stac_items import publish_scene
from ..demo.synthetic_scene import CLASS_NAMES, SyntheticScene, write_synthetic_scene
from ..errors import DemoStepError
from ..weights.catalog import PRITHVI_600M, TERRAMIND_LARGE, TERRAMIND_MODALITIES

TILE = 112
"""A multiple of TerraMind's (16) and Prithvi's (14) patch sizes, as the pipeline needs."""
TIMESTEPS = 6
WINDOWS = ["--tile", str(TILE), "--overlap", "16", "--quiet", "--overwrite"]
RANDOM_WEIGHTS_NOTICE = (
    "The models' weights are RANDOM (tiny models made up for this demo): the outputs show what each command "
    "writes, not what TerraMind or Prithvi predict. Get the real weights with axs-setup."
)


def run(args: argparse.Namespace, run_command: Callable[[list[str]], int]) -> list[Path]:
    """Make a synthetic scene and tiny random-weight models in --folder (default: a new temporary
    folder), run segment, sar-to-optical and pipeline on them, score two outputs against the scene's
    references with evaluate, and say where everything is."""
    folder = Path(tempfile.mkdtemp(prefix="axs-demo-")) if args.folder is None else args.folder
    scene = write_synthetic_scene(folder / "scene")
    published = publish_scene(scene, folder / "catalog")
    weights, segmenter = write_tiny_models(folder / "weights", folder / "model")
    outputs = folder / "outputs"
    outputs.mkdir(exist_ok=True)
    print(f"Demo in {folder}: a synthetic {len(CLASS_NAMES)}-class scene in scene/, published as STAC items in "
          "catalog/, tiny models in weights/ and model/.")
    with CatalogServer(folder) as server:
        items = StacScene(*(server.url(str(path.relative_to(folder))) for path in (published.sentinel2, published.sentinel1)))
        print(f"Serving catalog/ at {server.root} (HTTP Range requests, as a catalog serves COGs).")
        for argv in demo_steps(scene, items, weights, segmenter, outputs):
            print("$ axs-scenes " + shlex.join(argv), flush=True)
            code = run_command(argv)
            if code != 0:
                raise DemoStepError(argv, code)
    print(f"Outputs in {outputs}: " + ", ".join(sorted(path.name for path in outputs.iterdir())))
    print(RANDOM_WEIGHTS_NOTICE)
    return [folder]


@dataclass(frozen=True)
class StacScene:
    """The URLs of the served items: the Sentinel-2 L2A item and the Sentinel-1 item."""

    sentinel2: str
    sentinel1: str


def demo_steps(scene: SyntheticScene, items: StacScene, weights: Path, segmenter: Path, outputs: Path) -> list[list[str]]:
    """The command lines the demo runs, in order: each reads the served STAC items; labels are a local raster."""
    model = ["--model", str(segmenter)]
    generator = ["--checkpoint-path", str(weights / TERRAMIND_LARGE), "--timesteps", str(TIMESTEPS)]
    return [
        ["segment", items.sentinel2, str(outputs / "classes_from_s2.tif"), *model, *WINDOWS],
        ["sar-to-optical", items.sentinel1, str(outputs / "optical.tif"), *generator, *WINDOWS],
        ["pipeline", items.sentinel1, str(outputs / "classes_from_sar.tif"), "--optical",
         str(outputs / "optical_pipeline.tif"), *model, *generator, *WINDOWS],
        ["evaluate", str(outputs / "optical.tif"), items.sentinel2, "--kind", "optical", "--quiet"],
        ["evaluate", str(outputs / "classes_from_s2.tif"), str(scene.labels), "--kind", "classes",
         "--num-classes", str(len(CLASS_NAMES)), "--quiet"],
    ]


def write_tiny_models(weights: Path, model: Path) -> tuple[Path, Path]:
    """Tiny random checkpoints of TerraMind, its S2L2A tokenizer and Prithvi in ``weights``, and a tiny
    Prithvi segmentation model (``len(CLASS_NAMES)`` classes, base included) saved in ``model``."""
    from ..models import build_prithvi_600  # imports TerraTorch: keep `axs-scenes --help` fast
    from ..demo.tiny_weights import write_tiny_weights

    with torch.random.fork_rng():
        torch.manual_seed(0)
        write_tiny_weights(weights, names=[TERRAMIND_LARGE, TERRAMIND_MODALITIES["S2L2A"].tokenizer, PRITHVI_600M])
        segmenter = build_prithvi_600(num_classes=len(CLASS_NAMES), img_size=TILE, checkpoint_path=weights / PRITHVI_600M)
        return weights, segmenter.save_pretrained(model / "segmenter", include_base=True)
