"""Argument checks shared by the public factories; each failure names the valid choices."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .errors import InvalidArgumentError


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
