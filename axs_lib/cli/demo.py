"""``axs-scenes demo``: every scene command, run on a synthetic scene with tiny random-weight models.

Nothing is downloaded: the demo writes a synthetic scene (:mod:`.synthetic_scene`), tiny checkpoints of
TerraMind, its S2L2A tokenizer and Prithvi in the published layouts (:mod:`.tiny_weights`, the same files the
test suite loads) and a tiny Prithvi segmentation model saved with ``save_pretrained``, then runs each
command of :func:`demo_steps` through the command line's own entry point, printing it first: segment,
sar-to-optical, pipeline, then evaluate against the scene's references.
"""

from __future__ import annotations

import argparse
import shlex
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from ..errors import DemoStepError
from ..weights.catalog import PRITHVI_600M, TERRAMIND_LARGE, TERRAMIND_MODALITIES
from ..demo.synthetic_scene import CLASS_NAMES, SyntheticScene, write_synthetic_scene

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
    weights, segmenter = write_tiny_models(folder / "weights", folder / "model")
    outputs = folder / "outputs"
    outputs.mkdir(exist_ok=True)
    print(f"Demo in {folder}: a synthetic {len(CLASS_NAMES)}-class scene in scene/, tiny models in weights/ and model/.")
    for argv in demo_steps(scene, weights, segmenter, outputs):
        print("$ axs-scenes " + shlex.join(argv), flush=True)
        code = run_command(argv)
        if code != 0:
            raise DemoStepError(argv, code)
    print(f"Outputs in {outputs}: " + ", ".join(sorted(path.name for path in outputs.iterdir())))
    print(RANDOM_WEIGHTS_NOTICE)
    return [folder]


def demo_steps(scene: SyntheticScene, weights: Path, segmenter: Path, outputs: Path) -> list[list[str]]:
    """The command lines the demo runs, in order."""
    model = ["--model", str(segmenter)]
    generator = ["--checkpoint-path", str(weights / TERRAMIND_LARGE), "--timesteps", str(TIMESTEPS)]
    return [
        ["segment", str(scene.hls), str(outputs / "classes_from_hls.tif"), *model, *WINDOWS],
        ["sar-to-optical", str(scene.sar), str(outputs / "optical.tif"), *generator, *WINDOWS],
        ["pipeline", str(scene.sar), str(outputs / "classes_from_sar.tif"), "--optical",
         str(outputs / "optical_pipeline.tif"), *model, *generator, *WINDOWS],
        ["evaluate", str(outputs / "optical.tif"), str(scene.optical_reference), "--kind", "optical", "--quiet"],
        ["evaluate", str(outputs / "classes_from_hls.tif"), str(scene.labels), "--kind", "classes",
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
