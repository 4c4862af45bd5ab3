"""How an output was made: the command, its options, the models and weights used, the software versions.

:meth:`Provenance.tags` gives the GeoTIFF dataset tags every scene output carries (``gdalinfo`` or
``rasterio``'s ``tags()`` show them); the STAC item (:mod:`axs_lib.scenes.stac`) repeats them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

from .. import __version__

TAG_PREFIX = "AXS_"


@dataclass(frozen=True)
class ModelUse:
    """One model a command ran.

    Attributes:
        role: ``"segmentation"`` or ``"generator"``.
        catalog_name: the published model it is built on (``Prithvi-EO-2.0-600M``, ``TerraMind-1.0-large``).
        weights: the fingerprint of the weights actually used
            (:func:`axs_lib.weights.fingerprint.module_fingerprint`).
        source: where the weights were loaded from (a saved model's path), or where they are published.
    """

    role: str
    catalog_name: str
    weights: str
    source: str


@dataclass(frozen=True)
class Provenance:
    """The record of one run that every output of the run carries.

    Attributes:
        command: the ``axs-scenes`` command.
        options: its arguments and options, as JSON values.
        models: the models it ran.
        generation: ``{"seed": ..., "timesteps": ...}`` for commands that generate, else empty.
        inputs: the source items and how each input band was read and converted
            (:meth:`axs_lib.scenes.inputs.SceneInput.describe`; hrefs without query strings).
    """

    command: str
    options: Mapping[str, object]
    models: Sequence[ModelUse]
    generation: Mapping[str, int] = field(default_factory=dict)
    inputs: Mapping[str, object] = field(default_factory=dict)

    def versions(self) -> dict[str, str]:
        return {"axs_lib": __version__, "terratorch": _terratorch_version()}

    def tags(self) -> dict[str, str]:
        """GeoTIFF dataset tags: ``AXS_COMMAND``, ``AXS_OPTIONS`` (JSON), per model role ``AXS_<ROLE>_MODEL``,
        ``_WEIGHTS`` and ``_SOURCE``, ``AXS_SEED`` and ``AXS_TIMESTEPS`` when generating, ``AXS_INPUT_ITEMS``
        and ``AXS_INPUT_BANDS`` (JSON: the source items, each band's href, conversion and resampling),
        ``AXS_LIB_VERSION``, ``TERRATORCH_VERSION`` and ``TIFFTAG_SOFTWARE``."""
        versions = self.versions()
        tags = {
            f"{TAG_PREFIX}COMMAND": self.command,
            f"{TAG_PREFIX}OPTIONS": json.dumps(self.options, sort_keys=True),
            f"{TAG_PREFIX}LIB_VERSION": versions["axs_lib"],
            "TERRATORCH_VERSION": versions["terratorch"],
            "TIFFTAG_SOFTWARE": f"axs_lib {versions['axs_lib']} (axs-scenes {self.command})",
        }
        for model in self.models:
            role = f"{TAG_PREFIX}{model.role.upper()}"
            tags.update({f"{role}_MODEL": model.catalog_name, f"{role}_WEIGHTS": model.weights, f"{role}_SOURCE": model.source})
        tags.update({f"{TAG_PREFIX}{name.upper()}": str(value) for name, value in self.generation.items()})
        if self.inputs:
            tags[f"{TAG_PREFIX}INPUT_ITEMS"] = json.dumps(self.inputs.get("items", []), sort_keys=True)
            tags[f"{TAG_PREFIX}INPUT_BANDS"] = json.dumps(self.inputs.get("bands", []), sort_keys=True)
        return tags


def _terratorch_version() -> str:
    try:
        return version("terratorch")
    except PackageNotFoundError:
        return "unknown"
