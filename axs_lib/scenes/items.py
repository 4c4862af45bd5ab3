"""STAC items to scenes: which asset gives each model band, and how its numbers become the model's units.

The rules are the tables of :mod:`axs_lib.scenes.conventions`; this module only applies them:

- an asset is a model band when its ``eo:bands`` name it (common name, or band name where the common name is
  shared, as the three red edges share ``rededge``), else when its key does (the convention's key table first);
  a Cloud-Optimized GeoTIFF is taken before a JPEG 2000 twin;
- optical numbers become reflectance x 10000 by the asset's ``raster:bands`` scale and offset, the offset left
  out where the item says its files already had it removed; where nothing is published, by the convention's
  scale and its processing-baseline offset;
- SAR in linear power becomes dB; integer GRD numbers (uncalibrated) are refused;
- the scene's grid is the finest needed band's, read from the files' headers (items' ``proj:`` fields can be
  stale), or the area asked for.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pystac

from ..errors import InvalidSceneError, SourceReadError
from . import conventions
from .conventions import REFLECTANCE_MODEL_SCALE, Convention
from .hrefs import resolve_asset_href, without_query
from .inputs import (
    BandRead, FileHeader, Grid, MaskRead, SceneInput, SourceItem, finest_grid, grid_for_area, read_header,
)
from .signing import Signer

logger = logging.getLogger(__name__)

RESAMPLING = {"optical": "bilinear", "sar": "bilinear", "mask": "nearest"}
"""How bands on a coarser or other grid are resampled onto the scene's grid (GDAL's names)."""
RASTER_MEDIA = ("image/tiff", "image/vnd.stac.geotiff")
RASTER_SUFFIXES = (".tif", ".tiff")
JPEG2000_MEDIA = ("image/jp2",)
JPEG2000_SUFFIXES = (".jp2",)


@dataclass(frozen=True)
class LocatedItem:
    """A STAC item and where it was read from (its URL or local path), against which relative hrefs resolve."""

    item: pystac.Item
    location: str


def item_scene(
    items: Sequence[LocatedItem],
    bands: Sequence[str],
    *,
    bbox: Sequence[float] | None = None,
    crs: str | None = None,
    resolution: float | None = None,
    mask_clouds: bool = False,
    sar_modality: str | None = None,
    grid: Grid | None = None,
    sign: Signer | None = None,
) -> SceneInput:
    """The scene of ``bands`` (model band names, model order) from one item, or a time stack of several.

    Several items become one stack, ordered by date: all of the first date's bands, then the next date's.
    The grid is ``grid`` when given, else the first date's finest needed band unless ``bbox`` / ``crs`` /
    ``resolution`` ask for another; bands on other grids are warped onto it. ``sign`` signs remote files as
    they are opened (:mod:`axs_lib.scenes.signing`).

    Raises:
        InvalidSceneError: an item lacks a band (named), publishes no usable scale, is uncalibrated SAR, has no
            cloud mask for ``mask_clouds``, or mixes optical and SAR.
        UntrustedItemError: an asset href it may not name, or a file that is not a GeoTIFF.
    """
    ordered = sorted(items, key=lambda located: _datetime(located.item) or "")
    kind = "sar" if set(bands) <= conventions.SAR_BANDS else "optical"
    reads: list[BandRead] = []
    masks: list[MaskRead] = []
    grids: list[Grid] = []
    modalities = set()
    sources = []
    for located in ordered:
        convention = _convention(located.item, kind)
        sources.append(_source(located, convention))
        modalities.add(sar_modality or convention.sar_modality)
        for band in bands:
            key, location = _asset(located, band, convention)
            header = _header(located.item, key, location, sign)
            _check_numbers(located.item, key, convention, header.dtype)
            reads.append(_band_read(located.item, key, location, band, convention))
            if located is ordered[0]:
                grids.append(header.grid)
        if mask_clouds:
            masks.append(_cloud_mask(located, convention))
    if len(modalities) > 1:
        raise InvalidSceneError(f"the items mix SAR products ({', '.join(sorted(map(str, modalities)))}): give items of one product")
    if grid is None:
        grid = grid_for_area(finest_grid(grids), bbox=bbox, crs=crs, resolution=resolution)
    names = [located.item.id for located in ordered]
    return SceneInput(
        name=names[0] if len(names) == 1 else f"{names[0]} .. {names[-1]} ({len(names)} items)",
        grid=grid, bands=tuple(reads), masks=tuple(masks),
        items=tuple(sources),
        dates=tuple(_datetime(located.item) or "" for located in ordered),
        modality=modalities.pop() if kind == "sar" else None,
        sign=sign,
    )


def _header(item: pystac.Item, key: str, location: str, sign: Signer | None) -> FileHeader:
    try:
        return read_header(location, sign)
    except SourceReadError as error:
        raise SourceReadError(f"item {item.id} asset {key!r}: {error}") from None


def _convention(item: pystac.Item, kind: str) -> Convention:
    convention = conventions.convention_for(item.collection_id, kind)
    if convention.kind != kind:
        raise InvalidSceneError(
            f"item {item.id} is {convention.name} ({item.collection_id}); the model takes "
            f"{'SAR backscatter' if kind == 'sar' else 'optical reflectance'}"
        )
    return convention


def _asset(located: LocatedItem, band: str, convention: Convention) -> tuple[str, str]:
    """The key and checked location of the asset holding ``band``: a GeoTIFF before a JPEG 2000 twin."""
    item = located.item
    found = [(key, asset) for key, asset in item.assets.items() if _holds(key, asset, band, convention)]
    rasters = [(key, asset) for key, asset in found if _is_geotiff(asset)]
    if not rasters:
        if any(_is_jpeg2000(asset) for _, asset in found):
            keys = ", ".join(key for key, _ in found)
            raise InvalidSceneError(
                f"item {item.id} has {band} only as JPEG 2000 ({keys}); only Cloud-Optimized GeoTIFF assets are read"
            )
        identity = conventions.BAND_IDENTIFIERS[band]
        raise InvalidSceneError(
            f"item {item.id} has no asset for {band} (common name {identity.common_name!r}, band "
            f"{' or '.join(identity.names)}); its assets are {', '.join(item.assets) or 'none'}"
        )
    if len(rasters) > 1:
        logger.info("item %s: %s found in %s; reading %s", item.id, band, [key for key, _ in rasters], rasters[0][0])
    key, asset = rasters[0]
    return key, resolve_asset_href(asset.href, located.location, key)


def _holds(key: str, asset: pystac.Asset, band: str, convention: Convention) -> bool:
    described = _eo_bands(asset)
    if len(described) > 1:
        return False
    if described:
        common = described[0].get("common_name")
        return conventions.identifies(band, common_name=common, names=(described[0].get("name") or key, key))
    if convention.asset_keys:
        return convention.asset_keys.get(band) == key
    return conventions.identifies(band, common_name=None, names=(key,))


def _eo_bands(asset: pystac.Asset) -> list[dict]:
    """The asset's bands as the ``eo`` extension describes them (STAC 1.0 ``eo:bands``, or 1.1 ``bands``)."""
    fields = asset.extra_fields
    if isinstance(fields.get("eo:bands"), list):
        return fields["eo:bands"]
    bands = fields.get("bands")
    if isinstance(bands, list):
        return [{"name": band.get("name"), "common_name": band.get("eo:common_name")} for band in bands]
    return []


