"""The folder format of a saved fine-tuned model, in Hugging Face conventions: its files, state dicts and config
dicts (what goes in is the model class's: :meth:`SegmentationModel._save_pretrained` and ``_from_pretrained``).

The folder::

    config.json                 model_type "axs_prithvi_segmentation", format_version, how to build the model
                                (factory and arguments), the base weights it refers to (name, fingerprint), and
                                an ``auto_map`` for transformers' ``trust_remote_code=True``
    modeling_axs_lib.py         the module that ``auto_map`` names: it imports the classes from axs_lib
    model.safetensors           what fine-tuning changed: necks, decoder, head, the patch embedding, and every
                                encoder weight that was trainable (the whole encoder when it was trained)
    adapter_config.json         PEFT's own files, when the encoder has LoRA adapters; ``base_model_name_or_path``
    adapter_model.safetensors   is ``<catalog name>@<base fingerprint>``, e.g. ``Prithvi-EO-2.0-600M@sampled-sha256:…``
    base/                       only with ``include_base=True``: the base encoder weights, so that the folder is
                                self-contained

Frozen encoder weights are not copied: loading finds the base model by the usual search order (or
``checkpoint_path``) and checks that its fingerprint is the one recorded at save time. Frozen weights are
taken to be the base's own; a model whose frozen weights were edited by hand must be saved with its
encoder unfrozen.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from enum import Enum
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from .. import __version__
from ..errors import (
    BaseModelMismatchError,
    CheckpointMismatchError,
    CorruptCheckpointError,
    InvalidArgumentError,
    InvalidSavedModelError,
    NotASavedModelError,
)
from ..weights.catalog import CONFIG_FILENAME, KNOWN_MODELS, ModelSpec
from ..weights.conversion import save_state_dict
from ..weights.discovery import find_checkpoint
from ..weights.fingerprint import hash_tensor
from ..weights.provenance import safetensors_metadata
from ..weights.reading import read_state_dict
from . import _validation
from .loading import check_saved_tensors

logger = logging.getLogger(__name__)

MODEL_TYPE = "axs_prithvi_segmentation"
"""``model_type`` in ``config.json``; also the name registered with transformers' ``AutoConfig``."""

FORMAT_VERSION = 1
ARCHITECTURES = ["PrithviSegmentation"]
"""``architectures`` in ``config.json``: the class's name when the format was set, kept so that folders of every
version read alike (the class is now :class:`~axs_lib.models.segmentation.SegmentationModel`)."""
WEIGHTS_FILENAME = "model.safetensors"
ADAPTER_WEIGHTS_FILENAME = "adapter_model.safetensors"
BASE_FOLDER = "base"

REMOTE_CODE_MODULE = "modeling_axs_lib"
"""The module file written into each folder for transformers' remote-code loading (``auto_map``)."""
_REMOTE_CODE = '''"""Opens this folder with transformers' trust_remote_code=True; the classes are axs_lib's (pip install axs_lib)."""

from axs_lib.models.auto import AxsPrithviSegmentationAutoModel, AxsPrithviSegmentationConfig

__all__ = ["AxsPrithviSegmentationAutoModel", "AxsPrithviSegmentationConfig"]
'''
_AUTO_MAP = {
    "AutoConfig": f"{REMOTE_CODE_MODULE}.AxsPrithviSegmentationConfig",
    "AutoModel": f"{REMOTE_CODE_MODULE}.AxsPrithviSegmentationAutoModel",
}

_CONFIG_ENTRIES = (
    ("dtype", str, "a string", "the weights' dtype"),
    ("build", dict, "an object", "how to rebuild the model"),
    ("build.factory", str, "a string", "the factory that builds the model"),
    ("build.arguments", dict, "an object", "the factory's arguments"),
    ("base_model", (dict, type(None)), "an object or null", "the base weights the model refers to"),
    ("base_model.name", str, "a string", "the base model's catalog name"),
    ("base_model.fingerprint", str, "a string", "the base weights' fingerprint"),
    ("base_model.frozen_weights_from_base", bool, "true or false", "whether the frozen weights are the base's"),
)
"""Every ``config.json`` entry loading reads: dotted name, JSON type, that type in words, what it holds."""


def write_folder(
    folder: Path,
    config: dict[str, Any],
    weights: dict[str, torch.Tensor],
    *,
    base: tuple[Path, ModelSpec] | None = None,
    include_base: bool = False,
    write_adapter: Callable[[Path], None] | None = None,
) -> None:
    """Write a model's files (see the module docstring for the layout) into the new, empty ``folder``.

    Args:
        config: the model's own ``config.json`` entries (see ``_CONFIG_ENTRIES``); the format's entries
            (``model_type``, ``format_version``, ``architectures``, ``axs_lib_version``, ``auto_map``) are added here.
        weights: the tensors of ``model.safetensors``.
        base: the base weights file the model refers to, and its catalog entry.
        include_base: also copy the base encoder weights into ``folder/base``, so that loading needs no
            other file. Without it the folder is small and refers to the base model by name and fingerprint.
        write_adapter: writes PEFT's adapter files into the folder it is given.
    """
    document = {
        "model_type": MODEL_TYPE,
        "format_version": FORMAT_VERSION,
        "architectures": ARCHITECTURES,
        "axs_lib_version": __version__,
        **config,
        "auto_map": _AUTO_MAP,
    }
    save_state_dict(weights, folder / WEIGHTS_FILENAME)
    if write_adapter is not None:
        write_adapter(folder)
    if base is not None and include_base:
        _write_base_copy(base[0], folder / BASE_FOLDER, base[1])
    (folder / f"{REMOTE_CODE_MODULE}.py").write_text(_REMOTE_CODE)
    (folder / CONFIG_FILENAME).write_text(json.dumps(document, indent=2) + "\n")
    logger.debug("%d tensors written, base %s", len(weights), "included" if include_base else "referred to")


