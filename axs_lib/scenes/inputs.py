"""A scene as the model sees it: its bands, each read from a file or URL, converted to the model's units on one grid.

:class:`SceneInput` is what the streaming engine runs over, whatever the source: a local GeoTIFF
(:meth:`SceneInput.open`) or STAC items (:mod:`axs_lib.scenes.items`). Each band is a :class:`BandRead`: where
it is (a local path or an ``http(s)`` URL, read window by window with HTTP Range requests through GDAL's
``/vsicurl/``), which band of that file, and the conversion ``model value = stored value x scale + offset``
(then dB for SAR stored as linear power). Files on another grid are warped onto the scene's grid as they are
read (rasterio's ``WarpedVRT``; ground control points are used where a file has no geotransform).

Files open only with the GeoTIFF driver (:data:`RASTER_DRIVER`): an asset that is really a VRT, a zip or any
other format is refused, and nothing it names is followed.
"""

from __future__ import annotations

import logging
import math
import re
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio._err import CPLE_BaseError
from rasterio.errors import RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform as transform_coordinates
from rasterio.windows import Window as RasterWindow

from ..errors import InvalidSceneError, SourceReadError, UntrustedItemError
from . import conventions
from .hrefs import gdal_path, is_url, redact, without_query
from .signing import Signer, signed
from .windows import Window

logger = logging.getLogger(__name__)

RASTER_DRIVER = "GTiff"
"""The only GDAL driver inputs are opened with (Cloud-Optimized GeoTIFFs are GeoTIFFs)."""
GDAL_CACHE_MB = 64
"""GDAL's block cache, bounded: by default it may grow to 5 % of RAM as windows are read and written."""
VSI_CACHE_BYTES = 64 * 2**20
READ_THREADS = 8
"""Files of a scene read at the same time, at most: the bands of a window are fetched concurrently."""
BLOCK_CACHE_BYTES = 512 * 2**20
"""Decoded blocks a scene reader keeps, shared out among its files (see ``_BlockReader``), but at least
:data:`FILE_BLOCK_CACHE_BYTES` for each file."""
FILE_BLOCK_CACHE_BYTES = 32 * 2**20
LINEAR_FLOOR = 1e-6
"""Linear power below this is taken as this before dB (10 log10 of it is -60 dB)."""

GDAL_REMOTE_SETTINGS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIRANGE": "YES",
    "VSI_CACHE": "TRUE",
    "VSI_CACHE_SIZE": VSI_CACHE_BYTES,
    "GDAL_HTTP_MAX_RETRY": 3,
    "GDAL_HTTP_RETRY_DELAY": 0.5,
    "GDAL_HTTP_CONNECTTIMEOUT": 20,
    "GDAL_HTTP_TIMEOUT": 120,
}
"""GDAL's settings for Cloud-Optimized GeoTIFFs over HTTP (DESIGN.md, "Reading COGs over HTTP"): no directory
listing, merged ranges, a bounded cache of fetched bytes, retries of 429 and 5xx answers (and of dropped
connections and timeouts, GDAL 3.10), and limits on connecting and on each request (seconds)."""


@contextmanager
def gdal_environment() -> Iterator[None]:
    """rasterio/GDAL settings for streaming: a bounded block cache, and :data:`GDAL_REMOTE_SETTINGS`."""
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB, **GDAL_REMOTE_SETTINGS):
        yield


@dataclass(frozen=True)
class Grid:
    """A raster grid: CRS, geotransform and size."""

    crs: rasterio.crs.CRS
    transform: Affine
    width: int
    height: int

    @property
    def resolution(self) -> float:
        return abs(self.transform.a)

    def same_as(self, other: Grid) -> bool:
        return (self.crs == other.crs and (self.width, self.height) == (other.width, other.height)
                and self.transform.almost_equals(other.transform, precision=1e-6 * self.resolution))

    def describe(self) -> dict:
        return {"crs": self.crs.to_string(), "transform": list(self.transform)[:6], "width": self.width, "height": self.height}


