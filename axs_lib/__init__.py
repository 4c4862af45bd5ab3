"""Axion-Sat model layer. The models live in :mod:`axs_lib.models`."""

from __future__ import annotations

__version__ = "0.1.0"

_MODELS_API = {
    "build_terramind_generator",
    "build_terramind_backbone",
    "build_prithvi_600",
    "build_prithvi_600_backbone",
    "register_all_models",
}


def __getattr__(name: str):
    if name in _MODELS_API:
        from .errors import WrongModuleImportError

        raise WrongModuleImportError(name, __name__, f"{__name__}.models")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
