"""``axs-scenes demo``: a new user's first run, with no weights, on a synthetic scene."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image

from axs_lib.cli import demo
from axs_lib.demo.synthetic_scene import CLASS_NAMES, write_synthetic_scene
from axs_lib.errors import DemoStepError
from axs_lib.scenes import bands as B
from helpers import process_environment


def grid(path: Path) -> tuple:
    with rasterio.open(path) as src:
        return src.crs, src.transform, src.width, src.height


def test_the_synthetic_scene_is_one_grid_whose_references_agree_with_its_inputs(work):
    scene = write_synthetic_scene(work, size=40)
    assert len({grid(path) for path in (scene.sar, scene.hls, scene.optical_reference, scene.labels)}) == 1
    with rasterio.open(scene.hls) as hls, rasterio.open(scene.optical_reference) as reference:
        assert hls.descriptions == B.PRITHVI_BANDS and reference.count == len(B.S2L2A_BANDS)
        assert np.array_equal(hls.read(), reference.read([index + 1 for index in B.PRITHVI_FROM_S2L2A]))
    with rasterio.open(scene.sar) as sar, rasterio.open(scene.labels) as labels:
        assert sar.descriptions == B.S1GRD_BANDS and sar.dtypes[0] == "float32"
        assert set(np.unique(labels.read())) <= set(range(len(CLASS_NAMES)))
    assert sorted(path.name for path in work.iterdir()) == sorted(
        path.name for path in (scene.sar, scene.hls, scene.optical_reference, scene.labels)
    )


def test_the_demo_fine_tunes_saves_reloads_segments_and_scores_from_served_items_and_shows_one_page(tmp_path):
    folder = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "axs_lib.cli.scenes", "demo", "--folder", str(folder), "--train-steps", "20",
         "--train-seconds", "600"],  # a fixed number of steps: the same model on a fast or a busy machine
        env=process_environment(HF_HUB_OFFLINE="1"), capture_output=True, text=True, timeout=900,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    commands = re.findall(r"^\$ axs-scenes (\S+)", result.stdout, flags=re.MULTILINE)
    assert commands == ["segment", "segment", "sar-to-optical", "pipeline", "evaluate", "evaluate", "evaluate"]
    assert re.search(r"^\$ axs-scenes segment http://127\.0\.0\.1:\d+/catalog/sentinel2_l2a\.json ", result.stdout, re.MULTILINE)
    assert "PSNR" in result.stdout and "mIoU" in result.stdout  # the scores, printed as tables
    written = [Path(path) for line in re.findall(r"^wrote (.+) in [\d.]+ s$", result.stdout, flags=re.MULTILINE)
               for path in line.split(" and ")]
    outputs = [path for path in written if path != folder]
    assert sorted(outputs) == sorted((folder / "outputs").iterdir())
    scene_grid = grid(folder / "scene" / "hls.tif")
    assert all(grid(path) == scene_grid for path in outputs if path.suffix == ".tif")
    assert "weights are RANDOM" in result.stdout
    assert not [path for path in folder.rglob("*") if "partial" in path.name]

    scores = json.loads((folder / "demo" / "scores.json").read_text())
    assert scores["fine_tuned_miou"] > scores["untrained_miou"] + 0.2, scores
    assert f"fine-tuned {scores['fine_tuned_miou']:.3f}" in result.stdout

    page = (folder / "demo" / "index.html").read_text()
    shown = re.findall(r'<img src="([^"]+)"', page)
    assert len(shown) == 5 and all((folder / "demo" / image).is_file() for image in shown)
    assert "outputs/classes_from_s2.png" in " ".join(shown) and "axs-scenes segment" in page
    with Image.open(folder / "demo" / "index.png") as picture:
        assert picture.width > 5 * 256
    assert f"The page: {folder / 'demo' / 'index.html'}" in result.stdout

    reload = subprocess.run(
        [sys.executable, "-c", "import sys; from axs_lib.models import PrithviSegmentation; "
         "m = PrithviSegmentation.from_pretrained(sys.argv[1]); print(m.num_classes)", str(folder / "model" / "fine-tuned")],
        env=process_environment(HF_HUB_OFFLINE="1", AXS_WEIGHTS_DIR=None), cwd=tmp_path, capture_output=True, text=True,
        timeout=300,
    )
    assert reload.returncode == 0 and reload.stdout.strip() == str(len(CLASS_NAMES)), reload.stderr[-2000:]


def test_a_failing_step_stops_the_demo_with_an_error_naming_the_command(work, capsys):
    ran = []

    def failing(argv: list[str]) -> int:
        ran.append(argv[0])
        return 2

    with pytest.raises(DemoStepError, match=r"`axs-scenes segment .*` failed with exit code 2"):
        demo.run(argparse.Namespace(folder=work, train_seconds=0.1), run_command=failing)
    assert ran == ["segment"]
    assert "RANDOM" not in capsys.readouterr().out
