"""A fine-tuned Prithvi segmentation model as a Hugging Face style folder, written atomically and read back exactly.

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

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from .recipe import base_model_spec

if TYPE_CHECKING:
    from .prithvi import PrithviSegmentation

logger = logging.getLogger(__name__)

MODEL_TYPE = "axs_prithvi_segmentation"
"""``model_type`` in ``config.json``; also the name registered with transformers' ``AutoConfig``."""

FORMAT_VERSION = 1
WEIGHTS_FILENAME = "model.safetensors"
ADAPTER_WEIGHTS_FILENAME = "adapter_model.safetensors"
BASE_FOLDER = "base"
ENCODER_PREFIX = "model.encoder."

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


def write_folder(model: PrithviSegmentation, folder: Path, include_base: bool = False) -> None:
    """Write ``model``'s files (see the module docstring for the layout) into the new, empty ``folder``.

    Args:
        include_base: also copy the base encoder weights into ``folder/base``, so that loading needs no
            other file. Without it the folder is small and refers to the base model by name and fingerprint.
    """
    if model.build_recipe is None:
        raise InvalidArgumentError(
            "save_pretrained needs a model made by build_prithvi_600 or from_pretrained (it records how to rebuild "
            "the model); this one was built another way"
        )
    recipe = model.build_recipe
    base_spec = base_model_spec(recipe.factory, recipe.arguments)
    base_file = find_checkpoint(base_spec, recipe.checkpoint_path) if recipe.pretrained else None
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    from_base = base_file is not None and recipe.encoder_is_base

    def kept(key: str) -> bool:
        if _is_adapter_key(key):
            return False
        if not from_base or not key.startswith(ENCODER_PREFIX):
            return True
        return key in trainable or ".patch_embed." in key

    weights = {key: value for key, value in model.state_dict().items() if kept(key)}
    config = {
        "model_type": MODEL_TYPE,
        "format_version": FORMAT_VERSION,
        "architectures": [type(model).__name__],
        "axs_lib_version": __version__,
        "in_channels": model.in_channels,
        "num_classes": model.num_classes,
        "patch_size": model.patch_size,
        "dtype": str(model.head_dtype).removeprefix("torch."),
        "build": {"factory": recipe.factory, "arguments": _json_ready(recipe.arguments, "build arguments")},
        "base_model": None,
        "auto_map": _AUTO_MAP,
    }
    if base_file is not None:
        config["base_model"] = {
            "name": base_spec.name,
            "repo_id": base_spec.repo_id,
            "fingerprint": base_fingerprint(base_file.path),
            "frozen_weights_from_base": from_base,
            "included": include_base,
        }

    save_state_dict(weights, folder / WEIGHTS_FILENAME)
    encoder = model.model.encoder
    if _is_peft_model(encoder):
        if config["base_model"] is not None:
            base_name = f"{config['base_model']['name']}@{config['base_model']['fingerprint']}"
            for adapter in encoder.peft_config.values():  # what peft's save_pretrained writes as the base
                adapter.base_model_name_or_path = base_name
        # no embedding layers to save, and "auto" would look the base's name up on the Hub
        encoder.save_pretrained(str(folder), save_embedding_layers=False)
    if base_file is not None and include_base:
        _write_base_copy(base_file.path, folder / BASE_FOLDER, base_spec)
    (folder / f"{REMOTE_CODE_MODULE}.py").write_text(_REMOTE_CODE)
    (folder / CONFIG_FILENAME).write_text(json.dumps(config, indent=2) + "\n")
    logger.debug("%d tensors written, base %s", len(weights), "included" if include_base else "referred to")


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


BuildFunction = Callable[..., "PrithviSegmentation"]
"""``build(factory, arguments, *, pretrained, checkpoint_path, device, dtype)``: the model a recipe describes."""


def load_folder(
    folder: Path,
    build: BuildFunction,
    checkpoint_path: str | os.PathLike | None,
    device: torch.device,
    dtype: torch.dtype | None,
) -> PrithviSegmentation:
    """The model a folder written by :func:`write_folder` holds, built with ``build``; every weight is checked
    (strict keys and shapes).

    Raises:
        NotASavedModelError: ``folder`` is not such a folder.
        BaseModelMismatchError: the base weights found are not the ones the model was fine-tuned from.
        CheckpointMismatchError: a saved file lacks a weight the model needs, or has one it does not.
    """
    config = read_folder_config(folder)
    dtype = dtype or _validation.floating_dtype(config["dtype"])
    base = config.get("base_model")
    base_path = None
    if base is not None:
        location = checkpoint_path
        if location is None and base.get("included"):
            location = folder / BASE_FOLDER
        base_file = find_checkpoint(KNOWN_MODELS[base["name"]], location)
        found = base_fingerprint(base_file.path)
        if base["frozen_weights_from_base"] and found != base["fingerprint"]:
            raise BaseModelMismatchError(folder, base_file.path, base["fingerprint"], found)
        base_path = base_file.path
    recipe = config["build"]
    try:
        model = build(
            recipe["factory"], recipe["arguments"], pretrained=base is not None, checkpoint_path=base_path,
            device=device, dtype=dtype,
        )
    except InvalidArgumentError as error:
        raise InvalidArgumentError(
            f"Cannot load the saved model file {folder / CONFIG_FILENAME}: its 'build' entry is refused: {error} "
            "Save the model again with save_pretrained, or correct the entry by hand."
        ) from error
    base_covers_encoder = base is not None and base["frozen_weights_from_base"]
    _load_saved_weights(model, folder, base_covers_encoder=base_covers_encoder, device=device, dtype=dtype)
    if base is not None and not base_covers_encoder:
        model.build_recipe = dataclasses.replace(model.build_recipe, encoder_is_base=False)
    return model


def _load_saved_weights(
    model: PrithviSegmentation, folder: Path, *, base_covers_encoder: bool, device: torch.device, dtype: torch.dtype
) -> None:
    """Fill every weight the base does not give from ``model.safetensors`` and the PEFT adapter, strictly."""
    weights_path = folder / WEIGHTS_FILENAME
    if not weights_path.is_file():
        raise NotASavedModelError(folder, f"{WEIGHTS_FILENAME} is missing")
    _check_saved_file(weights_path)
    saved = read_state_dict(weights_path, device, dtype)
    expected = {key: value for key, value in model.state_dict().items() if not _is_adapter_key(key)}
    required = [key for key in expected if not (base_covers_encoder and key.startswith(ENCODER_PREFIX))]
    check_saved_tensors(saved, expected, required=required, source=weights_path, model_name="Prithvi segmentation model")
    model.load_state_dict(saved, strict=False)
    _load_adapter(model, folder, device, dtype)


def _load_adapter(model: PrithviSegmentation, folder: Path, device: torch.device, dtype: torch.dtype) -> None:
    adapter_path = folder / ADAPTER_WEIGHTS_FILENAME
    encoder = model.model.encoder
    if not _is_peft_model(encoder):
        if adapter_path.exists():
            raise CheckpointMismatchError(adapter_path, "Prithvi segmentation model without LoRA", unexpected=["(every key)"])
        return
    from peft import get_peft_model_state_dict, set_peft_model_state_dict
    from peft.utils import load_peft_weights

    expected = get_peft_model_state_dict(encoder)
    if not adapter_path.is_file():
        raise CheckpointMismatchError(adapter_path, "Prithvi segmentation model with LoRA", missing=sorted(expected))
    _check_saved_file(adapter_path)
    adapter = {
        key: value.to(dtype) for key, value in load_peft_weights(str(folder), device=str(device)).items()
    }
    check_saved_tensors(adapter, expected, required=expected, source=adapter_path, model_name="the LoRA adapters")
    set_peft_model_state_dict(encoder, adapter)


def _check_saved_file(path: Path) -> None:
    """Refuse a truncated or damaged saved ``.safetensors`` file by name (a folder copied only in part, usually)."""
    try:
        safetensors_metadata(path)
    except CorruptCheckpointError as error:
        raise InvalidSavedModelError(path, error.reason) from error


def _is_adapter_key(key: str) -> bool:
    return ".lora_" in key


def _is_peft_model(module: torch.nn.Module) -> bool:
    from peft import PeftModel

    return isinstance(module, PeftModel)


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


def _json_ready(value: Any, what: str) -> Any:
    """``value`` as plain JSON types (enums by value); anything else is refused rather than written as text."""
    if isinstance(value, Enum):
        return _json_ready(value.value, what)
    if isinstance(value, dict):
        return {str(key): _json_ready(item, what) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item, what) for item in value]
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


__all__ = ["MODEL_TYPE", "FORMAT_VERSION", "base_fingerprint", "is_earlier_save", "load_folder", "read_folder_config", "write_folder"]
