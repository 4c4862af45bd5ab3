"""Writing outputs through a resumable partial folder renamed at the end.

An output ``OUT.tif`` is built in ``OUT.tif.partial/``: ``run.json`` describes the run, and each finished
window's core is saved there as ``<window>.npy`` (written under a temporary name, then renamed, so a file
that exists is complete). A run started again with the same description skips those windows. When every
window is there, a tiled GeoTIFF is assembled inside the folder, copied into a Cloud-Optimized GeoTIFF there
(overviews built from the file on disk) and renamed to ``OUT.tif``; only then is the folder removed.
``OUT.tif`` therefore exists only when it is complete, and an old ``OUT.tif`` that a run replaces stays until
that rename.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window as RasterWindow

from ..errors import InvalidSceneError, OutputExistsError
from .cog import write_cog
from .quicklook import Quicklook
from .windows import Window, WindowPlan

BLOCK_SIZE = 256
PARTIAL_SUFFIX = ".partial"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutputSpec:
    """One raster a run writes.

    Attributes:
        path: the final GeoTIFF.
        bands, dtype, nodata: of the written raster.
        encode: model output of the core ``[C, h, w]`` float32 and its validity ``[h, w]`` -> ``[bands, h, w]``
            in ``dtype``, with ``nodata`` where not valid.
        descriptions: band descriptions; tags: dataset tags; band_tags: per-band tags.
        units, scale, offset: of every band (GDAL's unit type, scale and offset: value * scale + offset is
            in ``units``); ``None`` leaves them unset.
        colormap: a colour table for band 1 (``{value: (r, g, b, a)}``), for class maps.
        resampling: how the COG's overviews are made (GDAL's name: ``"mode"`` for classes, ``"average"``
            for continuous values).
        quicklook: a PNG to write from the finished raster.
    """

    path: Path
    bands: int
    dtype: str
    nodata: float | int
    encode: Callable[[np.ndarray, np.ndarray], np.ndarray]
    descriptions: Sequence[str] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    band_tags: Sequence[Mapping[str, str]] = ()
    units: str | None = None
    scale: float | None = None
    offset: float | None = None
    colormap: Mapping[int, tuple[int, int, int, int]] | None = None
    resampling: str = "nearest"
    quicklook: Quicklook | None = None

    @property
    def partial(self) -> Path:
        return self.path.with_name(self.path.name + PARTIAL_SUFFIX)


class PartialOutput:
    """The ``OUT.tif.partial/`` folder of one output (see the module docstring)."""

    RUN_FILE = "run.json"

    def __init__(self, spec: OutputSpec):
        self.spec = spec
        self.folder = spec.partial

    def claim(self, run: Mapping, overwrite: bool, plan: WindowPlan) -> None:
        """Make the folder ready for ``run`` (rank 0, holding the output's lock); the existing output stays.

        An existing output, or a partial folder of another run, is refused unless ``overwrite``; with it, the
        other run's folder is discarded, and the output is replaced only when the new one is complete. A folder
        left beside its finished output by a run killed before its clean-up is removed.
        """
        if self._is_leftover(plan):
            logger.info("removing %s: left by a finished run killed before its clean-up", self.folder)
            shutil.rmtree(self.folder)
        wanted = _normalised(run)
        saved = (self._saved_run() or {}) if self.folder.exists() else wanted
        if not overwrite:
            refuse_existing_output(self.spec.path, overwrite)
            if saved != wanted:
                changed = sorted(key for key in {*saved, *wanted} if saved.get(key) != wanted.get(key))
                raise OutputExistsError(
                    f"{self.folder} holds a partial output of a different run ({', '.join(changed)} changed); "
                    "call again with the same arguments to resume it, or pass `overwrite=True` to discard it"
                )
        if saved != wanted:
            shutil.rmtree(self.folder)
        if not self.folder.exists():
            staging = self.folder.with_name(f".{self.folder.name}.{os.getpid()}")
            staging.mkdir()
            try:
                (staging / self.RUN_FILE).write_text(json.dumps(run, indent=1, sort_keys=True))
                os.replace(staging, self.folder)
            finally:
                shutil.rmtree(staging, ignore_errors=True)

    def done(self, window: Window) -> bool:
        return (self.folder / f"{window.name}.npy").exists()

    def save(self, window: Window, core: np.ndarray) -> None:
        final = self.folder / f"{window.name}.npy"
        temporary = self.folder / f".{window.name}.{os.getpid()}.npy"
        try:
            np.save(temporary, core, allow_pickle=False)
            os.replace(temporary, final)
        finally:
            temporary.unlink(missing_ok=True)

    def count_done(self) -> int:
        return sum(1 for entry in os.scandir(self.folder) if entry.name.startswith("r") and entry.name.endswith(".npy"))

    def assemble(self, profile: Mapping, plan: WindowPlan) -> None:
        """Write the COG from the saved cores, rename it to the final name, and remove the folder."""
        spec = self.spec
        assembling = self.folder / f"assembling{spec.path.suffix or '.tif'}"
        with rasterio.open(assembling, "w", **self._assembling_profile(profile, plan)) as dst:
            for top in range(0, plan.height, BLOCK_SIZE):
                for left in range(0, plan.width, BLOCK_SIZE):
                    height, width = min(BLOCK_SIZE, plan.height - top), min(BLOCK_SIZE, plan.width - left)
                    dst.write(self._block(plan, top, left, height, width), window=RasterWindow(left, top, width, height))
            self._describe(dst)
        cog = self.folder / f"cog{spec.path.suffix or '.tif'}"
        write_cog(assembling, cog, spec.resampling, BLOCK_SIZE)
        if spec.quicklook is not None:
            spec.quicklook.write(assembling)
        os.replace(cog, spec.path)
        shutil.rmtree(self.folder)

    def _assembling_profile(self, profile: Mapping, plan: WindowPlan) -> dict:
        """Uncompressed: the COG copy reads it once for the full resolution and again for the overviews; from a
        deflate-compressed file the copy of a 3072 x 3072 x 12 float32 scene took 5 to 8 times longer."""
        spec = self.spec
        return {
            "driver": "GTiff", "width": plan.width, "height": plan.height, "count": spec.bands,
            "crs": profile.get("crs"), "transform": profile.get("transform"), "dtype": spec.dtype,
            "nodata": spec.nodata, "tiled": True, "blockxsize": BLOCK_SIZE, "blockysize": BLOCK_SIZE,
            "interleave": "pixel", "BIGTIFF": "IF_SAFER",
        }

    def _describe(self, dst: rasterio.io.DatasetWriter) -> None:
        """Band descriptions, tags, units, scale and offset, colour table: what the COG copy carries over."""
        spec = self.spec
        for index, description in enumerate(spec.descriptions, start=1):
            dst.set_band_description(index, description)
        for index, tags in enumerate(spec.band_tags, start=1):
            dst.update_tags(index, **tags)
        if spec.tags:
            dst.update_tags(**spec.tags)
        if spec.units is not None:
            dst.units = [spec.units] * spec.bands
        if spec.scale is not None:
            dst.scales = [spec.scale] * spec.bands
        if spec.offset is not None:
            dst.offsets = [spec.offset] * spec.bands
        if spec.colormap is not None:
            dst.write_colormap(1, spec.colormap)

    def _block(self, plan: WindowPlan, top: int, left: int, height: int, width: int) -> np.ndarray:
        """One output block from the parts of the saved cores that cover it (read memory-mapped).

        Writing whole blocks in file order compresses each block once. Writing cores that straddle blocks
        made GDAL flush half-filled compressed blocks and rewrite them at the end of the file (a 10240 x 10240
        output took twice its size on disk, and twice the time).
        """
        block = np.empty((self.spec.bands, height, width), dtype=self.spec.dtype)
        for window in plan.cores_overlapping(top, left, height, width):
            core = np.load(self.folder / f"{window.name}.npy", mmap_mode="r", allow_pickle=False)
            rows = slice(max(top, window.core_row), min(top + height, window.core_row + window.core_height))
            cols = slice(max(left, window.core_col), min(left + width, window.core_col + window.core_width))
            block[:, rows.start - top : rows.stop - top, cols.start - left : cols.stop - left] = core[
                :, rows.start - window.core_row : rows.stop - window.core_row,
                cols.start - window.core_col : cols.stop - window.core_col,
            ]
        return block

    def _is_leftover(self, plan: WindowPlan) -> bool:
        """Whether the folder is a finished run's: every window saved, and the output written after it began."""
        if not (self.spec.path.is_file() and (self.folder / self.RUN_FILE).is_file()):
            return False
        begun = (self.folder / self.RUN_FILE).stat().st_mtime_ns
        return self.spec.path.stat().st_mtime_ns >= begun and all(self.done(window) for window in plan.windows)

    def _saved_run(self) -> dict | None:
        try:
            return json.loads((self.folder / self.RUN_FILE).read_text())
        except (OSError, ValueError):
            return None


def refuse_existing_output(path: Path, overwrite: bool) -> None:
    """Refuse to replace the finished output ``path`` unless ``overwrite``."""
    if path.is_file() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass `overwrite=True` to replace it")


def check_output_paths(inputs: Sequence[Path], outputs: Sequence[Path]) -> None:
    """Refuse outputs that cannot be written, are an input file (through any link), or are given twice; touches nothing."""
    for path in outputs:
        if not path.parent.is_dir():
            raise InvalidSceneError(f"output folder not found: {path.parent}; create it first")
        if path.is_dir():
            raise InvalidSceneError(f"{path} is a folder; give the output a file name (e.g. {path / 'out.tif'})")
        if not os.access(path.parent, os.W_OK):
            raise InvalidSceneError(f"cannot write in the output folder {path.parent} (read-only): choose a writable folder")
        for input_path in inputs:
            if _same_file(path, input_path):
                raise InvalidSceneError(f"the output {path} is the input {input_path}: write the output to another file")
    resolved = [path.resolve() for path in outputs]
    for index, path in enumerate(resolved):
        if path in resolved[:index]:
            raise InvalidSceneError(f"{outputs[index]} is given for two outputs: give each output its own file")


def _same_file(path: Path, other: Path) -> bool:
    if path.resolve() == other.resolve():
        return True
    return path.exists() and other.exists() and os.path.samefile(path, other)


def _normalised(run: Mapping) -> dict:
    return json.loads(json.dumps(run, sort_keys=True))
