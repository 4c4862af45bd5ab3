"""Band orders and statistics the scene commands need: TerraMind's S2L2A output and Prithvi's input."""

from __future__ import annotations

S2L2A_BANDS = (
    ("B01", "COASTAL_AEROSOL"), ("B02", "BLUE"), ("B03", "GREEN"), ("B04", "RED"), ("B05", "RED_EDGE_1"),
    ("B06", "RED_EDGE_2"), ("B07", "RED_EDGE_3"), ("B08", "NIR_BROAD"), ("B8A", "NIR_NARROW"),
    ("B09", "WATER_VAPOR"), ("B11", "SWIR_1"), ("B12", "SWIR_2"),
)
"""TerraMind's S2L2A band order, with the Sentinel-2 band ids (L2A has no B10)."""
S2L2A_NAMES = tuple(name for _, name in S2L2A_BANDS)
S2L2A_COMMON_NAMES = {
    "COASTAL_AEROSOL": "coastal", "BLUE": "blue", "GREEN": "green", "RED": "red", "RED_EDGE_1": "rededge",
    "RED_EDGE_2": "rededge", "RED_EDGE_3": "rededge", "NIR_BROAD": "nir", "NIR_NARROW": "nir08",
    "WATER_VAPOR": "nir09", "SWIR_1": "swir16", "SWIR_2": "swir22",
}
"""The STAC ``eo`` extension's common name of each band."""
RGB_BANDS = tuple(S2L2A_NAMES.index(colour) for colour in ("RED", "GREEN", "BLUE"))
REFLECTANCE_MAX = 10000

S1GRD_BANDS = ("VV", "VH")
S1GRD_MEAN_DB = (-12.599, -20.293)
"""TerraMind's S1GRD pretraining mean: nodata pixels are given to the generator as this value."""
LINEAR_FLOOR = 1e-6

PRITHVI_BANDS = ("BLUE", "GREEN", "RED", "NIR_NARROW", "SWIR_1", "SWIR_2")
PRITHVI_FROM_S2L2A = tuple(S2L2A_NAMES.index(name) for name in PRITHVI_BANDS)
