"""Signing asset hrefs for catalogs whose files need a token (Planetary Computer's blob storage).

A signer takes an href without a query string and returns it signed. Scene readers sign each file when they
open it and again when a read is refused (an expired signature), so a run longer than a token's life and a
run resumed the next day both read with a valid signature. What is recorded and shown is always the href
without its query (:func:`axs_lib.scenes.hrefs.without_query`).
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import InvalidSceneError
from .hrefs import is_url, without_query

Signer = Callable[[str], str]
"""An href (no query string) -> the same href, signed."""


def _planetary_computer(href: str) -> str:
    import planetary_computer

    return planetary_computer.sign_url(href)


SIGNERS: dict[str, Signer] = {
    "planetary-computer": _planetary_computer,
    # planetary-computer's SAS tokens, cached per storage container until they expire:
    # https://planetarycomputer.microsoft.com/docs/concepts/sas/
}
"""Named signers: what ``--sign NAME`` (and ``sign="NAME"``) uses."""


def signer(sign: str | Signer | None) -> Signer | None:
    """``sign`` as a signer: a name from :data:`SIGNERS`, a callable, or ``None`` (hrefs are read as given)."""
    if sign is None or callable(sign):
        return sign
    if sign not in SIGNERS:
        raise InvalidSceneError(f"unknown signer {sign!r}: use one of {', '.join(SIGNERS)}")
    return SIGNERS[sign]


def signed(location: str, sign: Signer | None) -> str:
    """What to open for ``location``: a URL signed afresh (any old query string dropped first), or as given."""
    if sign is None or not is_url(location):
        return location
    return sign(without_query(location))
