"""The models this library knows: where they are published and which TerraTorch builder makes them.

This module is data only. Nothing here touches the disk, the network or TerraTorch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum


class Family(str, Enum):
    """How a model is built and how its checkpoint maps onto the module."""

    TERRAMIND = "terramind"
    TERRAMIND_TOKENIZER = "terramind_tokenizer"
    PRITHVI = "prithvi"


FAMILY_SIGNATURES: dict[Family, str] = {
    Family.TERRAMIND: "encoder_embeddings.",
    Family.TERRAMIND_TOKENIZER: "quant_proj.",
    Family.PRITHVI: "encoder.patch_embed.",
}
"""A key prefix that every published file of the family has, and no other family's file."""

FAMILY_DESCRIPTIONS: dict[Family, str] = {
    Family.TERRAMIND: "a TerraMind 1.0 checkpoint (TerraMind-1.0-tiny, -small, -base or -large)",
    Family.TERRAMIND_TOKENIZER: "a TerraMind 1.0 tokenizer checkpoint (TerraMind-1.0-Tokenizer-*)",
    Family.PRITHVI: "a Prithvi EO checkpoint (Prithvi-EO-1.0-100M or a Prithvi-EO-2.0 model)",
}


REGISTERED_PREFIX = "axs_"


def registered_name(spec: ModelSpec) -> str:
    """The name this library registers ``spec``'s encoder under in TerraTorch's backbone registry."""
    return f"{REGISTERED_PREFIX}{spec.builder}"


def family_of(keys: Iterable[str]) -> Family | None:
    """The family whose published files hold keys like ``keys``, or ``None`` when none does."""
    keys = list(keys)
    matches = [family for family, prefix in FAMILY_SIGNATURES.items() if any(key.startswith(prefix) for key in keys)]
    return matches[0] if len(matches) == 1 else None


@dataclass(frozen=True)
class ModelSpec:
    """One published checkpoint.

    Attributes:
        name: folder name under a weights directory (``weights/hf/<name>/``) and the name users pass.
        repo_id: Hugging Face repository that publishes it.
        filename: the published weights file in that repository.
        family: decides the TerraTorch builder and checkpoint filter.
        builder: TerraTorch's registered builder for the published architecture.
        description: one line for reports.
        patch_size: pixels per side of a patch, for encoders (image sides are multiples of it).
        bands, mean, std: the input bands in order and their pretraining mean and standard deviation, for
            single-input encoders (Prithvi: HLS reflectance x 10000); TerraMind's are per modality, in
            :data:`TERRAMIND_MODALITIES`. All are TerraTorch's values (a test checks them against its tables).
    """

    name: str
    repo_id: str
    filename: str
    family: Family
    builder: str
    description: str
    patch_size: int | None = None
    bands: tuple[str, ...] = ()
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    @property
    def stem(self) -> str:
        return self.filename.rsplit(".", 1)[0]



CONVERTED_FILENAME = "model.safetensors"
"""Name of the safetensors file that ``axs-setup`` writes beside a downloaded ``.pt``."""

CONFIG_FILENAME = "config.json"
"""Optional architecture description beside a checkpoint (see ``axs_lib.models.architecture``)."""

TERRAMIND_LARGE = "TerraMind-1.0-large"
PRITHVI_600M = "Prithvi-EO-2.0-600M"


def _tokenizer(modality: str) -> ModelSpec:
    return ModelSpec(
        name=f"TerraMind-1.0-Tokenizer-{modality}",
        repo_id=f"ibm-esa-geospatial/TerraMind-1.0-Tokenizer-{modality}",
        filename=f"TerraMind_Tokenizer_{modality}.pt",
        family=Family.TERRAMIND_TOKENIZER,
        builder=f"terramind_v1_tokenizer_{modality.lower()}",
        description=f"TerraMind 1.0 {modality} tokenizer (FSQ-VAE with diffusion decoder)",
    )


TOKENIZER_MODALITIES = ("S2L2A", "S1GRD", "S1RTC", "DEM", "LULC", "NDVI")