@dataclass(frozen=True)
class BandRead:
    """One model band: where it is stored and how its numbers become the model's units.

    Attributes:
        location: a local path or an ``http(s)`` URL (possibly signed: shown and recorded without its query).
        index: the band of that file (1-based).
        band: the model band it gives (the catalog's name, e.g. ``"NIR_NARROW"``).
        scale, offset: model value = stored value x ``scale`` + ``offset``.
        to_db: the scaled value is linear power, given to the model as ``10 log10`` of it.
        nodata: a stored value that marks missing pixels, besides the file's own mask.
        resampling: how the band is resampled when its grid is not the scene's (GDAL's name).
        item, asset: the STAC item id and asset key it comes from, for messages; empty for a local file.
    """

    location: str
    index: int
    band: str
    scale: float = 1.0
    offset: float = 0.0
    to_db: bool = False
    nodata: float | None = None
    resampling: str = "bilinear"
    item: str = ""
    asset: str = ""

    def describe(self) -> dict:
        """The band's source and conversion, for run records, tags and STAC items (no query strings)."""
        conversion = f"x {self.scale:g} + {self.offset:g}" + (" then 10 log10" if self.to_db else "")
        record = {"band": self.band, "href": without_query(self.location), "file_band": self.index,
                  "conversion": conversion, "resampling": self.resampling}
        if self.item:
            record.update(item=self.item, asset=self.asset)
        if self.nodata is not None:
            record["nodata"] = self.nodata
        return record


@dataclass(frozen=True)
class MaskRead:
    """A cloud mask band: pixels whose value is one of ``classes``, or has one of ``bits`` set, are masked."""

    location: str
    index: int = 1
    classes: tuple[int, ...] = ()
    bits: tuple[int, ...] = ()
    item: str = ""
    asset: str = ""

    def masked(self, values: np.ndarray) -> np.ndarray:
        integers = values.astype(np.int64)
        hit = np.isin(integers, self.classes)
        for bit in self.bits:
            hit |= (integers >> bit) & 1 == 1
        return hit


@dataclass(frozen=True)
class SourceItem:
    """A STAC item a scene was read from, as outputs record it."""

    id: str
    collection: str | None
    datetime: str | None
    href: str | None
    product: str

    def describe(self) -> dict:
        return {"id": self.id, "collection": self.collection, "datetime": self.datetime, "href": self.href,
                "product": self.product}


