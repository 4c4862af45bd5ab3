"""How each catalog publishes its data: the rules that turn a STAC item's assets into the models' bands and units.

Rules are data: :data:`BAND_IDENTIFIERS` says how an asset is recognised as one of the models' bands, and
:data:`CONVENTIONS` has one entry per kind of product, with the collections it covers and its sources
(``../shared/DESIGN.md``, "Real data"). :mod:`axs_lib.scenes.items` reads these tables; it has no branch per
catalog. docs/data.md shows them as a table.

Units the models take (TerraTorch's tables): optical bands as surface reflectance x 10000 without any offset
(HLS's scale; Sentinel-2 L2A's baseline 04.00 offset removed), SAR as backscatter in dB.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..weights.catalog import PRITHVI_PRETRAINED_BANDS, TERRAMIND_MODALITIES

REFLECTANCE_MODEL_SCALE = 10000
"""The models' optical unit: reflectance x 10000."""


@dataclass(frozen=True)
class BandIdentity:
    """How an asset, or a GeoTIFF band's description, is recognised as one model band.

    Attributes:
        common_name: the STAC ``eo`` common name.
        names: band names and asset keys that mean this band when the common name (if any) agrees:
            Sentinel-2 band ids and Earth Search's asset keys.
        unique_common_name: whether the common name alone identifies the band (``rededge`` does not).
    """

    common_name: str
    names: tuple[str, ...]
    unique_common_name: bool = True


BAND_IDENTIFIERS: Mapping[str, BandIdentity] = {
    "COASTAL_AEROSOL": BandIdentity("coastal", ("B01", "coastal")),
    "BLUE": BandIdentity("blue", ("B02", "blue")),
    "GREEN": BandIdentity("green", ("B03", "green")),
    "RED": BandIdentity("red", ("B04", "red")),
    "RED_EDGE_1": BandIdentity("rededge", ("B05", "rededge1"), unique_common_name=False),
    "RED_EDGE_2": BandIdentity("rededge", ("B06", "rededge2"), unique_common_name=False),
    "RED_EDGE_3": BandIdentity("rededge", ("B07", "rededge3"), unique_common_name=False),
    "NIR_BROAD": BandIdentity("nir", ("B08", "nir")),
    "NIR_NARROW": BandIdentity("nir08", ("B8A", "nir08")),
    "WATER_VAPOR": BandIdentity("nir09", ("B09", "nir09")),
    "SWIR_1": BandIdentity("swir16", ("B11", "swir16")),
    "SWIR_2": BandIdentity("swir22", ("B12", "swir22")),
    "VV": BandIdentity("vv", ("vv", "VV")),
    "VH": BandIdentity("vh", ("vh", "VH")),
}
"""Model band name (the catalog's) -> how it is found. Sentinel-2 ids and Earth Search keys from the catalogs'
items (DESIGN.md); Sentinel-1 polarisations by asset key, as both catalogs name them."""

OPTICAL_BANDS = frozenset(TERRAMIND_MODALITIES["S2L2A"].bands) | frozenset(PRITHVI_PRETRAINED_BANDS)
SAR_BANDS = frozenset(TERRAMIND_MODALITIES["S1GRD"].bands)


@dataclass(frozen=True)
class BaselineOffset:
    """An offset implied by a processing-baseline property when the item publishes none.

    ``offset`` (in reflectance) applies when ``item.properties[property] >= minimum``, compared as version numbers.
    """

    property: str
    minimum: str
    offset: float


@dataclass(frozen=True)
class CloudMask:
    """The item's own cloud mask: an asset whose pixels mark clouds, cirrus or shadow.

    Attributes:
        assets: its key, as each catalog names it.
        classes: pixel values that are masked (a classification layer), or
        bits: bit numbers that mask when set (a bit-flag layer).
    """

    assets: tuple[str, ...]
    classes: tuple[int, ...] = ()
    bits: tuple[int, ...] = ()


@dataclass(frozen=True)
class Convention:
    """How one kind of product is published, across the catalogs that publish it.

    Attributes:
        name: what the product is, for messages and records.
        collections: collection ids this entry applies to.
        sources: where each rule comes from.
        kind: ``"optical"`` (reflectance) or ``"sar"`` (backscatter).
        default_scale: reflectance per stored number when the item's ``raster:bands`` publish no scale.
        baseline_offset: the offset implied by a processing baseline when none is published.
        offset_applied_flag: an item property that, when true, says the files already had the published
            offset removed, so the published offset must not be applied again.
        fill: the stored value of missing pixels when neither the item nor the file says.
        asset_keys: model band -> asset key, used when an item's assets carry no ``eo:bands`` and the keys
            are not the band ids of :data:`BAND_IDENTIFIERS` (HLS L30 numbers its bands after Landsat).
        cloud_mask: the item's cloud mask, for ``mask_clouds``.
        sar_modality: TerraMind's modality for this product (``"S1RTC"`` or ``"S1GRD"``).
        sar_power: ``"linear"`` when the files hold power (converted to dB), ``"db"`` when already in dB.
        integer_numbers_refused: what to say when the files hold integer numbers that are not calibrated
            backscatter (GRD digital numbers); empty when integers are fine.
    """

    name: str
    collections: tuple[str, ...]
    sources: tuple[str, ...]
    kind: str
    default_scale: float | None = None
    baseline_offset: BaselineOffset | None = None
    offset_applied_flag: str | None = None
    fill: float | None = None
    asset_keys: Mapping[str, str] = field(default_factory=dict)
    cloud_mask: CloudMask | None = None
    sar_modality: str | None = None
    sar_power: str = "linear"
    integer_numbers_refused: str = ""


