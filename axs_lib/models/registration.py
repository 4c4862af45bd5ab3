"""Registering this library's models in TerraTorch's registries, and the report of what was found.

Each registered name is a small class whose ``__new__`` returns the model a factory builds, so TerraTorch
sees an ordinary constructor (``Registry.register`` keys by ``__name__``).

Models built through TerraTorch's registries come back in training mode, as TerraTorch's own builders return
them: TerraTorch's factories and tasks build training models from them, and Lightning (2.2 and later) trains
each module in the mode it finds it in. The Python factories return eval mode instead, as transformers does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from torch import nn

from ..weights.catalog import KNOWN_MODELS, PRITHVI_600M, PRITHVI_MODELS, registered_name, terramind_model
from ..weights.discovery import CheckpointFile, find_all
from ..errors import AxsModelError, BackboneBuildError, InvalidArgumentError, TerraTorchUnavailableError, UnsupportedModelError
from . import _validation
from ._terratorch import registry
from .prithvi import build_prithvi_600, build_prithvi_backbone
from .terramind import SIZES, build_terramind_backbone, build_terramind_generator

logger = logging.getLogger(__name__)


def _passes_kwargs_to(factory: Callable[..., nn.Module]) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Mark a wrapper whose ``**kwargs`` go to ``factory``, so that unknown names are refused up front."""

    def mark(wrapper: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        wrapper.__wrapped__ = factory
        return wrapper

    return mark


def _trainable(kwargs: dict) -> dict:
    """``kwargs`` with ``freeze_encoder=False`` unless freezing was asked for (also by its old name ``freeze``)."""
    return kwargs if "freeze" in kwargs else {"freeze_encoder": False, **kwargs}


@_passes_kwargs_to(build_terramind_backbone)
def _terramind_backbone(**kwargs: Any) -> nn.Module:
    """:func:`build_terramind_backbone`, trainable by default as a TerraTorch backbone to fine-tune."""
    return build_terramind_backbone(**_trainable(kwargs))


@_passes_kwargs_to(build_terramind_generator)
def _terramind_generator(modalities: Sequence[str] | None = None, **kwargs: Any) -> nn.Module:
    """:func:`build_terramind_generator`, also accepting TerraTorch's ``modalities`` for the inputs."""
    if modalities is not None:
        kwargs.setdefault("input_modalities", modalities)
    return build_terramind_generator(**kwargs)


def _prithvi_backbone(variant: str) -> Callable[..., nn.Module]:
    """:func:`build_prithvi_backbone` for one variant."""

    @_passes_kwargs_to(build_prithvi_backbone)
    def build(**kwargs: Any) -> nn.Module:
        return build_prithvi_backbone(variant, **kwargs)

    build.__name__ = build.__qualname__ = f"build_prithvi_backbone[{variant}]"
    return build


PRITHVI_BACKBONE_FACTORIES: dict[str, Callable[..., nn.Module]] = {
    spec.builder: _prithvi_backbone(spec.builder) for spec in PRITHVI_MODELS
}


@_passes_kwargs_to(build_terramind_backbone)
def _terramind_tim(tim_modalities: Sequence[str] | None = None, **kwargs: Any) -> nn.Module:
    """:func:`build_terramind_backbone` in its TiM form, with TerraTorch's default ``tim_modalities=["LULC"]``."""
    return build_terramind_backbone(tim_modalities=tim_modalities or ("LULC",), **_trainable(kwargs))


def _of_size(factory: Callable[..., nn.Module], size: str) -> Callable[..., nn.Module]:
    """``factory`` for one TerraMind size, which the registered name fixes."""

    @_passes_kwargs_to(factory)
    def build(**kwargs: Any) -> nn.Module:
        for name in ("size", "variant"):
            if name in kwargs:
                raise InvalidArgumentError(
                    f"{name}={kwargs[name]!r} cannot be passed here: the registered name builds TerraMind 1.0 "
                    f"{size}; use axs_terramind_v1_{kwargs[name]}... for another size."
                )
        return factory(size=size, **kwargs)

    build.__name__ = f"{getattr(factory, '__name__', 'build')}_{size}"
    return build


def _refused_encdec(size: str) -> Callable[..., nn.Module]:
    def refuse(**kwargs: Any) -> nn.Module:
        raise UnsupportedModelError(
            f"axs_terramind_v1_{size}_encdec",
            f"TerraTorch's own terramind_v1_{size}_encdec builder does not build in TerraTorch 1.2 (its TerraMind "
            "model gets arguments it does not take, such as pretrained_bands)",
            f"axs_terramind_v1_{size}_generate for generation or axs_terramind_v1_{size} for features",
        )

    refuse.__name__ = f"refuse_terramind_v1_{size}_encdec"
    return refuse


@dataclass(frozen=True)
class RegisteredName:
    """One name in a TerraTorch registry.

    Attributes:
        name: the registered name.
        registry: ``"backbone"`` or ``"full_model"``.
        factory: what building it calls.
        alias_of: for the names earlier Axion-Sat code used, the current name they stand for.
        refused: the name exists in TerraTorch but cannot be built; building it raises the reason.
    """

    name: str
    registry: str
    factory: Callable[..., nn.Module]
    alias_of: str | None = None
    refused: bool = False


TERRAMIND_NAMES: tuple[RegisteredName, ...] = tuple(
    entry
    for size, name in ((size, registered_name(KNOWN_MODELS[terramind_model(size)])) for size in reversed(SIZES))
    for entry in (
        RegisteredName(name, "backbone", _of_size(_terramind_backbone, size)),
        RegisteredName(f"{name}_tim", "backbone", _of_size(_terramind_tim, size)),
        RegisteredName(f"{name}_generate", "full_model", _of_size(_terramind_generator, size)),
        RegisteredName(f"{name}_encdec", "full_model", _refused_encdec(size), refused=True),
    )
)
"""``axs_`` + TerraTorch's builder name, for every TerraMind 1.0 size; ``_encdec`` is registered only to refuse."""

PRITHVI_NAMES: tuple[RegisteredName, ...] = (
    *(RegisteredName(registered_name(spec), "backbone", PRITHVI_BACKBONE_FACTORIES[spec.builder]) for spec in PRITHVI_MODELS),
    RegisteredName(f"{registered_name(KNOWN_MODELS[PRITHVI_600M])}_segmentation", "full_model", build_prithvi_600),
)

LEGACY_ALIASES: tuple[RegisteredName, ...] = (
    RegisteredName("terramind_backbone", "backbone", _terramind_backbone, alias_of="axs_terramind_v1_large"),
    RegisteredName("prithvi_600M", "backbone", PRITHVI_BACKBONE_FACTORIES["prithvi_eo_v2_600"], alias_of="axs_prithvi_eo_v2_600"),
    RegisteredName("terramind_generator", "full_model", _terramind_generator, alias_of="axs_terramind_v1_large_generate"),
)

REGISTERED_NAMES: tuple[RegisteredName, ...] = (*TERRAMIND_NAMES, *PRITHVI_NAMES, *LEGACY_ALIASES)


@dataclass
class RegistrationReport:
    """What :func:`register_all_models` did, and which checkpoints this machine has.

    Attributes:
        registered: the names now in TerraTorch's registries.
        error: why nothing could be registered (TerraTorch missing), or ``None``.
    """

    registered: list[RegisteredName] = field(default_factory=list)
    error: str | None = None

    @cached_property
    def found(self) -> dict[str, CheckpointFile]:
        """Catalog name to the checkpoint found for it (models without one are absent); searched on first use."""
        return find_all()

    @property
    def missing(self) -> list[str]:
        return [name for name in KNOWN_MODELS if name not in self.found]

    def as_dict(self) -> dict[str, Any]:
        return {
            "found": [
                {"name": name, "path": str(file.path), "format": file.format, "size_bytes": file.size_bytes,
                 "origin": file.origin}
                for name, file in self.found.items()
            ],
            "missing": self.missing,
            "registered": [
                {"name": entry.name, "registry": entry.registry, "alias_of": entry.alias_of} for entry in self.registered
            ],
            "error": self.error,
        }


def _wrapper_class(entry: RegisteredName) -> type:
    factory = entry.factory
    accepted = _validation.accepted_keywords(factory)

    def __new__(cls, *args: Any, **kwargs: Any) -> nn.Module:
        if "ckpt_path" in kwargs:  # TerraTorch's name for it
            ckpt_path = kwargs.pop("ckpt_path")
            kwargs["checkpoint_path"] = kwargs.get("checkpoint_path") or ckpt_path
        if accepted is not None:
            _validation.known_keywords(kwargs, accepted, entry.name)
        try:
            return factory(*args, **kwargs).train()
        except AxsModelError:
            raise
        except Exception as error:
            kind = "backbone" if entry.registry == "backbone" else "model"
            raise BackboneBuildError(entry.name, error, kind) from error

    doc = f"Builds {entry.name} with axs_lib ({factory.__name__})."
    if entry.alias_of:
        doc += f" Alias kept for earlier Axion-Sat code; same as {entry.alias_of}."
    return type(entry.name, (), {"__new__": __new__, "__doc__": doc, "__module__": __name__})


def register_all_models() -> RegistrationReport:
    """Register every name of ``REGISTERED_NAMES`` in TerraTorch and report the checkpoints on this machine.

    Safe to call repeatedly and without TerraTorch or weights installed: it never raises, prints nothing,
    and uses no network; the disk is searched only when ``report.found`` is read. Building a model whose
    weights are missing raises the clear error then.
    """
    report = RegistrationReport()
    try:
        terratorch_registry = registry()
    except TerraTorchUnavailableError as error:
        report.error = f"TerraTorch unavailable: {error.__cause__}"
        logger.debug("not registering models: %s", report.error)
        return report
    registries = {
        "backbone": terratorch_registry.TERRATORCH_BACKBONE_REGISTRY,
        "full_model": terratorch_registry.TERRATORCH_FULL_MODEL_REGISTRY,
    }
    for entry in REGISTERED_NAMES:
        registries[entry.registry].register(_wrapper_class(entry))
        report.registered.append(entry)
    logger.debug("registered %d names in TerraTorch", len(report.registered))
    return report
