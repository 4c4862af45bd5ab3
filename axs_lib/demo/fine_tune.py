"""Fine-tuning a segmentation model on the synthetic scene's labels, for a bounded time: the demo's stand-in for
a real fine-tuning run (which users run with TerraTorch's YAML and Lightning, docs/fine_tuning.md).

Random crops of the scene's six HLS-like bands, standardised with the model's own pretraining statistics as the
scene commands do, train whatever the model leaves trainable (with LoRA: the adapters, the decoder and the head)
with AdamW and cross-entropy.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import rasterio
import torch
from torch import nn

from .synthetic_scene import LABEL_NODATA, SyntheticScene

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingRun:
    """What a fine-tuning run did: steps, seconds, and the mean loss of its first and last ten steps."""

    steps: int
    seconds: float
    first_loss: float
    last_loss: float


def fine_tune(
    model: nn.Module,
    scene: SyntheticScene,
    *,
    seconds: float = 30.0,
    max_steps: int = 400,
    tile: int = 112,
    batch_size: int = 4,
    learning_rate: float = 3e-3,
    seed: int = 0,
) -> TrainingRun:
    """Train ``model`` (a segmentation model with ``input_statistics``) on ``scene`` for at most ``seconds`` or
    ``max_steps``, whichever ends first; the model is left in eval mode."""
    images, labels = _scene_arrays(scene, model)
    generator = np.random.default_rng(seed)
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=learning_rate)
    loss_function = nn.CrossEntropyLoss(ignore_index=LABEL_NODATA)
    losses: list[float] = []
    model.train()
    started = time.perf_counter()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        while len(losses) < max_steps and time.perf_counter() - started < seconds:
            batch, target = _crops(images, labels, tile, batch_size, generator)
            optimiser.zero_grad()
            output = model(batch)
            loss = loss_function(getattr(output, "output", output), target)
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
    model.eval()
    run = TrainingRun(len(losses), time.perf_counter() - started, float(np.mean(losses[:10])), float(np.mean(losses[-10:])))
    logger.info("fine-tuned %d steps in %.1f s: loss %.3f -> %.3f", run.steps, run.seconds, run.first_loss, run.last_loss)
    return run


def _scene_arrays(scene: SyntheticScene, model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    with rasterio.open(scene.hls) as source:
        reflectance = source.read().astype(np.float32)
    with rasterio.open(scene.labels) as source:
        labels = source.read(1).astype(np.int64)
    mean, std = model.input_statistics
    standardised = (reflectance - np.array(mean, dtype=np.float32)[:, None, None]) / np.array(std, dtype=np.float32)[:, None, None]
    return torch.from_numpy(standardised), torch.from_numpy(labels)


def _crops(images: torch.Tensor, labels: torch.Tensor, tile: int, count: int, generator: np.random.Generator):
    height, width = labels.shape
    rows = generator.integers(0, height - tile + 1, count)
    cols = generator.integers(0, width - tile + 1, count)
    batch = torch.stack([images[:, row : row + tile, col : col + tile] for row, col in zip(rows, cols)])
    target = torch.stack([labels[row : row + tile, col : col + tile] for row, col in zip(rows, cols)])
    return batch, target
