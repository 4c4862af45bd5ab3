"""Reading STAC JSON documents (items, collections, search pages) from files and HTTP(S), within bounds.

A document is read up to :data:`MAX_DOCUMENT_BYTES`; HTTP redirects are followed only to ``http``/``https``
(``requests`` has no adapter for any other scheme). The same bounds apply to the pages a STAC API search
returns (pystac-client's session gets the same hook, :func:`read_bounded`).
"""

from __future__ import annotations

import json
from pathlib import Path

import requests

from ..errors import SourceReadError, UntrustedItemError
from .hrefs import is_url, redact, without_query

MAX_DOCUMENT_BYTES = 50 * 2**20
"""The largest item, collection or search page read (50 MiB): more is refused, not read."""
TIMEOUT_SECONDS = 60
CHUNK_BYTES = 2**16


def read_json(location: str) -> dict:
    """The JSON object at a URL or local path, read up to :data:`MAX_DOCUMENT_BYTES`.

    Raises:
        SourceReadError: missing, unreachable, an HTTP error, or not a JSON object.
        UntrustedItemError: larger than the limit.
    """
    shown = without_query(location)
    if is_url(location):
        try:
            with bounded_session() as session:
                response = session.get(location, timeout=TIMEOUT_SECONDS)
        except requests.RequestException as error:
            raise SourceReadError(f"cannot read {shown}: {_reason(error)}") from None
        if response.status_code >= 400:
            raise SourceReadError(f"cannot read {shown}: HTTP {response.status_code} {response.reason}")
        text = response.text
    else:
        path = Path(location)
        if not path.is_file():
            raise SourceReadError(f"input not found: {location}")
        if path.stat().st_size > MAX_DOCUMENT_BYTES:
            raise _too_large(shown)
        text = path.read_text(encoding="utf-8", errors="replace")
    try:
        document = json.loads(text)
    except ValueError as error:
        raise SourceReadError(f"{shown} is not JSON ({error}); expected a STAC item or item collection") from None
    if not isinstance(document, dict):
        raise SourceReadError(f"{shown} is not a JSON object; expected a STAC item or item collection")
    return document


def bounded_session() -> requests.Session:
    """A ``requests`` session whose responses are read up to :data:`MAX_DOCUMENT_BYTES`."""
    session = requests.Session()
    session.hooks["response"].append(read_bounded)
    return session


def read_bounded(response: requests.Response, **_: object) -> requests.Response:
    """Read the body now, refusing it past the limit (the hook runs before ``requests`` reads the body)."""
    shown = without_query(response.url)
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_DOCUMENT_BYTES:
        response.close()
        raise _too_large(shown)
    body = bytearray()
    for chunk in response.raw.stream(CHUNK_BYTES, decode_content=True):
        body += chunk
        if len(body) > MAX_DOCUMENT_BYTES:
            response.close()
            raise _too_large(shown)
    response._content = bytes(body)
    response._content_consumed = True
    return response


def _too_large(shown: str) -> UntrustedItemError:
    return UntrustedItemError(
        f"{shown} is larger than {MAX_DOCUMENT_BYTES // 2**20} MiB, the most a STAC document is read to; "
        "ask the catalog for fewer items at a time"
    )


def _reason(error: requests.RequestException) -> str:
    if isinstance(error, requests.exceptions.InvalidSchema):
        return "it redirects to a URL that is not http or https"
    return redact(" ".join(str(error).split()))[:300]