def base_model_entry(base: Path, spec: ModelSpec, frozen_weights_from_base: bool, include_base: bool) -> dict[str, Any]:
    """``config.json``'s ``base_model`` entry for the base weights file ``base`` of ``spec``."""
    return {
        "name": spec.name,
        "repo_id": spec.repo_id,
        "fingerprint": base_fingerprint(base),
        "frozen_weights_from_base": frozen_weights_from_base,
        "included": include_base,
    }


def base_fingerprint(path: Path) -> str:
    """A fingerprint of the base encoder weights in ``path`` (``.pt`` or ``.safetensors``), read in milliseconds.

    It hashes the name, shape and 8 evenly spaced rows (64 values each, as float64) of every ``encoder.*``
    tensor, so a ``.pt`` and its safetensors conversion agree. It tells apart different weights under the
    same name (another training run, another size); it is not a checksum of every byte.
    """
    digest = hashlib.sha256()
    path = Path(path)
    if path.suffix == ".safetensors":
        with safe_open(path, framework="pt") as handle:
            for key in _encoder_keys(handle.keys()):
                tensor_slice = handle.get_slice(key)
                shape = list(tensor_slice.get_shape())
                hash_tensor(digest, key, shape, lambda start, stop: tensor_slice[start:stop] if shape else handle.get_tensor(key))
    else:
        state = read_state_dict(path)
        for key in _encoder_keys(state):
            tensor = state[key]
            hash_tensor(digest, key, list(tensor.shape), lambda start, stop: tensor[start:stop] if tensor.ndim else tensor)
    return f"sampled-sha256:{digest.hexdigest()}"


def read_folder_config(folder: Path) -> dict[str, Any]:
    """The ``config.json`` of a folder written by :func:`save_pretrained`, checked for type and version."""
    config_path = folder / CONFIG_FILENAME
    if not config_path.is_file():
        contents = sorted(entry.name for entry in folder.iterdir())[:5]
        raise NotASavedModelError(folder, f"it has no {CONFIG_FILENAME} (it holds: {', '.join(contents) or 'nothing'})")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CorruptCheckpointError(config_path, f"invalid JSON ({error})") from error
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type != MODEL_TYPE:
        raise NotASavedModelError(folder, f"its {CONFIG_FILENAME} has model_type {model_type!r}, not {MODEL_TYPE!r}")
    if "format_version" not in config:
        raise InvalidSavedModelError(config_path, "it has no format_version, which save_pretrained always writes")
    version = config["format_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidSavedModelError(
            config_path, f"its format_version must be a whole number of at least 1 (this axs_lib writes "
            f"{FORMAT_VERSION}), not {version!r}"
        )
    if version > FORMAT_VERSION:
        raise NotASavedModelError(
            folder, f"format_version {version!r} is newer than this axs_lib reads ({FORMAT_VERSION}); upgrade axs_lib"
        )
    _check_config_entries(config, config_path)
    return config


def _check_config_entries(config: dict[str, Any], config_path: Path) -> None:
    """Refuse a ``config.json`` that lacks an entry loading reads, or holds one of the wrong type or value."""
    for name, kind, kind_in_words, meaning in _CONFIG_ENTRIES:
        parent, _, key = name.rpartition(".")
        holder = config[parent] if parent else config
        if holder is None:  # base_model: null, a model without base weights
            continue
        if key not in holder:
            raise InvalidSavedModelError(
                config_path, f"it has no {name!r} entry ({meaning}), which save_pretrained always writes"
            )
        if not isinstance(holder[key], kind):
            raise InvalidSavedModelError(config_path, f"its {name!r} entry ({meaning}) must be {kind_in_words}, not {holder[key]!r}")
    if config["dtype"].lower().removeprefix("torch.") not in _validation.DTYPE_NAMES:
        raise InvalidSavedModelError(
            config_path, f"its 'dtype' entry {config['dtype']!r} is not one of {', '.join(_validation.DTYPE_NAMES)}"
        )
    base = config["base_model"]
    if base is not None and base["name"] not in KNOWN_MODELS:
        raise InvalidSavedModelError(
            config_path,
            f"its 'base_model.name' entry {base['name']!r} is not a model this axs_lib knows ({', '.join(KNOWN_MODELS)})",
            "Upgrade axs_lib if the folder was saved by a newer one, or save the model again.",
        )