def _raster_band(asset: pystac.Asset) -> dict:
    """The asset's first band as the ``raster`` extension describes it (1.x ``raster:bands``, or 2.0 in ``bands``)."""
    fields = asset.extra_fields
    if isinstance(fields.get("raster:bands"), list) and fields["raster:bands"]:
        return fields["raster:bands"][0]
    bands = fields.get("bands")
    if isinstance(bands, list) and bands:
        band = bands[0]
        return {name: band[key] for name, key in (("scale", "raster:scale"), ("offset", "raster:offset"), ("nodata", "nodata")) if key in band}
    return {name: fields[name] for name in ("nodata",) if name in fields}


def _is_geotiff(asset: pystac.Asset) -> bool:
    media = (asset.media_type or "").lower()
    return any(media.startswith(kind) for kind in RASTER_MEDIA) or (
        not media and without_query(asset.href).lower().endswith(RASTER_SUFFIXES)
    )


def _is_jpeg2000(asset: pystac.Asset) -> bool:
    media = (asset.media_type or "").lower()
    return media in JPEG2000_MEDIA or without_query(asset.href).lower().endswith(JPEG2000_SUFFIXES)


def _band_read(item: pystac.Item, key: str, location: str, band: str, convention: Convention) -> BandRead:
    published = _raster_band(item.assets[key])
    nodata = _number(published.get("nodata"))
    if nodata is None:
        nodata = convention.fill
    common = {"location": location, "index": 1, "band": band, "nodata": nodata, "item": item.id, "asset": key,
              "resampling": RESAMPLING[convention.kind]}
    if convention.kind == "sar":
        return BandRead(**common, to_db=convention.sar_power == "linear")
    scale, offset = _reflectance(item, key, published, convention)
    return BandRead(**common, scale=scale * REFLECTANCE_MODEL_SCALE, offset=offset * REFLECTANCE_MODEL_SCALE)


