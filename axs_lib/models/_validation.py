"""Argument checks shared by the public factories; each failure names the valid choices."""

from __future__ import annotations

import difflib
import functools
import inspect
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar

import torch

from ..errors import InvalidArgumentError

DTYPE_NAMES = {
    "fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
}


def modality_names(value: Sequence[str] | str, argument: str, valid: Iterable[str]) -> tuple[str, ...]:
    """A non-empty tuple of distinct names, each one of ``valid``."""
    valid = tuple(valid)
    names = (value,) if isinstance(value, str) else tuple(value)
    if not names:
        raise InvalidArgumentError(f"{argument} is empty; choose one or more of {', '.join(valid)}.")
    unknown = [name for name in names if name not in valid]
    if unknown:
        raise InvalidArgumentError(
            f"{argument} has unknown modality {', '.join(map(repr, unknown))}; valid choices are {', '.join(valid)}."
        )
    if len(set(names)) != len(names):
        raise InvalidArgumentError(f"{argument} names a modality twice: {names}.")
    return names


def whole_number(value: object, argument: str, *, minimum: int, maximum: int | None = None) -> int:
    """``value`` as an ``int`` within ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"{argument} must be a whole number, got {value!r}.")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise InvalidArgumentError(f"{argument} must be {bound}, got {value}.")
    return value


def floating_dtype(value: torch.dtype | str | None) -> torch.dtype | None:
    """``torch.float32``/``float16``/``bfloat16``, or one of their names (``"bf16"``, ``"fp16"``, ...)."""
    if value is None or value in set(DTYPE_NAMES.values()):
        return value
    if isinstance(value, str) and value.lower().removeprefix("torch.") in DTYPE_NAMES:
        return DTYPE_NAMES[value.lower().removeprefix("torch.")]
    raise InvalidArgumentError(
        f"dtype must be torch.float32, torch.float16 or torch.bfloat16 (or one of {', '.join(DTYPE_NAMES)}), got {value!r}."
    )


def torch_device(value: torch.device | str | None) -> torch.device:
    """A ``torch.device`` (CPU when ``None``)."""
    try:
        return torch.device(value if value is not None else "cpu")
    except (RuntimeError, TypeError) as error:
        raise InvalidArgumentError(f"device {value!r} is not a torch device: {error}") from error


def known_keywords(given: Iterable[str], accepted: Iterable[str], callee: str) -> None:
    """Refuse keyword arguments ``callee`` does not take, naming each and the closest accepted name."""
    accepted = sorted(set(accepted))
    unknown = [name for name in given if name not in accepted]
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, accepted, n=1)
        hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise InvalidArgumentError(
        f"{callee} got unknown argument{'s' if len(unknown) > 1 else ''} {', '.join(hints)}; "
        f"it accepts {', '.join(accepted)}."
    )


Factory = TypeVar("Factory", bound=Callable[..., object])


def checked_factory(renamed: Mapping[str, str] | None = None) -> Callable[[Factory], Factory]:
    """Decorate a public factory: an unknown keyword argument is an :class:`InvalidArgumentError` naming the closest
    accepted one, and each old name in ``renamed`` (old -> new) is still accepted, with a ``FutureWarning``."""
    renamed = dict(renamed or {})

    def decorate(function: Factory) -> Factory:
        accepted = keyword_names(function)

        @functools.wraps(function)
        def checked(*args: object, **kwargs: object) -> object:
            for old, new in renamed.items():
                if old not in kwargs:
                    continue
                if new in kwargs:
                    raise InvalidArgumentError(f"{function.__name__} got both {old!r} and {new!r}; {old!r} is the old name of {new!r}: pass {new!r} only.")
                warnings.warn(f"{function.__name__}({old}=...) is deprecated: use {new}=...", FutureWarning, stacklevel=2)
                kwargs[new] = kwargs.pop(old)
            known_keywords(kwargs, accepted, function.__name__)
            return function(*args, **kwargs)

        checked.renamed_keywords = frozenset(renamed)  # type: ignore[attr-defined]
        return checked  # type: ignore[return-value]

    return decorate


def keyword_names(function: Callable[..., object]) -> set[str]:
    """The parameters of ``function`` that can be passed by name (not ``*args``/``**kwargs``)."""
    parameters = inspect.signature(function, follow_wrapped=False).parameters.values()
    return {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def accepted_keywords(function: Callable[..., object]) -> set[str] | None:
    """The keyword names ``function`` accepts, following ``__wrapped__`` through ``**kwargs`` that it passes
    on; ``None`` when it takes any (and checks them itself)."""
    names: set[str] = set()
    while function is not None:
        names |= keyword_names(function) | set(getattr(function, "renamed_keywords", ()))
        parameters = inspect.signature(function, follow_wrapped=False).parameters.values()
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            return names
        function = getattr(function, "__wrapped__", None)
    return None


def real_number(value: object, argument: str, *, minimum: float, maximum: float | None = None) -> float:
    """``value`` as a ``float`` within ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgumentError(f"{argument} must be a number, got {value!r}.")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise InvalidArgumentError(f"{argument} must be {bound}, got {value}.")
    return float(value)