def base_weights(folder: Path, config: dict[str, Any], checkpoint_path: str | os.PathLike | None) -> Path | None:
    """The base weights file a saved folder refers to (``checkpoint_path``, the folder's own copy, or the usual
    places), checked against the recorded fingerprint; ``None`` for a model saved without base weights.

    Raises:
        BaseModelMismatchError: the base weights found are not the ones the model was fine-tuned from.
    """
    base = config["base_model"]
    if base is None:
        return None
    location = checkpoint_path
    if location is None and base.get("included"):
        location = folder / BASE_FOLDER
    base_file = find_checkpoint(KNOWN_MODELS[base["name"]], location)
    found = base_fingerprint(base_file.path)
    if base["frozen_weights_from_base"] and found != base["fingerprint"]:
        raise BaseModelMismatchError(folder, base_file.path, base["fingerprint"], found)
    return base_file.path


def refused_build(folder: Path, error: InvalidArgumentError) -> InvalidArgumentError:
    """The error for a folder whose recorded ``build`` entry the factory refuses."""
    return InvalidArgumentError(
        f"Cannot load the saved model file {folder / CONFIG_FILENAME}: its 'build' entry is refused: {error} "
        "Save the model again with save_pretrained, or correct the entry by hand."
    )


def read_saved_weights(
    folder: Path, expected: dict[str, torch.Tensor], required: Iterable[str], *, model_name: str,
    device: torch.device, dtype: torch.dtype,
) -> dict[str, torch.Tensor]:
    """``model.safetensors``, checked against the model's ``expected`` tensors (every ``required`` key present,
    no unknown key, every shape right)."""
    weights_path = folder / WEIGHTS_FILENAME
    if not weights_path.is_file():
        raise NotASavedModelError(folder, f"{WEIGHTS_FILENAME} is missing")
    _check_saved_file(weights_path)
    saved = read_state_dict(weights_path, device, dtype)
    check_saved_tensors(saved, expected, required=list(required), source=weights_path, model_name=model_name)
    return saved


def read_adapter(
    folder: Path, expected: dict[str, torch.Tensor] | None, *, model_name: str, device: torch.device, dtype: torch.dtype
) -> dict[str, torch.Tensor] | None:
    """PEFT's adapter weights of ``folder``, checked against ``expected`` (``None``: the model has no adapter, and
    the folder must not have one either)."""
    adapter_path = folder / ADAPTER_WEIGHTS_FILENAME
    if expected is None:
        if adapter_path.exists():
            raise CheckpointMismatchError(adapter_path, f"{model_name} without LoRA", unexpected=["(every key)"])
        return None
    from peft.utils import load_peft_weights

    if not adapter_path.is_file():
        raise CheckpointMismatchError(adapter_path, f"{model_name} with LoRA", missing=sorted(expected))
    _check_saved_file(adapter_path)
    adapter = {key: value.to(dtype) for key, value in load_peft_weights(str(folder), device=str(device)).items()}
    check_saved_tensors(adapter, expected, required=expected, source=adapter_path, model_name="the LoRA adapters")
    return adapter


def _check_saved_file(path: Path) -> None:
    """Refuse a truncated or damaged saved ``.safetensors`` file by name (a folder copied only in part, usually)."""
    try:
        safetensors_metadata(path)
    except CorruptCheckpointError as error:
        raise InvalidSavedModelError(path, error.reason) from error


def _encoder_keys(keys: Iterable[str]) -> list[str]:
    keys = sorted(keys)
    return [key for key in keys if key.startswith("encoder.")] or keys


def _write_base_copy(base: Path, target: Path, spec: ModelSpec) -> None:
    """The encoder tensors of the base file, under the published names, as ``<published stem>.safetensors``."""
    target.mkdir()
    state = read_state_dict(base)
    encoder = {key: state[key] for key in _encoder_keys(state)}
    save_state_dict(encoder, target / f"{spec.stem}.safetensors")
    base_config = base.parent / CONFIG_FILENAME
    if base_config.is_file():
        shutil.copyfile(base_config, target / CONFIG_FILENAME)


def json_ready(value: Any, what: str) -> Any:
    """``value`` as plain JSON types (enums by value); anything else is refused rather than written as text."""
    if isinstance(value, Enum):
        return json_ready(value.value, what)
    if isinstance(value, dict):
        return {str(key): json_ready(item, what) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item, what) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise InvalidArgumentError(f"{what} hold a {type(value).__name__} ({value!r}), which config.json cannot record")


def is_earlier_save(folder: Path) -> bool:
    """Whether ``folder`` was written by :func:`write_folder` (a damaged one too), so a new save may replace it."""
    try:
        read_folder_config(folder)
    except InvalidSavedModelError:
        return True
    except (NotASavedModelError, CorruptCheckpointError):
        return False
    return True


__all__ = [
    "MODEL_TYPE", "FORMAT_VERSION", "base_fingerprint", "base_model_entry", "base_weights", "is_earlier_save", "read_adapter",
    "read_folder_config", "read_saved_weights", "refused_build", "write_folder",
]
