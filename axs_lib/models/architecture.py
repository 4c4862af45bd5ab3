"""The architecture a checkpoint folder describes in its ``config.json``, as TerraTorch builder arguments.

The published Prithvi repository ships a ``config.json`` whose ``pretrained_cfg`` lists the architecture;
TerraMind's repositories ship none, and the published sizes are used. Smaller models of the same family
(the test suite's tiny checkpoints) describe themselves the same way:

- TerraMind: ``{"architecture": "terramind_v1_tiny"}`` names another TerraTorch TerraMind 1.0 size.
- TerraMind tokenizers: ``pretrained_cfg`` may set ``enc_type`` and ``dec_type`` (TerraTorch encoder and
  decoder preset names, or the toy presets of ``tokenizer_presets``, installed when named).
- Prithvi: ``pretrained_cfg`` may set ``embed_dim``, ``depth``, ``num_heads``, ``mlp_ratio``, ``patch_size``.

Other keys are ignored.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..weights.catalog import CONFIG_FILENAME, Family, ModelSpec
from ..errors import CorruptCheckpointError
from .tokenizer_presets import provide_presets

logger = logging.getLogger(__name__)

TERRAMIND_SIZES = ("terramind_v1_tiny", "terramind_v1_small", "terramind_v1_base", "terramind_v1_large")

_BUILDER_ARGUMENTS = {
    Family.TERRAMIND: (),
    Family.TERRAMIND_TOKENIZER: ("enc_type", "dec_type"),
    Family.PRITHVI: ("embed_dim", "depth", "num_heads", "mlp_ratio", "patch_size"),
}


def read_config(checkpoint: Path) -> dict[str, Any]:
    """The ``config.json`` beside ``checkpoint``, or ``{}`` when there is none."""
    path = checkpoint.parent / CONFIG_FILENAME
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CorruptCheckpointError(path, f"invalid JSON ({error})") from error
    return config if isinstance(config, dict) else {}


def builder_name(spec: ModelSpec, checkpoint: Path) -> str:
    """The TerraTorch builder for the architecture beside ``checkpoint`` (the published one by default)."""
    if spec.family is Family.TERRAMIND:
        named = read_config(checkpoint).get("architecture")
        if named in TERRAMIND_SIZES:
            return named
    return spec.builder


def builder_arguments(spec: ModelSpec, checkpoint: Path) -> dict[str, Any]:
    """Keyword arguments for the TerraTorch builder that reproduce the architecture beside ``checkpoint``."""
    pretrained_cfg = read_config(checkpoint).get("pretrained_cfg") or {}
    arguments = {key: pretrained_cfg[key] for key in _BUILDER_ARGUMENTS[spec.family] if key in pretrained_cfg}
    if arguments:
        logger.debug("architecture of %s from %s: %s", spec.name, CONFIG_FILENAME, arguments)
    if spec.family is Family.TERRAMIND_TOKENIZER:
        provide_presets(arguments, checkpoint.parent / CONFIG_FILENAME)
    return arguments
