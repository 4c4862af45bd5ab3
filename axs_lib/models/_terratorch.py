"""The one place that imports TerraTorch, so a missing install becomes one clear error."""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import TerraTorchUnavailableError


def terratorch_module(name: str) -> ModuleType:
    """Import ``terratorch.<name>``; raises :class:`TerraTorchUnavailableError` when it cannot be imported."""
    try:
        return importlib.import_module(f"terratorch.{name}")
    except ImportError as error:
        raise TerraTorchUnavailableError(error) from error


def registry() -> ModuleType:
    return terratorch_module("registry")