@dataclass(frozen=True)
class SceneInput:
    """The input of a scene run: model bands on one grid (see the module docstring).

    Attributes:
        name: what messages call it (a path, or an item id).
        grid: the grid the outputs are written on.
        bands: the model's bands in model order (time stacks: date by date).
        masks: cloud masks; a masked pixel is nodata.
        items: the STAC items it was read from (empty for a local file).
        dates: acquisition dates, one per time step, where known (ISO 8601).
        path: the local file, for a local GeoTIFF.
        modality: TerraMind's modality of the bands where the source says (``"S1RTC"`` for an RTC item).
        dtypes: the stored data type of each band of a local file, where read.
        sign: signs remote files as they are opened (:mod:`axs_lib.scenes.signing`); never recorded.
    """

    name: str
    grid: Grid
    bands: tuple[BandRead, ...]
    masks: tuple[MaskRead, ...] = ()
    items: tuple[SourceItem, ...] = ()
    dates: tuple[str, ...] = ()
    path: Path | None = None
    modality: str | None = None
    dtypes: tuple[str, ...] = ()
    sign: Signer | None = field(default=None, compare=False)

    @classmethod
    def open(
        cls,
        path: Path,
        bands: int,
        band_names: Sequence[str] = (),
        *,
        scale: float = 1.0,
        offset: float = 0.0,
        to_db: bool = False,
    ) -> SceneInput:
        """A local GeoTIFF of the model's bands (``bands`` of them; ``band_names`` in model order).

        Bands are read by name when the file's band descriptions name every one of ``band_names``: as model
        band names (``NIR_NARROW``), Sentinel-2 or HLS S30 band ids (``B8A``) or STAC common names
        (``nir08``); so a 12-band Sentinel-2 file gives Prithvi its six bands. Otherwise a file of exactly
        ``bands`` bands is read in file order, unless its descriptions name other bands (refused: a file
        described as ``B01`` ... ``B06`` is not Prithvi's six bands). Stored values become model values as
        ``value x scale + offset``.
        """
        path = Path(path)
        if not path.is_file():
            raise InvalidSceneError(f"input not found: {path}")
        header = read_header(str(path))
        if header.located_by_gcps:
            raise InvalidSceneError(f"{path} has no CRS; georeference it first (e.g. gdal_edit.py -a_srs EPSG:<code>)")
        grid, descriptions, count = header.grid, header.descriptions, len(header.dtypes)
        indexes = _indexes_by_description(descriptions, band_names)
        if indexes is None:
            if count != bands:
                wanted = f" ({', '.join(_band_ids(band_names))})" if band_names else ""
                raise InvalidSceneError(
                    f"{path} has {count} band(s); expected {bands}{wanted}, or band descriptions that name them"
                )
            named = [text for text in descriptions if text and _names_a_band(text.strip())]
            if band_names and named:
                raise InvalidSceneError(
                    f"{path}'s band descriptions name {', '.join(named)}, but not each of the bands the model takes "
                    f"({', '.join(_band_ids(band_names))}): give a file with those bands, or remove the descriptions "
                    "to have its bands read in file order"
                )
            indexes = tuple(range(1, count + 1))
        names = tuple(band_names) if len(band_names) == len(indexes) else tuple(f"band_{i}" for i in indexes)
        reads = tuple(
            BandRead(str(path), index, name, scale, offset, to_db) for index, name in zip(indexes, names)
        )
        return cls(str(path), grid, reads, path=path)

    @property
    def height(self) -> int:
        return self.grid.height

    @property
    def width(self) -> int:
        return self.grid.width

    @property
    def profile(self) -> dict:
        return {"crs": self.grid.crs, "transform": self.grid.transform}

    @property
    def indexes(self) -> tuple[int, ...]:
        return tuple(band.index for band in self.bands)

    @property
    def local_files(self) -> list[Path]:
        """The local files it reads, so that no output may replace one."""
        return sorted({Path(band.location) for band in self.bands if not is_url(band.location)})

    def centre_lat_lon(self) -> tuple[float, float]:
        """Latitude and longitude (WGS84 degrees) of the scene's centre."""
        x, y = self.grid.transform @ (self.width / 2, self.height / 2)
        (lon,), (lat,) = transform_coordinates(self.grid.crs, "EPSG:4326", [x], [y])
        return lat, lon

    def fingerprint(self) -> dict:
        """What identifies the input for resuming: local files by size and time, remote ones by href without query
        (a new signature is the same input), the conversions and the grid."""
        files = {}
        for path in self.local_files:
            stat = path.stat()
            files[str(path.resolve())] = [stat.st_size, stat.st_mtime_ns]
        record = {"input": self.name, "files": files, "grid": self.grid.describe(),
                  "bands": [band.describe() for band in self.bands]}
        if self.masks:
            record["masks"] = [without_query(mask.location) for mask in self.masks]
        return record

    def describe(self) -> dict:
        """The source items and each band's conversion, for outputs' provenance."""
        return {"items": [item.describe() for item in self.items], "bands": [band.describe() for band in self.bands],
                "grid": self.grid.describe(), "masks": [without_query(mask.location) for mask in self.masks]}

    def reader(self) -> SceneReader:
        return SceneReader(self)


