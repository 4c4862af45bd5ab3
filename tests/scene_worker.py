"""A fresh process streaming a model over a raster: for the torchrun, resume, lock and fault tests.

    python scene_worker.py IN.tif OUT.tif [--sleep SECONDS] [--batch-size N] [--overwrite] [--model wide]
                           [--file-size-limit BYTES] [--die-before-cleanup]

The default model is a seeded convolution that adds ``torch.randn`` noise, so the output shows that generation
noise is drawn per window (``seed=7``), whatever the batches, resumption or number of processes. ``--model wide``
is a noiseless convolution run in batches, whose float results depend on the batch size (oneDNN picks another
algorithm for one window than for several). ``--file-size-limit`` sets ``RLIMIT_FSIZE`` once the model is
built, so writing a larger file fails as on a full disk. ``--die-before-cleanup`` kills the process (SIGKILL)
right after the final rename, before the partial folder is removed. A library error is one line and exit
code 2 (bad input) or 1, as in the commands.
"""

import argparse
import os
import resource
import shutil
import signal
import sys
import time
from pathlib import Path

import torch
from torch import nn

from axs_lib.errors import AxsModelError
from axs_lib.scenes import stream_model


class NoisyConvolution(nn.Module):
    def __init__(self, sleep: float):
        super().__init__()
        self.convolution = nn.Conv2d(2, 3, 5, padding=2)
        self.sleep = sleep

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        time.sleep(self.sleep)
        return self.convolution(images) + 0.01 * torch.randn(images.shape[0], 3, *images.shape[2:])


def wide_convolution() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(2, 32, 3, padding=1), nn.Tanh(), nn.Conv2d(32, 32, 3, padding=1), nn.Tanh(), nn.Conv2d(32, 3, 3, padding=1)
    )


def die_when_removing(folder: Path) -> None:
    """Make ``shutil.rmtree(folder)`` kill this process instead; other folders are removed as usual."""
    remove = shutil.rmtree

    def rmtree(path, *args, **kwargs) -> None:
        if Path(path) == folder:
            os.kill(os.getpid(), signal.SIGKILL)
        remove(path, *args, **kwargs)

    shutil.rmtree = rmtree


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--model", choices=("noisy", "wide"), default="noisy")
    parser.add_argument("--file-size-limit", type=int)
    parser.add_argument("--die-before-cleanup", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = (NoisyConvolution(args.sleep) if args.model == "noisy" else wide_convolution()).eval()
    if args.file_size_limit is not None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (args.file_size_limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    if args.die_before_cleanup:
        die_when_removing(Path(args.output + ".partial"))
    try:
        stream_model(
            model, args.input, args.output, tile=32, overlap=8, batch_size=args.batch_size,
            seed=7 if args.model == "noisy" else None, overwrite=args.overwrite,
        )
    except AxsModelError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2 if isinstance(error, (ValueError, FileExistsError)) else 1)
