"""Cloud-Optimized GeoTIFFs: a tiled GeoTIFF on disk copied into COG layout by GDAL's COG driver."""

from __future__ import annotations

from pathlib import Path

import rasterio.shutil


def write_cog(source: Path, destination: Path, resampling: str, block_size: int) -> None:
    """Copy the GeoTIFF ``source`` to ``destination`` as a COG: deflate, predictor 2 for integers and 3 for
    floats, ``block_size`` tiles, internal overviews down to one tile made with ``resampling``
    (GDAL's name: ``"nearest"``, ``"mode"``, ``"average"`` ...).

    GDAL builds the overviews from ``source`` on disk, through a temporary file beside ``destination``, with
    its block cache bounded by the caller's ``rasterio.Env`` (``GDAL_CACHEMAX``): memory does not grow with the
    scene. Compression uses every CPU core (``NUM_THREADS=ALL_CPUS``). Tags, band descriptions, scales,
    offsets, units, nodata and colour tables are copied.
    """
    rasterio.shutil.copy(
        source, destination, driver="COG", compress="DEFLATE", predictor="YES", blocksize=block_size,
        overview_resampling=resampling.upper(), bigtiff="IF_SAFER", num_threads="ALL_CPUS",
    )