def _reflectance(item: pystac.Item, key: str, published: Mapping, convention: Convention) -> tuple[float, float]:
    """``(scale, offset)`` with reflectance = stored x scale + offset (see the module docstring)."""
    scale = _number(published.get("scale"))
    if scale is not None:
        offset = _number(published.get("offset")) or 0.0
        flag = convention.offset_applied_flag
        if flag and item.properties.get(flag) is True and offset:
            logger.info("item %s: %s is true, so the published offset %g of %s is not applied again", item.id, flag, offset, key)
            offset = 0.0
        return scale, offset
    if convention.default_scale is None:
        raise InvalidSceneError(
            f"item {item.id} ({item.collection_id or 'no collection'}) publishes no raster:bands scale for {key}, "
            "and its collection is not one whose units are known: read a collection listed in docs/data.md, or "
            "give the model's units with a local GeoTIFF and --scale/--offset"
        )
    baseline = convention.baseline_offset
    if baseline is None:
        return convention.default_scale, 0.0
    value = item.properties.get(baseline.property)
    if value is None:
        raise InvalidSceneError(
            f"item {item.id} publishes neither raster:bands scale and offset nor {baseline.property}, so whether its "
            f"numbers carry the {baseline.minimum} offset cannot be told (the date alone is not a safe test)"
        )
    applies = _version(str(value)) >= _version(baseline.minimum)
    return convention.default_scale, baseline.offset if applies else 0.0


def _check_numbers(item: pystac.Item, key: str, convention: Convention, dtype: str) -> None:
    if convention.kind == "sar" and np.dtype(dtype).kind in "iu":
        reason = convention.integer_numbers_refused or (
            "holds integer numbers, not calibrated backscatter: use calibrated (sigma0 or gamma0) or RTC data"
        )
        raise InvalidSceneError(f"item {item.id} asset {key} ({dtype}) {reason}")


def _cloud_mask(located: LocatedItem, convention: Convention) -> MaskRead:
    item, mask = located.item, convention.cloud_mask
    if mask is None:
        raise InvalidSceneError(f"item {item.id} is {convention.name}, which has no cloud mask this library knows: leave out --mask-clouds")
    keys = [key for key in mask.assets if key in item.assets]
    if not keys:
        raise InvalidSceneError(
            f"item {item.id} has no {' or '.join(mask.assets)} asset to mask clouds with: leave out --mask-clouds"
        )
    location = resolve_asset_href(item.assets[keys[0]].href, located.location, keys[0])
    return MaskRead(location, 1, mask.classes, mask.bits, item.id, keys[0])


def _source(located: LocatedItem, convention: Convention) -> SourceItem:
    item = located.item
    self_href = item.get_self_href() or located.location
    return SourceItem(item.id, item.collection_id, _datetime(item), without_query(self_href), convention.name)


def _datetime(item: pystac.Item) -> str | None:
    moment = item.datetime or item.common_metadata.start_datetime
    return pystac.utils.datetime_to_str(moment) if moment else None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.replace("-", ".").split(".") if part.isdigit())
