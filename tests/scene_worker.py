"""A fresh process streaming a noisy convolution model over a raster: for the torchrun and resume tests.

    python scene_worker.py IN.tif OUT.tif [--sleep SECONDS] [--batch-size N]

The model's weights are seeded, and it adds ``torch.randn`` noise, so the output shows that generation noise
is drawn per window (``seed=7``), whatever the batches, resumption or number of processes.
"""

import argparse
import time

import torch
from torch import nn

from axs_lib.scenes import stream_model


class NoisyConvolution(nn.Module):
    def __init__(self, sleep: float):
        super().__init__()
        self.convolution = nn.Conv2d(2, 3, 5, padding=2)
        self.sleep = sleep

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        time.sleep(self.sleep)
        return self.convolution(images) + 0.01 * torch.randn(images.shape[0], 3, *images.shape[2:])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = NoisyConvolution(args.sleep).eval()
    stream_model(model, args.input, args.output, tile=32, overlap=8, batch_size=args.batch_size, seed=7)