class SceneReader:
    """Reads the ``tile`` x ``tile`` model input of a window: float32 model values and a validity mask.

    Each file is opened once, with the GeoTIFF driver only, and warped onto the scene's grid when its grid
    differs. The files of an area are read concurrently, each always by the same one of up to
    :data:`READ_THREADS` threads (GDAL's dataset handles may not be used by two threads at once). A read that
    fails on a scene with a signer is tried once more with the file signed afresh (an expired signature).
    One reader serves one caller at a time.
    """

    def __init__(self, scene: SceneInput):
        self.scene = scene
        self._datasets: dict[tuple[str, str], object] = {}
        self._opened: dict[str, list] = {}
        locations = list(dict.fromkeys([band.location for band in scene.bands] + [mask.location for mask in scene.masks]))
        self._threads = [
            ThreadPoolExecutor(1, thread_name_prefix=f"axs-read-file-{index}") for index in range(min(READ_THREADS, len(locations)))
        ]
        self._thread_of = {location: self._threads[index % len(self._threads)] for index, location in enumerate(locations)}
        self._block_budget = max(BLOCK_CACHE_BYTES // max(len(locations), 1), FILE_BLOCK_CACHE_BYTES)

    def close(self) -> None:
        for thread in self._threads:
            thread.shutdown(cancel_futures=True)
        for location in list(self._opened):
            self._close(location)

    def read(self, window: Window, tile: int) -> tuple[np.ndarray, np.ndarray]:
        """``(values [bands, tile, tile] float32, valid [tile, tile] bool)``; outside the scene by reflection."""
        height, width = self.scene.height, self.scene.width
        top, left = max(window.row, 0), max(window.col, 0)
        bottom, right = min(window.row + tile, height), min(window.col + tile, width)
        values, valid = self.read_area(top, left, bottom - top, right - left)
        pad = ((top - window.row, window.row + tile - bottom), (left - window.col, window.col + tile - right))
        if any(any(side) for side in pad):
            mode = "reflect" if min(values.shape[1:]) > 1 else "edge"
            values = np.pad(values, ((0, 0), *pad), mode=mode)
            valid = np.pad(valid, pad, mode=mode)
        return values, valid

    def read_area(self, top: int, left: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """``(values [bands, height, width] float32, valid [height, width] bool)`` of an area inside the scene.

        A pixel is valid where every band's file mask and ``nodata`` allow it, the values are finite, and no
        cloud mask marks it."""
        area = RasterWindow(left, top, width, height)
        values = np.empty((len(self.scene.bands), height, width), dtype=np.float32)
        reads = [
            self._thread_of[location].submit(self._read_bands, location, resampling, positions, area, values)
            for (location, resampling), positions in self._groups().items()
        ] + [self._thread_of[mask.location].submit(self._read_mask, mask, area) for mask in self.scene.masks]
        valid = np.ones((height, width), dtype=bool)
        for read in reads:
            valid &= read.result()
        return values, valid & np.isfinite(values).all(axis=0)

    def _read_bands(
        self, location: str, resampling: str, positions: list[int], area: RasterWindow, values: np.ndarray
    ) -> np.ndarray:
        """Fill ``values`` at ``positions`` from one file; the pixels those bands leave valid."""
        reads = [self.scene.bands[position] for position in positions]
        indexes = [band.index for band in reads]
        try:
            stored, masks = self._with_fresh_signature(
                location, lambda dataset: (dataset.read(indexes, window=area, out_dtype="float64"),
                                           dataset.read_masks(indexes, window=area)), resampling)
        except (OSError, CPLE_BaseError, SourceReadError) as error:
            raise _read_failure(reads[0], error) from None
        valid = (masks > 0).all(axis=0)
        for position, band, raw in zip(positions, reads, stored):
            if band.nodata is not None:
                valid &= raw != band.nodata
            values[position] = _to_model_units(raw, band)
        return valid

    def _read_mask(self, mask: MaskRead, area: RasterWindow) -> np.ndarray:
        """The pixels a cloud mask leaves valid."""
        try:
            stored = self._with_fresh_signature(
                mask.location, lambda dataset: dataset.read(mask.index, window=area, out_dtype="float64"), "nearest")
        except (OSError, CPLE_BaseError, SourceReadError) as error:
            raise _read_failure(mask, error) from None
        return ~mask.masked(np.nan_to_num(stored))

    def _with_fresh_signature(self, location: str, read, resampling: str):
        try:
            return read(self._dataset(location, resampling))
        except (OSError, CPLE_BaseError, SourceReadError, UntrustedItemError):  # a refused range reads as no GeoTIFF
            if self.scene.sign is None or not is_url(location):
                raise
            logger.info("reading %s failed; signing it again and retrying once", without_query(location))
            self._close(location)
            return read(self._dataset(location, resampling))

    def _groups(self) -> dict[tuple[str, str], list[int]]:
        groups: dict[tuple[str, str], list[int]] = {}
        for position, band in enumerate(self.scene.bands):
            groups.setdefault((band.location, band.resampling), []).append(position)
        return groups

    def _close(self, location: str) -> None:
        for key in [key for key in self._datasets if key[0] == location]:
            del self._datasets[key]
        for dataset in reversed(self._opened.pop(location, [])):
            dataset.close()

    def _dataset(self, location: str, resampling: str):
        key = (location, resampling)
        if key not in self._datasets:
            source = open_raster(signed(location, self.scene.sign))
            opened = self._opened.setdefault(location, [])
            opened.append(source)
            grid = self.scene.grid
            offset = _pixel_offset(source, grid)
            if offset is not None:
                self._datasets[key] = _BlockReader(source, *offset, self._block_budget)
            elif source.crs is not None and source.crs == grid.crs and _north_up(source.transform):
                self._datasets[key] = _Resampled(
                    _BlockReader(source, 0, 0, self._block_budget), source.transform, grid, Resampling[resampling]
                )
            elif source.crs is None and source.gcps[0]:
                self._datasets[key] = _GeocodedByGcps(source, grid, Resampling[resampling])
            else:
                vrt = WarpedVRT(
                    source, crs=grid.crs, transform=grid.transform, width=grid.width, height=grid.height,
                    resampling=Resampling[resampling], dtype="float64", nodata=math.nan,
                )
                opened.append(vrt)
                self._datasets[key] = vrt
        return self._datasets[key]


class _BlockReader:
    """Reads of a file whose pixels are the scene's (same CRS and pixel size, a whole-pixel offset), put together
    from whole blocks of the file, each read once while it is among the most recently used: GDAL fetches a remote
    COG's tiles again for every read that does not line up with them. Kept are the block rows the tallest read so
    far spans, and one more (windows go row by row, so the next row of windows finds its upper blocks), within
    ``budget`` bytes of decoded blocks; so memory does not grow with the scene. Pixels outside the file are NaN
    and masked."""

    def __init__(self, source, row_offset: int, col_offset: int, budget: int):
        self.source, self.row_offset, self.col_offset, self.budget = source, row_offset, col_offset, budget
        self.block_height, self.block_width = source.block_shapes[0]
        pixel_bytes = max(np.dtype(dtype).itemsize for dtype in source.dtypes) + 1  # value and mask
        blocks_across = math.ceil(source.width / self.block_width)
        self._block_row_bytes = blocks_across * self.block_height * self.block_width * pixel_bytes * source.count
        self._rows_kept = 1
        self._blocks: OrderedDict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._bytes = 0

    def read(self, indexes: Sequence[int] | int, window: RasterWindow, out_dtype: str = "float64") -> np.ndarray:
        """As rasterio's ``read``: ``[bands, h, w]`` for a sequence of band indexes, ``[h, w]`` for one index."""
        if isinstance(indexes, int):
            return self._assemble(indexes, window)[0].astype(out_dtype, copy=False)
        return np.stack([self._assemble(index, window)[0] for index in indexes]).astype(out_dtype, copy=False)

    def read_masks(self, indexes: Sequence[int], window: RasterWindow) -> np.ndarray:
        return np.stack([self._assemble(index, window)[1] for index in indexes])

    def _assemble(self, index: int, window: RasterWindow) -> tuple[np.ndarray, np.ndarray]:
        height, width = int(window.height), int(window.width)
        top, left = int(window.row_off) + self.row_offset, int(window.col_off) + self.col_offset
        values = np.full((height, width), np.nan)
        masks = np.zeros((height, width), dtype=np.uint8)
        rows = range(max(top, 0) // self.block_height, (min(top + height, self.source.height) - 1) // self.block_height + 1)
        cols = range(max(left, 0) // self.block_width, (min(left + width, self.source.width) - 1) // self.block_width + 1)
        self._rows_kept = max(self._rows_kept, len(rows) + 1)
        for block_row in rows:
            for block_col in cols:
                block, mask = self._block(index, block_row, block_col)
                block_top, block_left = block_row * self.block_height, block_col * self.block_width
                row_start, row_stop = max(top, block_top), min(top + height, block_top + block.shape[0])
                col_start, col_stop = max(left, block_left), min(left + width, block_left + block.shape[1])
                if row_start >= row_stop or col_start >= col_stop:
                    continue
                target = (slice(row_start - top, row_stop - top), slice(col_start - left, col_stop - left))
                source = (slice(row_start - block_top, row_stop - block_top), slice(col_start - block_left, col_stop - block_left))
                values[target], masks[target] = block[source], mask[source]
        return values, masks

    def _block(self, index: int, block_row: int, block_col: int) -> tuple[np.ndarray, np.ndarray]:
        key = (index, block_row, block_col)
        if key in self._blocks:
            self._blocks.move_to_end(key)
            return self._blocks[key]
        top, left = block_row * self.block_height, block_col * self.block_width
        window = RasterWindow(left, top, min(self.block_width, self.source.width - left),
                              min(self.block_height, self.source.height - top))
        entry = (self.source.read(index, window=window), self.source.read_masks(index, window=window))
        self._blocks[key] = entry
        self._bytes += entry[0].nbytes + entry[1].nbytes
        kept = min(self.budget, self._rows_kept * self._block_row_bytes)
        while self._bytes > kept and len(self._blocks) > 1:
            _, (old, old_mask) = self._blocks.popitem(last=False)
            self._bytes -= old.nbytes + old_mask.nbytes
        return entry


class _Resampled:
    """A file in the scene's CRS but on other pixels (20 m bands on a 10 m grid, a shifted area), resampled window
    by window: the file's pixels under the window (and a margin) come whole-block from a :class:`_BlockReader`,
    and GDAL's warper resamples them in memory, as a warped VRT would, without fetching any tile twice. Missing
    pixels are NaN."""

    MARGIN = 2

    def __init__(self, blocks: _BlockReader, transform: Affine, grid: Grid, resampling: Resampling):
        self.blocks, self.transform, self.grid, self.resampling = blocks, transform, grid, resampling

    def read(self, indexes: Sequence[int] | int, window: RasterWindow, out_dtype: str = "float64") -> np.ndarray:
        from rasterio.warp import reproject
        from rasterio.windows import from_bounds
        from rasterio.windows import transform as window_transform

        single = isinstance(indexes, int)
        bands = [indexes] if single else list(indexes)
        target = window_transform(window, self.grid.transform)
        height, width = int(window.height), int(window.width)
        west, north = target.c, target.f
        east, south = west + width * target.a, north + height * target.e
        area = from_bounds(west, south, east, north, self.transform)
        top, left = math.floor(area.row_off) - self.MARGIN, math.floor(area.col_off) - self.MARGIN
        bottom = math.ceil(area.row_off + area.height) + self.MARGIN
        right = math.ceil(area.col_off + area.width) + self.MARGIN
        source_window = RasterWindow(left, top, right - left, bottom - top)
        stored = self.blocks.read(bands, source_window)
        stored[self.blocks.read_masks(bands, source_window) == 0] = np.nan
        out = np.full((len(bands), height, width), np.nan)
        reproject(
            stored, out, src_transform=window_transform(source_window, self.transform), src_crs=self.grid.crs,
            dst_transform=target, dst_crs=self.grid.crs, resampling=self.resampling, src_nodata=np.nan,
            dst_nodata=np.nan,
        )
        return (out[0] if single else out).astype(out_dtype, copy=False)

    def read_masks(self, indexes: Sequence[int], window: RasterWindow) -> np.ndarray:
        """All valid: what is missing is NaN in :meth:`read`."""
        return np.full((len(indexes), int(window.height), int(window.width)), 255, dtype=np.uint8)


def _north_up(transform: Affine) -> bool:
    return transform.b == 0 and transform.d == 0 and transform.a > 0 and transform.e < 0


class _GeocodedByGcps:
    """A raster located only by ground control points, read window by window on a map grid: GDAL's warper with
    its GCP transformer (``rasterio.warp.reproject`` with ``gcps``), reading only the source blocks a window
    needs. Pixels outside the raster, or nodata in it, are NaN."""

    def __init__(self, source, grid: Grid, resampling: Resampling):
        self.source, self.grid, self.resampling = source, grid, resampling
        self.gcps, self.gcp_crs = source.gcps

    def read(self, indexes: Sequence[int], window: RasterWindow, out_dtype: str = "float64") -> np.ndarray:
        from rasterio.warp import reproject
        from rasterio.windows import transform as window_transform

        out = np.full((len(indexes), int(window.height), int(window.width)), np.nan, dtype="float64")
        for position, index in enumerate(indexes):
            reproject(
                rasterio.band(self.source, index), out[position], gcps=self.gcps, src_crs=self.gcp_crs,
                dst_transform=window_transform(window, self.grid.transform), dst_crs=self.grid.crs,
                resampling=self.resampling, src_nodata=self.source.nodata, dst_nodata=np.nan,
            )
        return out.astype(out_dtype, copy=False)

    def read_masks(self, indexes: Sequence[int], window: RasterWindow) -> np.ndarray:
        """All valid: what is missing is NaN in :meth:`read`."""
        return np.full((len(indexes), int(window.height), int(window.width)), 255, dtype=np.uint8)


def open_raster(location: str):
    """``location`` opened with the GeoTIFF driver only; any other format is refused by name.

    Raises:
        UntrustedItemError: not a GeoTIFF.
        SourceReadError: missing (404), refused (401/403) or otherwise unreadable, said in one line.
    """
    try:
        return rasterio.open(gdal_path(location), driver=RASTER_DRIVER)
    except RasterioIOError as error:
        message = " ".join(redact(str(error)).split())
        shown = without_query(location)
        if "not recognized as" in message or "not recognised as" in message or "driver" in message.lower():
            raise UntrustedItemError(
                f"{shown} is not a GeoTIFF; only Cloud-Optimized GeoTIFFs are read "
                "(VRT, zip and other formats are refused, and nothing they name is opened)"
            ) from None
        raise SourceReadError(f"cannot open {shown}: {_http_advice(message)}") from None


def _read_failure(read: BandRead | MaskRead, error: BaseException) -> OSError:
    """A failed read as one line naming the item and asset (or file), without any query string."""
    shown = without_query(read.location)
    where = f"item {read.item} asset {read.asset!r} ({shown})" if read.item else shown
    message = " ".join(redact(str(error.__cause__ or error)).split())
    if isinstance(error, SourceReadError):
        return OSError(f"{where}: {message}")
    return OSError(f"{where}: {_http_advice(message)}")


def _http_advice(message: str) -> str:
    """GDAL's reason for a failed open, with what to do about the common HTTP answers."""
    code = re.search(r"HTTP response code: (\d+)", message)
    status = int(code.group(1)) if code else None
    if status == 404:
        return "not found (HTTP 404): the item names a file its server does not have"
    if status in (401, 403):
        return (f"refused (HTTP {status}): the link may need signing or its signature has expired "
                "(Planetary Computer: sign the items again)")
    if status is not None:
        return f"the server answered HTTP {status}; try again later"
    return message


def _pixel_offset(source, grid: Grid) -> tuple[int, int] | None:
    """``(rows, columns)`` from the scene's pixels to the file's when the file has the scene's CRS and pixel size on
    a whole-pixel offset (no resampling needed); else ``None``."""
    if source.crs is None or source.crs != grid.crs:
        return None
    file, scene = source.transform, grid.transform
    if not (math.isclose(file.a, scene.a) and math.isclose(file.e, scene.e) and file.b == scene.b == 0 and file.d == scene.d == 0):
        return None
    columns, rows = (scene.c - file.c) / file.a, (scene.f - file.f) / file.e
    if abs(columns - round(columns)) > 1e-6 or abs(rows - round(rows)) > 1e-6:
        return None
    return round(rows), round(columns)


def _to_model_units(raw: np.ndarray, band: BandRead) -> np.ndarray:
    values = raw * band.scale + band.offset
    if band.to_db:
        with np.errstate(invalid="ignore"):
            values = 10 * np.log10(np.maximum(values, LINEAR_FLOOR))
    return values.astype(np.float32)


def _indexes_by_description(descriptions: Sequence[str | None], band_names: Sequence[str]) -> tuple[int, ...] | None:
    """The 1-based file bands whose descriptions name ``band_names``, in that order; ``None`` unless all are named."""
    if not band_names:
        return None
    found = []
    for band in band_names:
        matches = [
            index for index, description in enumerate(descriptions, start=1)
            if description and _describes(description.strip(), band)
        ]
        if len(matches) != 1:
            return None
        found.append(matches[0])
    return tuple(found) if len(set(found)) == len(found) else None


def _describes(description: str, band: str) -> bool:
    if description.upper() == band:
        return True
    if band not in conventions.BAND_IDENTIFIERS:
        return False
    identity = conventions.BAND_IDENTIFIERS[band]
    if description.lower() == identity.common_name and identity.unique_common_name:
        return True
    return description in identity.names or description.upper() in identity.names


def _names_a_band(description: str) -> bool:
    return any(_describes(description, band) for band in conventions.BAND_IDENTIFIERS)


def _band_ids(band_names: Sequence[str]) -> list[str]:
    """Each band as ``NAME (id)``: its Sentinel-2 band id where it has one."""
    named = []
    for band in band_names:
        identity = conventions.BAND_IDENTIFIERS.get(band)
        named.append(f"{band} ({identity.names[0]})" if identity and identity.names[0].startswith("B") else band)
    return named


def finest_grid(grids: Sequence[Grid]) -> Grid:
    """The grid of smallest pixels among ``grids`` (the first such)."""
    return min(grids, key=lambda grid: grid.resolution)


def grid_for_area(
    reference: Grid,
    *,
    bbox: Sequence[float] | None = None,
    crs: str | None = None,
    resolution: float | None = None,
) -> Grid:
    """The grid asked for: ``reference`` unless ``bbox`` (WGS84 west, south, east, north), ``crs`` or
    ``resolution`` (in the CRS's units) change it. A grid in the reference's CRS and resolution stays aligned to
    the reference's pixels, so that no band on it is resampled."""
    from rasterio.crs import CRS
    from rasterio.warp import transform_bounds

    if bbox is None and crs is None and resolution is None:
        return reference
    try:
        target_crs = CRS.from_user_input(crs) if crs else reference.crs
    except rasterio.errors.CRSError as error:
        raise InvalidSceneError(f"`crs` {crs!r} is not a coordinate reference system ({error}); pass e.g. EPSG:32633") from None
    size = float(resolution) if resolution is not None else None
    if size is not None and not size > 0:
        raise InvalidSceneError(f"`resolution` must be positive, got {resolution}")
    reference_bounds = rasterio.transform.array_bounds(reference.height, reference.width, reference.transform)
    if bbox is not None:
        west, south, east, north = _checked_bbox(bbox)
        bounds = transform_bounds("EPSG:4326", target_crs, west, south, east, north, densify_pts=21)
    else:
        west, south, east, north = reference_bounds
        bounds = transform_bounds(reference.crs, target_crs, west, south, east, north, densify_pts=21)
    if size is None:
        if target_crs == reference.crs:
            size = reference.resolution
        else:
            raise InvalidSceneError("with `crs` other than the scene's, give `resolution` too (in the CRS's units)")
    if target_crs == reference.crs and math.isclose(size, reference.resolution):
        origin_x, origin_y = reference.transform.c, reference.transform.f
    else:
        origin_x, origin_y = 0.0, 0.0
    left = origin_x + math.floor((bounds[0] - origin_x) / size) * size
    top = origin_y - math.floor((origin_y - bounds[3]) / size) * size
    right = origin_x + math.ceil((bounds[2] - origin_x) / size) * size
    bottom = origin_y - math.ceil((origin_y - bounds[1]) / size) * size
    width, height = round((right - left) / size), round((top - bottom) / size)
    if width < 1 or height < 1:
        raise InvalidSceneError(f"the area {list(bbox or bounds)} is smaller than one pixel of {size:g}")
    grid = Grid(target_crs, Affine(size, 0, left, 0, -size, top), width, height)
    if bbox is not None and target_crs == reference.crs and not _overlaps(grid, reference_bounds):
        raise InvalidSceneError(f"the area {list(bbox)} does not overlap the scene: check --bbox (west south east north, in degrees)")
    return grid


def _checked_bbox(bbox: Sequence[float]) -> tuple[float, float, float, float]:
    if len(bbox) != 4:
        raise InvalidSceneError(f"`bbox` takes four numbers (west, south, east, north in degrees), got {len(bbox)}")
    west, south, east, north = map(float, bbox)
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise InvalidSceneError(
            f"`bbox` {list(bbox)} is not west south east north in degrees (west < east, south < north)"
        )
    return west, south, east, north


def _overlaps(grid: Grid, bounds: tuple[float, float, float, float]) -> bool:
    west, south, east, north = rasterio.transform.array_bounds(grid.height, grid.width, grid.transform)
    other_west, other_south, other_east, other_north = bounds
    return west < other_east and other_west < east and south < other_north and other_south < north


@dataclass(frozen=True)
class FileHeader:
    """What a file's header says: its grid (for a raster located only by ground control points, the grid GDAL
    warps it onto in the GCPs' CRS), its first band's data type, whether it is located by GCPs, and each band's
    description and data type."""

    grid: Grid
    dtype: str
    located_by_gcps: bool
    descriptions: tuple[str | None, ...] = ()
    dtypes: tuple[str, ...] = ()


def read_header(location: str, sign: Signer | None = None) -> FileHeader:
    """The header of the GeoTIFF at ``location`` (a few kilobytes: one or two HTTP Range requests for a COG),
    signed with ``sign`` where given."""
    from rasterio.warp import calculate_default_transform

    with gdal_environment(), open_raster(signed(location, sign)) as src:
        gcps, gcp_crs = src.gcps
        if src.crs is None and gcps:
            transform, width, height = calculate_default_transform(gcp_crs, gcp_crs, src.width, src.height, gcps=gcps)
            return FileHeader(Grid(gcp_crs, transform, width, height), src.dtypes[0], True, src.descriptions, src.dtypes)
        if src.crs is None:
            raise InvalidSceneError(
                f"{without_query(location)} has no CRS and no ground control points: it cannot be placed on a map; "
                "georeference it first (e.g. gdal_edit.py -a_srs EPSG:<code>)"
            )
        return FileHeader(Grid(src.crs, src.transform, src.width, src.height), src.dtypes[0], False, src.descriptions, src.dtypes)

