"""Small assertions shared by the tests."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from axs_lib.weights.reading import read_state_dict


def assert_parameters_equal(model: nn.Module, expected: dict[str, torch.Tensor]) -> int:
    """Every parameter named in ``expected`` equals it exactly; returns how many were compared."""
    parameters = dict(model.named_parameters())
    for name, tensor in expected.items():
        assert name in parameters, f"{name} is not a parameter of the model"
        assert torch.equal(parameters[name].detach().cpu().to(tensor.dtype), tensor), f"{name} differs from the checkpoint"
    return len(expected)


def checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint, copied out of the memory map so the file may be rewritten."""
    return {key: value.clone() for key, value in read_state_dict(path).items()}


def trainable(model: nn.Module) -> dict[str, int]:
    return {name: p.numel() for name, p in model.named_parameters() if p.requires_grad}
