"""Where scenes come from: a local GeoTIFF, a STAC item or item collection (file or URL, or pystac objects), or a
search of a STAC API. :func:`open_source` says which, and reads the items within bounds."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pystac

from ..errors import SourceReadError, UntrustedItemError
from .documents import read_bounded, read_json
from .hrefs import is_url, redact, without_query
from .items import LocatedItem

DEFAULT_MAX_ITEMS = 100
"""The most items a collection or search may hold before it is refused (``max_items`` raises it)."""
JSON_SUFFIXES = (".json", ".geojson")

@dataclass(frozen=True)
class Search:
    """A STAC API search, run with pystac-client.

    Attributes:
        url: the API's landing page.
        collections: collection ids to search.
        datetime: a date or range (``"2024-06-01/2024-06-30"``), as STAC APIs take it.
        bbox: west, south, east, north in degrees.
        max_cloud: keep items whose ``eo:cloud_cover`` is at most this percentage (filtered here, so that any
            API works).
    """

    url: str
    collections: Sequence[str]
    datetime: str | None = None
    bbox: Sequence[float] | None = None
    max_cloud: float | None = None


@dataclass(frozen=True)
class OpenedSource:
    """A source, opened: a local raster (``path``), or STAC items (``items``); ``is_collection`` for an item
    collection or a search, whatever the number of items in it."""

    name: str
    path: Path | None = None
    items: tuple[LocatedItem, ...] = ()
    is_collection: bool = False


def open_source(source: object, *, max_items: int = DEFAULT_MAX_ITEMS) -> OpenedSource:
    """Open ``source``: a :class:`Search`, a ``pystac.Item`` or ``ItemCollection``, or a path or URL.

    A URL, or a path ending in ``.json`` / ``.geojson``, is a STAC item or an ItemCollection (a GeoJSON
    FeatureCollection of items); any other path is a local raster.

    Raises:
        SourceReadError: not found, unreadable, or not STAC.
        UntrustedItemError: a document over the size limit, or more than ``max_items`` items.
    """
    if isinstance(source, Search):
        return OpenedSource(_search_name(source), items=tuple(_search(source, max_items)), is_collection=True)
    if isinstance(source, pystac.Item):
        return OpenedSource(source.id, items=(LocatedItem(source, _location_of(source)),))
    if isinstance(source, pystac.ItemCollection):
        items = list(source)
        _check_count(len(items), max_items, "the item collection")
        located = tuple(LocatedItem(item, _location_of(item)) for item in items)
        return OpenedSource("item collection", items=located, is_collection=True)
    text = os.fspath(source)
    if not is_url(text) and not text.lower().endswith(JSON_SUFFIXES):
        return OpenedSource(text, path=Path(text))
    location = text if is_url(text) else str(Path(text).resolve())
    document = read_json(location)
    items = tuple(_items(document, location, max_items))
    return OpenedSource(without_query(text), items=items, is_collection=document.get("type") == "FeatureCollection")


def _items(document: dict, location: str, max_items: int) -> list[LocatedItem]:
    kind = document.get("type")
    shown = without_query(location)
    if kind == "Feature":
        return [LocatedItem(_item(document, shown), location)]
    if kind == "FeatureCollection":
        features = document.get("features")
        if not isinstance(features, list):
            raise SourceReadError(f"{shown} is a FeatureCollection without a list of features")
        _check_count(len(features), max_items, shown)
        return [_located_in(_item(feature, shown), location) for feature in features]
    raise SourceReadError(
        f"{shown} is not a STAC item or item collection (its type is {kind!r}; expected 'Feature' or "
        "'FeatureCollection')"
    )


def _item(document: object, shown: str) -> pystac.Item:
    if not isinstance(document, dict):
        raise SourceReadError(f"{shown} holds a feature that is not a JSON object")
    try:
        return pystac.Item.from_dict(document, preserve_dict=False)
    except Exception as error:  # pystac raises KeyError, ValueError, TypeError... for malformed items
        name = document.get("id", "?")
        raise SourceReadError(f"{shown}: item {name} is not a valid STAC item ({type(error).__name__}: {error})") from None


def _located_in(item: pystac.Item, collection_location: str) -> LocatedItem:
    """An item of a collection: its relative hrefs resolve against its own self link (STAC's rule) when it has one
    the collection may name (a URL; a local path only from a local collection), else against the collection."""
    self_href = item.get_self_href()
    if self_href and self_href.startswith("file://"):
        self_href = unquote(urlsplit(self_href).path)
    if self_href and (is_url(self_href) or not is_url(collection_location)):
        return LocatedItem(item, self_href)
    return LocatedItem(item, collection_location)


def _location_of(item: pystac.Item) -> str:
    """Where relative hrefs of a pystac item resolve: its self link, else the working folder."""
    return item.get_self_href() or str(Path.cwd() / f"{item.id}.json")


def _check_count(count: int, max_items: int, what: str) -> None:
    if count > max_items:
        raise UntrustedItemError(
            f"{what} holds {count} items, more than max_items={max_items}: narrow it down, or raise the limit "
            "with `max_items`"
        )
    if count == 0:
        raise SourceReadError(f"{what} holds no items")


def _search(search: Search, max_items: int) -> list[LocatedItem]:
    from pystac_client import Client
    from pystac_client.exceptions import APIError
    from pystac_client.stac_api_io import StacApiIO

    stac_io = StacApiIO(max_retries=None)
    stac_io.session.hooks["response"].append(read_bounded)
    try:
        client = Client.open(search.url, stac_io=stac_io)
        found = client.search(
            collections=list(search.collections), datetime=search.datetime, bbox=search.bbox, max_items=max_items + 1,
        )
        items = list(found.items())
    except (APIError, OSError, ValueError) as error:
        raise SourceReadError(f"the search of {without_query(search.url)} failed: {redact(str(error))[:300]}") from None
    if search.max_cloud is not None:
        items = [item for item in items if item.properties.get("eo:cloud_cover", 0) <= search.max_cloud]
    _check_count(len(items), max_items, f"the search of {without_query(search.url)}")
    return [LocatedItem(item, item.get_self_href() or search.url) for item in items]


def _search_name(search: Search) -> str:
    return f"search of {without_query(search.url)} ({', '.join(search.collections)}, {search.datetime or 'any date'})"
