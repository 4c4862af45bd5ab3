"""Small assertions shared by the tests."""

from __future__ import annotations

import os
import subprocess
import sys
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


def eval_modules_in_training_forwards(model: nn.Module) -> list[list[str]]:
    """Record, at each forward of ``model`` that records gradients, the names of its submodules in eval mode."""
    seen: list[list[str]] = []

    def record(module: nn.Module, args: tuple) -> None:
        if torch.is_grad_enabled():
            seen.append([name for name, submodule in module.named_modules() if not submodule.training])

    model.register_forward_pre_hook(record)
    return seen


def fit_two_steps(task, samples: list[dict]) -> None:
    """Lightning's ``Trainer.fit`` for two steps of batch 2 on the CPU, quietly, without validation."""
    import lightning.pytorch as pl

    trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(task, train_dataloaders=torch.utils.data.DataLoader(samples, batch_size=2))


def process_environment(**changes: str | None) -> dict[str, str]:
    """This process's environment for a fresh process, changed by ``changes`` (``None`` removes a variable), with
    the package under test first on ``PYTHONPATH``: the new process imports this copy of ``axs_lib``, whatever
    its working folder and whatever else is installed."""
    import axs_lib

    environment = dict(os.environ)
    package_root = str(Path(axs_lib.__file__).resolve().parents[1])
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    for name, value in changes.items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    return environment


def run_benchmark(script: str, *arguments: str) -> subprocess.CompletedProcess:
    """Run ``benchmarks/<script>`` in a fresh process, offline; fail with its output's tail if it fails."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / script
    completed = subprocess.run(
        [sys.executable, str(path), *arguments],
        env=process_environment(HF_HUB_OFFLINE="1"), capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed
