"""Bytes to module: read a checkpoint, map it through TerraTorch's filter, and load it strictly.

Models are built with their parameters on the ``meta`` device (no time spent on random init) and the
checkpoint tensors are then assigned in place, so no second copy of the weights is ever made.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointMismatchError
from ..weights.catalog import FAMILY_DESCRIPTIONS, Family, family_of
from ..weights.reading import StateDict, read_state_dict

logger = logging.getLogger(__name__)


@contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Build modules with parameters on ``meta`` and buffers real, so computed buffers keep their values.

    Unlike ``accelerate.init_empty_weights``, a parameter registered twice (tied weights, such as TerraMind's
    shared input and output token embeddings) stays one parameter.
    """
    register_parameter = nn.Module.register_parameter

    def register_on_meta(module: nn.Module, name: str, parameter: nn.Parameter | None) -> None:
        if parameter is not None and not parameter.is_meta:
            parameter = type(parameter)(parameter.to("meta"), requires_grad=parameter.requires_grad)
        register_parameter(module, name, parameter)

    nn.Module.register_parameter = register_on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register_parameter


@dataclass(frozen=True)
class CheckpointPart:
    """One checkpoint file and the part of a model it fills.

    Attributes:
        path: the file.
        checkpoint_filter: maps the file's state dict onto model keys (TerraTorch's filter for that model).
        family: the kind of model the file should hold; a file of another kind is named in the error.
        prefix: the model keys this file fills; ``""`` means every key no other part claims.
    """

    path: Path
    checkpoint_filter: Callable[[StateDict, nn.Module], StateDict]
    family: Family
    prefix: str = ""


def build_and_load(
    build: Callable[[], nn.Module],
    parts: list[CheckpointPart],
    *,
    model_name: str,
    device: torch.device = torch.device("cpu"),
    dtype: torch.dtype | None = None,
    new_weights: Collection[str] = (),
) -> nn.Module:
    """Build a model on ``meta`` and fill every parameter exactly from ``parts``, on ``device`` in ``dtype``.

    TerraTorch filters fill keys the checkpoint lacks with the model's own tensor; such a key counts as
    missing when it is a parameter (a parameter on ``meta`` has no value), and is accepted when it is a
    buffer the model computes itself (sin-cos position embeddings, the zero bias of bias-free LayerNorms).

    ``new_weights`` names parameters, buffers or whole modules (a name and all below it) the caller asked
    for that no checkpoint of this model holds (a new modality's patch embedding, prompt tokens, a coordinate
    encoding the model was not pretrained with): they are neither looked for nor accepted from the files,
    keep the model's own initial values (TerraTorch's initialisation: buffers as built, parameters from one
    random-init build of the model, the price of asking for them) and are listed in one INFO line. Every
    other key must still come from the checkpoint.

    Raises:
        CheckpointMismatchError: naming the file and its first offending keys; nothing is returned.
    """
    with parameters_on_meta():
        model = build()
    model_state = model.state_dict(keep_vars=True)
    new = _covered(model_state, new_weights)
    tied = _tied_parameter_names(model)
    expected = {key: value for key, value in model_state.items() if key not in new}
    parameter_names = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    claimed = [part.prefix for part in parts if part.prefix]
    merged: StateDict = {}
    for part in parts:
        raw = read_state_dict(part.path, device, dtype)
        try:
            with _terratorch_logs_silenced():
                filtered = part.checkpoint_filter(raw, model)
            if part.prefix:
                owned = {key: value for key, value in filtered.items() if key.startswith(part.prefix)}
            else:
                owned = {key: value for key, value in filtered.items() if not key.startswith(tuple(claimed))}
            owned = {key: value for key, value in owned.items() if key not in new}
            own_expected = {
                key: value
                for key, value in expected.items()
                if (key.startswith(part.prefix) if part.prefix else not key.startswith(tuple(claimed)))
            }
            _check_exact(own_expected, owned, parameter_names, raw, source=part.path, model_name=model_name)
        except CheckpointMismatchError as error:
            found = family_of(raw)
            if found is None or found is part.family:
                raise
            raise error.looking_like(FAMILY_DESCRIPTIONS[found]) from None
        logger.debug("%s: %d tensors from %s", model_name, len(owned), part.path)
        merged.update(owned)

    if new:
        merged.update(_initial_values(build, model_state, new))
        logger.info("%s: newly initialised (not in any checkpoint): %s", model_name, ", ".join(new))
    _check_tied_values(tied, merged, parts, model_name)
    model.load_state_dict({key: value.detach() for key, value in merged.items()}, strict=True, assign=True)
    _restore_trainability(model, model_state)
    _retie(model, tied)
    return place(model, device, dtype)


def _covered(state: StateDict, names: Collection[str]) -> list[str]:
    """The keys of ``state`` that ``names`` cover (a key itself, or a module's name and all below it), in order."""
    prefixes = tuple(f"{name}." for name in names)
    return [key for key in state if key in names or key.startswith(prefixes)]


@contextmanager
def _terratorch_logs_silenced() -> Iterator[None]:
    """TerraTorch's checkpoint filters log a warning per key they fill with random values (on loggers such
    as ``terramind``, outside ``terratorch``); the exact check after them reports the truth in one error,
    so warnings and below are dropped while a filter runs."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _initial_values(build: Callable[[], nn.Module], built: StateDict, keys: list[str]) -> StateDict:
    """The model's own initial values of ``keys``: buffers as ``built`` (on ``meta``, its parameters have none),
    parameters from a random-init build."""
    values = {key: built[key].detach() for key in keys if not built[key].is_meta}
    if len(values) < len(keys):
        fresh = build().state_dict()
        values.update({key: fresh[key] for key in keys if key not in values})
    return values


def _tied_parameter_names(model: nn.Module) -> list[list[str]]:
    """Groups of names under which one parameter is registered more than once."""
    names_by_parameter: dict[int, list[str]] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        names_by_parameter.setdefault(id(parameter), []).append(name)
    return [names for names in names_by_parameter.values() if len(names) > 1]


def _check_tied_values(tied: list[list[str]], state_dict: StateDict, parts: list[CheckpointPart], model_name: str) -> None:
    for first, *others in tied:
        differing = [name for name in others if not torch.equal(state_dict[name], state_dict[first])]
        if differing:
            source = next((part.path for part in parts if part.prefix and first.startswith(part.prefix)), parts[0].path)
            raise CheckpointMismatchError(
                source, model_name, mismatched=[f"{name} (must equal the tied {first})" for name in differing]
            )


def _retie(model: nn.Module, tied: list[list[str]]) -> None:
    """``assign=True`` gives every name its own tensor; make tied names one parameter again."""
    for first, *others in tied:
        parameter = model.get_parameter(first)
        for name in others:
            owner, _, attribute = name.rpartition(".")
            setattr(model.get_submodule(owner), attribute, parameter)


def place(model: nn.Module, device: torch.device, dtype: torch.dtype | None) -> nn.Module:
    """Move what is not there yet (buffers the model computed itself) to ``device`` and ``dtype``.

    ``dtype`` and ``device`` are applied in separate calls: TerraTorch's ``TerraMindGeneration.to`` takes
    one positional argument, and also moves its standardisation statistics.
    """
    if dtype is not None:
        model.to(dtype)
    return model.to(device)


def _check_exact(
    expected: Mapping[str, torch.Tensor],
    state_dict: Mapping[str, torch.Tensor],
    parameter_names: set[str],
    raw: Mapping[str, torch.Tensor],
    *,
    source: Path,
    model_name: str,
) -> None:
    missing, mismatched = [], []
    for key, target in expected.items():
        value = state_dict.get(key)
        if value is None or value.is_meta or (value is target and key in parameter_names):
            shape_note = _shape_in_raw(key, target, raw)
            (mismatched if shape_note else missing).append(shape_note or key)
        elif value.shape != target.shape:
            mismatched.append(f"{key} (checkpoint {list(value.shape)}, model {list(target.shape)})")
    unexpected = [key for key in state_dict if key not in expected]
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(source, model_name, missing, unexpected, mismatched)


def check_saved_tensors(
    found: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    *,
    required: Iterable[str],
    source: Path,
    model_name: str,
) -> None:
    """A saved state dict fits ``expected`` (the model's own tensors): every ``required`` key present, no
    key the model lacks, every shape right.

    Raises:
        CheckpointMismatchError: naming ``source`` and the offending keys.
    """
    missing = [key for key in required if key not in found]
    unexpected = [key for key in found if key not in expected]
    mismatched = [
        f"{key} (checkpoint {list(value.shape)}, model {list(expected[key].shape)})"
        for key, value in found.items()
        if key in expected and value.shape != expected[key].shape
    ]
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(source, model_name, missing, unexpected, mismatched)


def _restore_trainability(model: nn.Module, before: Mapping[str, torch.Tensor]) -> None:
    """``assign=True`` takes ``requires_grad`` from the checkpoint tensor; keep the model's own choice."""
    for name, parameter in model.named_parameters():
        original = before.get(name)
        if isinstance(original, nn.Parameter):
            parameter.requires_grad_(original.requires_grad)


def _shape_in_raw(key: str, target: torch.Tensor, raw: Mapping[str, torch.Tensor]) -> str | None:
    """Describe a checkpoint tensor whose name ends like ``key`` but whose shape differs, if there is one."""
    for raw_key, tensor in raw.items():
        related = raw_key == key or key.endswith(f".{raw_key}") or raw_key.endswith(f".{key}")
        if related and tensor.shape != target.shape:
            return f"{key} (checkpoint {raw_key} {list(tensor.shape)}, model {list(target.shape)})"
    return None