TERRAMIND_SIZES = ("tiny", "small", "base", "large")
TERRAMIND_PATCH_SIZE = 16
"""Pixels per side of a TerraMind 1.0 patch (every size): image sides must be multiples of it."""
"""The published TerraMind 1.0 sizes, smallest first; ``"large"`` is the default everywhere."""


def terramind_model(size: str) -> str:
    """Catalog name of the TerraMind 1.0 model of ``size`` (one of ``TERRAMIND_SIZES``)."""
    return f"TerraMind-1.0-{size}"


def _terramind(size: str) -> ModelSpec:
    return ModelSpec(
        name=terramind_model(size),
        repo_id=f"ibm-esa-geospatial/TerraMind-1.0-{size}",
        filename=f"TerraMind_v1_{size}.pt",
        family=Family.TERRAMIND,
        builder=f"terramind_v1_{size}",
        description=f"TerraMind 1.0 {size.capitalize()} any-to-any generative foundation model",
        patch_size=TERRAMIND_PATCH_SIZE,
    )


TERRAMIND_MODELS: tuple[ModelSpec, ...] = tuple(_terramind(size) for size in reversed(TERRAMIND_SIZES))
"""Largest first, so that reports list the default model first."""

TERRAMIND_TOKENIZERS: tuple[ModelSpec, ...] = tuple(_tokenizer(modality) for modality in TOKENIZER_MODALITIES)


PRITHVI_PRETRAINED_BANDS = ("BLUE", "GREEN", "RED", "NIR_NARROW", "SWIR_1", "SWIR_2")
"""Band order of every published Prithvi EO model's patch embedding (HLS reflectance x 10000)."""

_HLS_V1 = ((775.0, 1081.0, 1229.0, 2497.0, 2204.0, 1611.0), (1282.0, 1270.0, 1399.0, 1368.0, 1292.0, 1155.0))
_HLS_V2 = ((1087.0, 1342.0, 1433.0, 2734.0, 1958.0, 1363.0), (2248.0, 2179.0, 2178.0, 1850.0, 1242.0, 1049.0))
"""Prithvi EO 1.0's and 2.0's pretraining mean and standard deviation of :data:`PRITHVI_PRETRAINED_BANDS`."""


def _prithvi(name: str, filename: str, builder: str, description: str, patch_size: int, statistics) -> ModelSpec:
    return ModelSpec(
        name=name,
        repo_id=f"ibm-nasa-geospatial/{name}",
        filename=filename,
        family=Family.PRITHVI,
        builder=builder,
        description=description,
        patch_size=patch_size,
        bands=PRITHVI_PRETRAINED_BANDS,
        mean=statistics[0],
        std=statistics[1],
    )


PRITHVI_MODELS: tuple[ModelSpec, ...] = (
    _prithvi("Prithvi-EO-1.0-100M", "Prithvi_EO_V1_100M.pt", "prithvi_eo_v1_100",
             "Prithvi EO 1.0 100M ViT encoder (HLS, 6 bands, 3 frames)", 16, _HLS_V1),
    _prithvi("Prithvi-EO-2.0-tiny-TL", "Prithvi_EO_V2_tiny_TL.pt", "prithvi_eo_v2_tiny_tl",
             "Prithvi EO 2.0 tiny ViT encoder with time and location coordinates (HLS, 6 bands)", 16, _HLS_V2),
    _prithvi("Prithvi-EO-2.0-100M-TL", "Prithvi_EO_V2_100M_TL.pt", "prithvi_eo_v2_100_tl",
             "Prithvi EO 2.0 100M ViT encoder with time and location coordinates (HLS, 6 bands)", 16, _HLS_V2),
    _prithvi("Prithvi-EO-2.0-300M", "Prithvi_EO_V2_300M.pt", "prithvi_eo_v2_300",
             "Prithvi EO 2.0 300M ViT encoder (HLS, 6 bands)", 16, _HLS_V2),
    _prithvi("Prithvi-EO-2.0-300M-TL", "Prithvi_EO_V2_300M_TL.pt", "prithvi_eo_v2_300_tl",
             "Prithvi EO 2.0 300M ViT encoder with time and location coordinates (HLS, 6 bands)", 16, _HLS_V2),
    _prithvi(PRITHVI_600M, "Prithvi_EO_V2_600M.pt", "prithvi_eo_v2_600",
             "Prithvi EO 2.0 600M ViT encoder (HLS, 6 bands)", 14, _HLS_V2),
    _prithvi("Prithvi-EO-2.0-600M-TL", "Prithvi_EO_V2_600M_TL.pt", "prithvi_eo_v2_600_tl",
             "Prithvi EO 2.0 600M ViT encoder with time and location coordinates (HLS, 6 bands)", 14, _HLS_V2),
)

