"""Which files an item may make the library open, and how their hrefs are shown.

An item is a document from someone else's catalog, so its asset hrefs are checked before anything is opened
(docs/data.md, "Untrusted items"):

- an item read over HTTP(S) may name assets only by ``http``/``https`` URL, or by a relative href resolved
  against the item's own URL;
- an item read from a local file may also name local files, by relative path (resolved against the item's
  folder), absolute path or ``file://`` URL;
- GDAL's virtual file systems (``/vsicurl/``, ``/vsizip/``, ...), other schemes (``ftp``, ``s3``, ``data``, ...)
  and, from a remote item, local files are refused by name.

Hrefs are shown and recorded without their query string and fragment (a signed URL's token is in its query).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

from ..errors import UntrustedItemError

REMOTE_SCHEMES = ("http", "https")
GDAL_VIRTUAL_PREFIX = "/vsi"


def is_url(location: str) -> bool:
    """Whether ``location`` is an ``http``/``https`` URL."""
    return urlsplit(location).scheme.lower() in REMOTE_SCHEMES


def without_query(href: str) -> str:
    """``href`` without its query string, fragment and any user name or password: what may be shown or recorded."""
    parts = urlsplit(href)
    if not parts.scheme:
        return href.split("?", 1)[0].split("#", 1)[0]
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def redact(text: str) -> str:
    """``text`` (an error message, say) with the query string of every URL in it removed, and every other
    ``?key=value...`` (GDAL names a file by its last path part, query included)."""
    text = re.sub(r"(https?://[^\s?#'\"]*)[?#][^\s'\"]*", r"\1", text)
    return re.sub(r"\?[^\s'\"?]*=[^\s'\",)]*", "", text)


def resolve_asset_href(href: str, item_location: str, asset: str) -> str:
    """The URL or absolute local path an asset's ``href`` names, if the item may name it.

    Args:
        href: the asset's href as the item gives it.
        item_location: where the item was read from: its URL, or its local path.
        asset: the asset's key, for the message.

    Raises:
        UntrustedItemError: the href is of a kind this item may not name (see the module docstring).
    """
    text = href.strip()
    if text.lower().startswith(GDAL_VIRTUAL_PREFIX):
        _refuse(asset, href, "GDAL virtual file systems are not opened from items")
    location = _resolved(text, item_location, asset, href)
    if location.lower().startswith(GDAL_VIRTUAL_PREFIX):
        _refuse(asset, href, "GDAL virtual file systems are not opened from items")
    return location


def _resolved(text: str, item_location: str, asset: str, href: str) -> str:
    remote_item = is_url(item_location)
    scheme = urlsplit(text).scheme.lower()
    if scheme in REMOTE_SCHEMES:
        return text
    if remote_item:
        if scheme == "file" or (not scheme and text.startswith(("/", "\\"))):
            _refuse(asset, href, "an item read over HTTP may not name local files")
        if scheme:
            _refuse(asset, href, f"the {scheme!r} scheme is not supported: assets are read over http or https")
        return urljoin(item_location, text)
    if scheme == "file":
        return unquote(urlsplit(text).path)
    if scheme and len(scheme) > 1:  # "c:" is a Windows drive, not a scheme
        _refuse(asset, href, f"the {scheme!r} scheme is not supported: assets are read over http(s) or from local files")
    path = Path(text)
    return str(path if path.is_absolute() else (Path(item_location).parent / path).resolve())


def gdal_path(location: str) -> str:
    """What GDAL opens for a checked URL or local path: ``/vsicurl/URL`` (read with HTTP Range requests) or the path."""
    return f"/vsicurl/{location}" if is_url(location) else location


def _refuse(asset: str, href: str, why: str) -> None:
    raise UntrustedItemError(f"asset {asset!r} names {without_query(href)}: {why}; nothing was opened")
