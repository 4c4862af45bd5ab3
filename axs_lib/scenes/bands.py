"""What the scene commands add to the catalog's band orders: Sentinel-2 band ids and STAC common names, the
reflectance scale, the floor of linear SAR power, and where Prithvi's bands sit in S2L2A."""

from __future__ import annotations

from ..weights.catalog import PRITHVI_PRETRAINED_BANDS, TERRAMIND_MODALITIES

S2L2A_NAMES = TERRAMIND_MODALITIES["S2L2A"].bands
S2L2A_BANDS = tuple(zip(("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"), S2L2A_NAMES))
"""TerraMind's S2L2A band order (the catalog's), with the Sentinel-2 band ids (L2A has no B10)."""
S2L2A_COMMON_NAMES = {
    "COASTAL_AEROSOL": "coastal", "BLUE": "blue", "GREEN": "green", "RED": "red", "RED_EDGE_1": "rededge",
    "RED_EDGE_2": "rededge", "RED_EDGE_3": "rededge", "NIR_BROAD": "nir", "NIR_NARROW": "nir08",
    "WATER_VAPOR": "nir09", "SWIR_1": "swir16", "SWIR_2": "swir22",
}
"""The STAC ``eo`` extension's common name of each band."""
RGB_BANDS = tuple(S2L2A_NAMES.index(colour) for colour in ("RED", "GREEN", "BLUE"))
REFLECTANCE_MAX = 10000

S1GRD_BANDS = TERRAMIND_MODALITIES["S1GRD"].bands
LINEAR_FLOOR = 1e-6

PRITHVI_BANDS = PRITHVI_PRETRAINED_BANDS
PRITHVI_FROM_S2L2A = tuple(S2L2A_NAMES.index(name) for name in PRITHVI_BANDS)