KNOWN_MODELS: dict[str, ModelSpec] = {
    spec.name: spec for spec in (*TERRAMIND_MODELS, *TERRAMIND_TOKENIZERS, *PRITHVI_MODELS)
}


@dataclass(frozen=True)
class TerraMindModality:
    """A modality TerraMind 1.0 was pretrained on.

    Attributes:
        name: the name callers use (``"S1GRD"``).
        bands: band names of the raw image, in input order; empty for modalities that exist only as tokens.
        tokenizer: catalog name of its tokenizer, or ``None`` when TerraMind cannot generate it.
        token_key: TerraTorch's name for its tokenized form (``"tok_sen1grd@224"``), if it has one.
        mean, std: the raw image's pretraining mean and standard deviation per band (TerraTorch's
            ``v1_pretraining_mean``/``_std``; reflectance x 10000 for Sentinel-2, dB for Sentinel-1).
    """

    name: str
    bands: tuple[str, ...]
    tokenizer: str | None
    token_key: str | None = None
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    @property
    def channels(self) -> int | None:
        return len(self.bands) or None

    @property
    def generatable(self) -> bool:
        return self.tokenizer is not None


_S2_BANDS = ("COASTAL_AEROSOL", "BLUE", "GREEN", "RED", "RED_EDGE_1", "RED_EDGE_2", "RED_EDGE_3", "NIR_BROAD",
             "NIR_NARROW", "WATER_VAPOR")

TERRAMIND_MODALITIES: dict[str, TerraMindModality] = {
    modality.name: modality
    for modality in (
        TerraMindModality(
            "S2L2A", (*_S2_BANDS, "SWIR_1", "SWIR_2"), "TerraMind-1.0-Tokenizer-S2L2A", "tok_sen2l2a@224",
            (1390.458, 1503.317, 1718.197, 1853.91, 2199.1, 2779.975, 2987.011, 3083.234, 3132.22, 3162.988, 2424.884,
             1857.648),
            (2106.761, 2141.107, 2038.973, 2134.138, 2085.321, 1889.926, 1820.257, 1871.918, 1753.829, 1797.379,
             1434.261, 1334.311),
        ),
        TerraMindModality(
            "S2L1C", (*_S2_BANDS, "CIRRUS", "SWIR_1", "SWIR_2"), None, None,
            (2357.089, 2137.385, 2018.788, 2082.986, 2295.651, 2854.537, 3122.849, 3040.56, 3306.481, 1473.847, 506.07,
             2472.825, 1838.929),
            (1624.683, 1675.806, 1557.708, 1833.702, 1823.738, 1733.977, 1732.131, 1679.732, 1727.26, 1024.687, 442.165,
             1331.411, 1160.419),
        ),
        TerraMindModality("S1GRD", ("VV", "VH"), "TerraMind-1.0-Tokenizer-S1GRD", "tok_sen1grd@224",
                          (-12.599, -20.293), (5.195, 5.89)),
        TerraMindModality("S1RTC", ("VV", "VH"), "TerraMind-1.0-Tokenizer-S1RTC", "tok_sen1rtc@224",
                          (-10.93, -17.329), (4.391, 4.459)),
        TerraMindModality("RGB", ("RED", "GREEN", "BLUE"), None, None, (87.271, 80.931, 66.667), (58.767, 47.663, 42.631)),
        TerraMindModality("DEM", ("DEM",), "TerraMind-1.0-Tokenizer-DEM", "tok_dem@224", (670.665,), (951.272,)),
        TerraMindModality("LULC", (), "TerraMind-1.0-Tokenizer-LULC", "tok_lulc@224"),
        TerraMindModality("NDVI", (), "TerraMind-1.0-Tokenizer-NDVI", "tok_ndvi@224"),
    )
}


