"""The one place that imports TerraTorch, so a missing install becomes one clear error and the import
stays off the network."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from ..errors import TerraTorchUnavailableError

os.environ.setdefault("LIGHTLY_DID_VERSION_CHECK", "True")
"""TerraTorch imports torchgeo, which imports lightly, whose import otherwise starts a version check over the
network in a background thread."""


def terratorch_module(name: str) -> ModuleType:
    """Import ``terratorch.<name>``; raises :class:`TerraTorchUnavailableError` when it cannot be imported."""
    try:
        return importlib.import_module(f"terratorch.{name}")
    except ImportError as error:
        raise TerraTorchUnavailableError(error) from error


def registry() -> ModuleType:
    return terratorch_module("registry")


def needing_terratorch(name: str) -> ModuleType:
    """Import ``axs_lib.models.<name>``, a module of this package that imports TerraTorch at its top; raises
    :class:`TerraTorchUnavailableError` when TerraTorch cannot be imported."""
    try:
        return importlib.import_module(f"{__package__}.{name}")
    except ImportError as error:
        raise TerraTorchUnavailableError(error) from error