SENTINEL2_L2A = Convention(
    name="Sentinel-2 L2A",
    collections=("sentinel-2-l2a", "sentinel-2-c1-l2a"),
    sources=(
        "ESA: processing baseline 04.00 (from 25 January 2022, and Collection-1 reprocessing) stores "
        "reflectance x 10000 + 1000 (BOA_ADD_OFFSET -1000)",
        "Earth Search sentinel-2-l2a: raster:bands scale 0.0001, offset -0.1 kept even where "
        "earthsearch:boa_offset_applied is true (element84/earth-search issues #21, #23, #66, #71)",
        "Earth Search sentinel-2-c1-l2a: offset not applied to the files, scale and offset published",
        "Planetary Computer sentinel-2-l2a: no scale or offset published, s2:processing_baseline in the "
        "properties (microsoft/PlanetaryComputer issue #134)",
        "SCL classes 3 cloud shadow, 8 cloud medium, 9 cloud high, 10 thin cirrus (ESA L2A product definition)",
    ),
    kind="optical",
    default_scale=1e-4,
    baseline_offset=BaselineOffset("s2:processing_baseline", "04.00", -0.1),
    offset_applied_flag="earthsearch:boa_offset_applied",
    fill=0,
    cloud_mask=CloudMask(("SCL", "scl"), classes=(3, 8, 9, 10)),
)

_HLS_SOURCES = (
    "NASA LP DAAC HLS v2.0 user guide: int16 reflectance x 10000 (scale 0.0001), fill -9999, Fmask bits "
    "1 cloud, 2 adjacent to cloud or shadow, 3 cloud shadow",
)

HLS_S30 = Convention(
    name="HLS S30 (Sentinel-2)",
    collections=("hls2-s30", "HLSS30_2.0", "HLSS30.v2.0"),
    sources=(*_HLS_SOURCES, "S30 keeps Sentinel-2's band ids: NIR narrow B8A, SWIR B11 and B12; B05-B07 red edge"),
    kind="optical",
    default_scale=1e-4,
    fill=-9999,
    cloud_mask=CloudMask(("Fmask",), bits=(1, 2, 3)),
)

HLS_L30 = Convention(
    name="HLS L30 (Landsat)",
    collections=("hls2-l30", "HLSL30_2.0", "HLSL30.v2.0"),
    sources=(*_HLS_SOURCES, "L30 numbers bands after Landsat 8/9: NIR narrow B05, SWIR B06 and B07; B10, B11 thermal"),
    kind="optical",
    default_scale=1e-4,
    fill=-9999,
    asset_keys={"COASTAL_AEROSOL": "B01", "BLUE": "B02", "GREEN": "B03", "RED": "B04", "NIR_NARROW": "B05",
                "SWIR_1": "B06", "SWIR_2": "B07"},
    cloud_mask=CloudMask(("Fmask",), bits=(1, 2, 3)),
)

SENTINEL1_RTC = Convention(
    name="Sentinel-1 RTC",
    collections=("sentinel-1-rtc",),
    sources=(
        "Planetary Computer sentinel-1-rtc: terrain-corrected gamma0, linear power, float32, on a UTM grid; "
        "stale proj:transform on some items (microsoft/PlanetaryComputer #417): the grid is read from the files",
        "TerraMind: S1RTC is its own modality, in dB, with its own statistics (TerraTorch's v1_pretraining_mean)",
    ),
    kind="sar",
    sar_modality="S1RTC",
    sar_power="linear",
)

SENTINEL1_GRD = Convention(
    name="Sentinel-1 GRD",
    collections=("sentinel-1-grd",),
    sources=(
        "Earth Search and Planetary Computer sentinel-1-grd: uint16 digital numbers in radar geometry, located "
        "only by ground control points (planetary-computer-apis #90); calibration tables are separate assets",
        "TerraMind: S1GRD is calibrated, ortho-corrected backscatter in dB",
    ),
    kind="sar",
    sar_modality="S1GRD",
    sar_power="linear",
    integer_numbers_refused=(
        "holds uncalibrated digital numbers (integers); TerraMind's S1GRD is calibrated backscatter: calibrate "
        "it first (e.g. ESA SNAP's Calibration, or sarsen), or use a terrain-corrected product such as "
        "Planetary Computer's sentinel-1-rtc"
    ),
)

CONVENTIONS: tuple[Convention, ...] = (SENTINEL2_L2A, HLS_S30, HLS_L30, SENTINEL1_RTC, SENTINEL1_GRD)

GENERIC_OPTICAL = Convention(
    name="optical reflectance (unknown collection)",
    collections=(),
    sources=("the item's own raster:bands scale and offset",),
    kind="optical",
)
GENERIC_SAR = Convention(
    name="SAR backscatter (unknown collection)",
    collections=(),
    sources=("linear power, as Sentinel-1 RTC and calibrated GRD products are published",),
    kind="sar",
    sar_modality="S1GRD",
)


def convention_for(collection: str | None, kind: str) -> Convention:
    """The entry for ``collection``; for an unknown one, the generic entry of ``kind`` (``"optical"`` or ``"sar"``)."""
    for convention in CONVENTIONS:
        if collection in convention.collections:
            return convention
    return GENERIC_SAR if kind == "sar" else GENERIC_OPTICAL


def identifies(band: str, *, common_name: str | None, names: tuple[str, ...]) -> bool:
    """Whether an asset or raster band with ``common_name`` and ``names`` (band names, asset key) is ``band``."""
    identity = BAND_IDENTIFIERS[band]
    if common_name:
        if common_name.lower() != identity.common_name:
            return False
        if identity.unique_common_name:
            return True
    return any(name in identity.names for name in names)
