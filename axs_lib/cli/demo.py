"""``axs-scenes demo``: a model's life on a synthetic scene, with tiny models and no network.

Nothing is downloaded: the demo writes a synthetic scene (:mod:`axs_lib.demo.synthetic_scene`), publishes it
as a catalog would (per-band COGs and STAC items in Earth Search's conventions, :mod:`axs_lib.demo.stac_items`)
and serves them from a local HTTP server on 127.0.0.1 that answers Range requests, so the commands read the
scene the way they read real catalogs. It writes tiny checkpoints of TerraMind, its S2L2A tokenizer and Prithvi
in the published layouts (:mod:`axs_lib.demo.tiny_weights`, the same files the test suite loads), fine-tunes a
tiny Prithvi segmentation model on the scene's labels (:mod:`axs_lib.demo.fine_tune`) and saves it with
``save_pretrained``, then runs each command of :func:`demo_steps` through the command line's own entry point,
printing it first: segment (untrained and fine-tuned), sar-to-optical, pipeline, then evaluate against the
scene's references; and writes one page of it all (:mod:`axs_lib.demo.page`).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..demo.catalog_server import CatalogServer
from ..demo.fine_tune import fine_tune
from ..demo.page import Panel, write_page
from ..demo.stac_items import publish_scene
from ..demo.synthetic_scene import CLASS_NAMES, SyntheticScene, write_synthetic_scene
from ..errors import DemoStepError
from ..scenes import bands as B
from ..scenes.evaluation import evaluate_scene
from ..scenes.quicklook import write_class_quicklook, write_quicklook
from ..weights.catalog import PRITHVI_600M, TERRAMIND_LARGE, TERRAMIND_MODALITIES

TILE = 112
"""A multiple of TerraMind's (16) and Prithvi's (14) patch sizes, as the pipeline needs."""
TIMESTEPS = 6
TRAIN_SECONDS = 30.0
TRAIN_STEPS = 400
WINDOWS = ["--tile", str(TILE), "--overlap", "16", "--quiet", "--overwrite"]
RANDOM_WEIGHTS_NOTICE = (
    "The foundation models' weights are RANDOM (tiny models made up for this demo): the generated optical image "
    "shows what sar-to-optical writes, not what TerraMind predicts, and the segmentation model learnt only from "
    "this scene. Get the real weights with axs-setup."
)


def run(args: argparse.Namespace, run_command: Callable[[list[str]], int]) -> list[Path]:
    """The life of a model on a synthetic scene, in --folder (default: a new temporary folder): tiny
    random-weight foundation models; a segmentation model fine-tuned on the scene's labels (LoRA, about 30 s),
    saved and reloaded by the commands; segment, sar-to-optical and pipeline on the scene served as STAC items;
    evaluate of both the untrained and the fine-tuned model; and one page (demo/index.html and index.png) that
    shows it all."""
    temporary = args.folder is None
    folder = Path(tempfile.mkdtemp(prefix="axs-demo-")) if temporary else args.folder
    train_seconds = getattr(args, "train_seconds", TRAIN_SECONDS)
    train_steps = getattr(args, "train_steps", TRAIN_STEPS)
    scene = write_synthetic_scene(folder / "scene")
    published = publish_scene(scene, folder / "catalog")
    weights, untrained, model = write_tiny_models(folder / "weights", folder / "model")
    print(f"Demo in {folder}: a synthetic {len(CLASS_NAMES)}-class scene in scene/, published as STAC items in "
          "catalog/, tiny models in weights/.")
    training = fine_tune(model, scene, seconds=train_seconds, max_steps=train_steps, tile=TILE)
    fine_tuned = model.save_pretrained(folder / "model" / "fine-tuned", include_base=True)
    print(f"Fine-tuned a segmentation model on the scene's labels (LoRA adapters, decoder and head): {training.steps} "
          f"steps in {training.seconds:.0f} s, loss {training.first_loss:.2f} -> {training.last_loss:.2f}; saved to "
          f"{fine_tuned} (the untrained one to {untrained}).")
    outputs = folder / "outputs"
    outputs.mkdir(exist_ok=True)
    with CatalogServer(folder) as server:
        items = StacScene(*(server.url(str(path.relative_to(folder))) for path in (published.sentinel2, published.sentinel1)))
        print(f"Serving catalog/ at {server.root} (HTTP Range requests, as a catalog serves COGs).")
        steps = demo_steps(scene, items, weights, DemoModels(untrained, fine_tuned), outputs)
        for argv in steps:
            print("$ axs-scenes " + shlex.join(argv), flush=True)
            code = run_command(argv)
            if code != 0:
                raise DemoStepError(argv, code)
        scores = _scores(scene, outputs, items)
    page, picture = _page(folder, scene, outputs, steps, scores, training)
    print(f"Outputs in {outputs}: " + ", ".join(sorted(path.name for path in outputs.iterdir())))
    print(f"mIoU against the labels: untrained {scores['untrained_miou']:.3f}, fine-tuned {scores['fine_tuned_miou']:.3f} "
          f"(chance is about {1 / len(CLASS_NAMES):.2f})")
    print(f"The page: {page} (and {picture})")
    print(RANDOM_WEIGHTS_NOTICE)
    if temporary:
        size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
        print(f"Everything is in {folder} ({size / 2**20:.0f} MiB); remove it with: rm -r {shlex.quote(str(folder))}")
    return [folder]


@dataclass(frozen=True)
class StacScene:
    """The URLs of the served items: the Sentinel-2 L2A item and the Sentinel-1 item."""

    sentinel2: str
    sentinel1: str


@dataclass(frozen=True)
class DemoModels:
    """The saved segmentation models: before and after fine-tuning."""

    untrained: Path
    fine_tuned: Path


def demo_steps(scene: SyntheticScene, items: StacScene, weights: Path, models: DemoModels, outputs: Path) -> list[list[str]]:
    """The command lines the demo runs, in order: each reads the served STAC items; labels are a local raster."""
    generator = ["--checkpoint-path", str(weights / TERRAMIND_LARGE), "--timesteps", str(TIMESTEPS)]
    classes = ["--kind", "classes", "--num-classes", str(len(CLASS_NAMES)), "--quiet"]
    return [
        ["segment", items.sentinel2, str(outputs / "classes_untrained.tif"), "--model", str(models.untrained), *WINDOWS],
        ["segment", items.sentinel2, str(outputs / "classes_from_s2.tif"), "--model", str(models.fine_tuned),
         "--quicklook", str(outputs / "classes_from_s2.png"), *WINDOWS],
        ["sar-to-optical", items.sentinel1, str(outputs / "optical.tif"), *generator, *WINDOWS],
        ["pipeline", items.sentinel1, str(outputs / "classes_from_sar.tif"), "--optical",
         str(outputs / "optical_pipeline.tif"), "--model", str(models.fine_tuned), *generator, *WINDOWS],
        ["evaluate", str(outputs / "optical.tif"), items.sentinel2, "--kind", "optical", "--quiet"],
        ["evaluate", str(outputs / "classes_untrained.tif"), str(scene.labels), *classes],
        ["evaluate", str(outputs / "classes_from_s2.tif"), str(scene.labels), *classes],
    ]


def _scores(scene: SyntheticScene, outputs: Path, items: StacScene) -> dict[str, float]:
    """The numbers the page shows (the evaluate steps printed the full tables)."""
    def classes(name: str) -> dict:
        return evaluate_scene(outputs / name, scene.labels, "classes", num_classes=len(CLASS_NAMES))

    optical = evaluate_scene(outputs / "optical.tif", items.sentinel2, "optical")
    untrained, fine_tuned = classes("classes_untrained.tif"), classes("classes_from_s2.tif")
    return {
        "untrained_miou": untrained["miou"], "fine_tuned_miou": fine_tuned["miou"],
        "fine_tuned_accuracy": fine_tuned["overall_accuracy"], "optical_psnr_db": optical["overall"]["psnr_db"],
    }


def _page(folder: Path, scene: SyntheticScene, outputs: Path, steps: list[list[str]], scores: dict, training) -> tuple[Path, Path]:
    pictures = folder / "demo"
    pictures.mkdir(exist_ok=True)
    write_quicklook(scene.sar, pictures / "sar_input.png", (0, 1, 0))
    write_quicklook(scene.optical_reference, pictures / "optical_reference.png", B.RGB_BANDS)
    write_class_quicklook(scene.labels, pictures / "labels.png")
    command = {Path(argv[2]).name: "axs-scenes " + shlex.join(argv) for argv in steps if argv[0] != "evaluate"}
    panels = [
        Panel("Sentinel-1 input (VV, VH, VV)", pictures / "sar_input.png", "synthetic scene, served as " + Path(steps[2][1]).name),
        Panel("Sentinel-2 reference (RGB)", pictures / "optical_reference.png", "synthetic scene, served as " + Path(steps[0][1]).name),
        Panel("Generated optical (RGB)", outputs / "optical.png", command["optical.tif"]),
        Panel("Labels", pictures / "labels.png", "synthetic scene: " + ", ".join(CLASS_NAMES)),
        Panel("Prediction, fine-tuned model", outputs / "classes_from_s2.png", command["classes_from_s2.tif"]),
    ]
    lines = [
        f"Segmentation mIoU: untrained {scores['untrained_miou']:.3f}, fine-tuned {scores['fine_tuned_miou']:.3f} "
        f"(accuracy {scores['fine_tuned_accuracy']:.3f}; {training.steps} steps, {training.seconds:.0f} s)",
        f"Generated optical vs the Sentinel-2 item: PSNR {scores['optical_psnr_db']:.2f} dB (random TerraMind weights)",
    ]
    _atomic_json(pictures / "scores.json", {**scores, "training_steps": training.steps})
    return write_page(pictures, "axs_lib demo: a model's life on a synthetic scene", panels, lines, [RANDOM_WEIGHTS_NOTICE])


def _atomic_json(path: Path, values: dict) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(values, indent=1))
    os.replace(partial, path)


def write_tiny_models(weights: Path, models: Path) -> tuple[Path, Path, nn.Module]:
    """Tiny random checkpoints of TerraMind, its S2L2A tokenizer and Prithvi in ``weights``; a tiny Prithvi
    segmentation model (``len(CLASS_NAMES)`` classes, LoRA as the factory builds it, base included) saved untrained
    in ``models/untrained``; and that model, to fine-tune."""
    from ..models import build_prithvi_600  # imports TerraTorch: keep `axs-scenes --help` fast
    from ..demo.tiny_weights import write_tiny_weights

    with torch.random.fork_rng():
        torch.manual_seed(0)
        write_tiny_weights(weights, names=[TERRAMIND_LARGE, TERRAMIND_MODALITIES["S2L2A"].tokenizer, PRITHVI_600M])
        segmenter = build_prithvi_600(num_classes=len(CLASS_NAMES), img_size=TILE, checkpoint_path=weights / PRITHVI_600M)
        return weights, segmenter.save_pretrained(models / "untrained", include_base=True), segmenter
