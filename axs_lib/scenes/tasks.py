"""The scene tasks as Python functions: what ``axs-scenes segment | sar-to-optical | pipeline`` run.

Each takes a *source* (a local GeoTIFF, a STAC item or item collection as a path, URL or pystac object, or a
:class:`~axs_lib.scenes.sources.Search`) and an *output*, and writes the same files as the command: a
Cloud-Optimized GeoTIFF with provenance tags, a quick-look where asked, and with ``stac=True`` a STAC item
beside it. A collection of items (for a single-date model) writes one output per item into the output folder,
``OUTPUT/<item id>.tif``: an item that fails is reported in the result and the others go on, and a finished
output is left as it is, so running the same call again does only what is missing.

Options common to the tasks:
    tile, overlap, batch_size: the windows (see :func:`axs_lib.scenes.stream_model`).
    device, dtype: where and in what precision the models run (``"cpu"``, ``"cuda:0"``; ``"bf16"``, ...).
    overwrite, progress, stac: replace existing outputs; show a progress bar; write STAC items.
    bbox, crs, resolution: the output grid for STAC sources (default: the finest needed band's grid).
    mask_clouds: pixels the item's own mask marks as cloud, cirrus or shadow are nodata.
    scale, offset: model value = stored value x scale + offset, for a local GeoTIFF that carries no metadata.
    sar_modality: ``"S1GRD"`` or ``"S1RTC"`` instead of what the source says (a local GeoTIFF is S1GRD).
    max_items: the most items a collection or search may hold.
    sign: sign remote files as they are opened, and again when a signature expires: ``"planetary-computer"`` or
        a function ``href -> signed href`` (:mod:`axs_lib.scenes.signing`).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import numpy as np
import torch

from ..errors import (
    AxsModelError, BaseModelMismatchError, CheckpointMismatchError, CheckpointNotFoundError, CorruptCheckpointError,
    InvalidSceneError,
)
from ..weights.catalog import TERRAMIND_MODALITIES, TERRAMIND_PATCH_SIZE
from ..weights.fingerprint import weights_fingerprints
from . import bands as B
from . import distributed, products
from .engine import as_tensor, run_scene
from .inputs import SceneInput, read_header
from .items import LocatedItem, item_scene
from .outputs import check_output_paths, refuse_existing_output
from .products import SAR_MODALITIES
from .signing import Signer, signer
from .sources import DEFAULT_MAX_ITEMS, OpenedSource, open_source
from .windows import check_tiling

logger = logging.getLogger(__name__)


@dataclass
class SceneRun:
    """What a task did: the files it wrote, and for a collection the items that failed (id -> message)."""

    written: list[Path] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


@dataclass(frozen=True)
class SourceOptions:
    """How a source becomes the model's bands (see the module docstring)."""

    bbox: Sequence[float] | None = None
    crs: str | None = None
    resolution: float | None = None
    mask_clouds: bool = False
    scale: float = 1.0
    offset: float = 0.0
    sar_modality: str | None = None
    max_items: int = DEFAULT_MAX_ITEMS
    sign: str | Signer | None = None

    def __post_init__(self) -> None:
        signer(self.sign)
        if self.sar_modality is not None and self.sar_modality not in SAR_MODALITIES:
            raise InvalidSceneError(f"`sar_modality` must be one of {', '.join(SAR_MODALITIES)}, got {self.sar_modality!r}")
        if self.max_items < 1:
            raise InvalidSceneError(f"`max_items` must be at least 1, got {self.max_items}")

    @property
    def sign_with(self) -> Signer | None:
        """``sign`` as the function that signs an href."""
        return signer(self.sign)

    def record(self) -> dict:
        record = {name: value for name, value in vars(self).items() if name not in ("max_items", "sign")}
        if self.sign is not None:
            record["sign"] = self.sign if isinstance(self.sign, str) else getattr(self.sign, "__name__", "a function")
        return record


def segment_scene(
    model: object,
    source: object,
    output: str | os.PathLike,
    *,
    probabilities: bool = False,
    standardize: bool = True,
    dates: Sequence[date | str] | None = None,
    quicklook: str | os.PathLike | None = None,
    base_checkpoint: str | os.PathLike | None = None,
    tile: int = 224,
    overlap: int = 32,
    batch_size: int = 4,
    device: str | torch.device | None = None,
    dtype: str | None = None,
    overwrite: bool = False,
    progress: bool = False,
    stac: bool = False,
    **source_options: object,
) -> SceneRun:
    """A class map (or class probabilities with ``probabilities=True``) from a segmentation model.

    Args:
        model: a folder written by ``save_pretrained``, a Lightning ``.ckpt``, or a loaded segmentation model.
        source: the model's bands (see the module docstring); for a model built with ``num_frames=T``, T items
            (a time stack, ordered by date) or a local GeoTIFF of T x the model's bands, date by date.
        output: the GeoTIFF to write; a folder for a collection of items.
        standardize: apply the base model's pretraining mean and std (leave ``False`` for standardised input).
        dates: acquisition dates of the time steps of a local time stack, for models that take them (TL);
            items give their own.
        quicklook: a PNG of the class map to write.
        base_checkpoint: the base weights the model was fine-tuned from, when its folder does not hold them.
    """
    check_tiling(tile, overlap)
    options = SourceOptions(**source_options)
    opened = open_source(source, max_items=options.max_items)  # a wrong source is said before the model loads
    _check_output_free(opened, Path(output), overwrite)
    segmenter, device = _segmentation_model(model, base_checkpoint, device, dtype)
    band_names = segmenter.input_bands
    if standardize and segmenter.in_channels != len(band_names):
        raise InvalidSceneError(
            f"the model takes {segmenter.in_channels} bands; standardisation knows the {len(band_names)} "
            f"pretraining bands ({', '.join(band_names)}) only: standardise the input yourself and pass "
            "`standardize=False`"
        )
    settings = _Settings(tile, overlap, batch_size, device, overwrite, progress, stac, segmenter.patch_size)
    frames = segmenter.num_frames

    def one(scene_source: OpenedSource, target: Path) -> list[Path]:
        scene = _scene(scene_source, band_names, frames, options, by_name=standardize)
        return _segment(segmenter, model, scene, target, settings, probabilities, standardize, dates, quicklook, options)

    if frames > 1 and opened.items:
        return _single(lambda: one(opened, Path(output)))
    return _each(opened, Path(output), one, settings, quicklook)


def sar_to_optical_scene(
    source: object,
    output: str | os.PathLike,
    *,
    generator: str = "large",
    timesteps: int = 12,
    seed: int = 0,
    linear: bool = False,
    as_float: bool = False,
    checkpoint_path: str | os.PathLike | None = None,
    quicklook: str | os.PathLike | None = None,
    tile: int = 224,
    overlap: int = 32,
    batch_size: int = 4,
    device: str | torch.device | None = None,
    dtype: str | None = None,
    overwrite: bool = False,
    progress: bool = False,
    stac: bool = False,
    **source_options: object,
) -> SceneRun:
    """Sentinel-2 L2A reflectance (x 10000) generated by TerraMind from Sentinel-1 backscatter.

    Args:
        source: Sentinel-1 VV and VH: an RTC item feeds TerraMind's S1RTC modality and a GRD one S1GRD (linear
            power converted to dB); a local GeoTIFF is S1GRD in dB, or linear power with ``linear=True``.
        generator: TerraMind 1.0 size (``"tiny"``, ``"small"``, ``"base"``, ``"large"``).
        timesteps, seed: diffusion steps, and the seed combined with each window's position.
        as_float: float32 output instead of uint16.
        checkpoint_path: TerraMind's checkpoint file or folder (default: search).
        quicklook: an RGB PNG to write (default: the output with ``.png``).
    """
    check_tiling(tile, overlap, TERRAMIND_PATCH_SIZE)
    options = SourceOptions(**source_options)
    settings = _Settings(tile, overlap, batch_size, check_device(device), overwrite, progress, stac, TERRAMIND_PATCH_SIZE)
    generation = products.Generation(generator, timesteps, seed, linear, as_float, checkpoint_path, dtype)
    opened = open_source(source, max_items=options.max_items)
    _check_output_free(opened, Path(output), overwrite)
    models: dict[str, torch.nn.Module] = {}

    def one(scene_source: OpenedSource, target: Path) -> list[Path]:
        scene = _sar_scene(scene_source, options, linear)
        look = Path(quicklook) if quicklook is not None else target.with_suffix(".png")
        return _sar_to_optical(scene, target, look, settings, generation, models)

    return _each(opened, Path(output), one, settings, quicklook)


def pipeline_scene(
    source: object,
    output: str | os.PathLike,
    *,
    model: object,
    optical: str | os.PathLike | None = None,
    probabilities: bool = False,
    quicklook: str | os.PathLike | None = None,
    base_checkpoint: str | os.PathLike | None = None,
    generator: str = "large",
    timesteps: int = 12,
    seed: int = 0,
    linear: bool = False,
    as_float: bool = False,
    checkpoint_path: str | os.PathLike | None = None,
    tile: int = 224,
    overlap: int = 32,
    batch_size: int = 4,
    device: str | torch.device | None = None,
    dtype: str | None = None,
    overwrite: bool = False,
    progress: bool = False,
    stac: bool = False,
    **source_options: object,
) -> SceneRun:
    """Sentinel-1 -> generated Sentinel-2 L2A -> classes, in one pass (see :func:`sar_to_optical_scene` and
    :func:`segment_scene` for the arguments); the generated optical scene is written only to ``optical``."""
    options = SourceOptions(**source_options)
    opened = open_source(source, max_items=options.max_items)
    _check_output_free(opened, Path(output), overwrite)
    segmenter, device = _segmentation_model(model, base_checkpoint, device, dtype)
    patch = math.lcm(TERRAMIND_PATCH_SIZE, segmenter.patch_size)
    check_tiling(tile, overlap, patch)
    settings = _Settings(tile, overlap, batch_size, device, overwrite, progress, stac, patch)
    generation = products.Generation(generator, timesteps, seed, linear, as_float, checkpoint_path, dtype)
    _check_pipeline_model(segmenter)
    models: dict[str, torch.nn.Module] = {}

    def one(scene_source: OpenedSource, target: Path) -> list[Path]:
        scene = _sar_scene(scene_source, options, linear)
        optical_path = None
        if optical is not None:
            optical_path = Path(optical) if not opened.is_collection else target.with_name(f"{target.stem}_optical.tif")
        return _pipeline(segmenter, model, scene, target, optical_path, settings, generation, models,
                         probabilities, quicklook)

    return _each(opened, Path(output), one, settings, quicklook)


@dataclass(frozen=True)
class _Settings:
    tile: int
    overlap: int
    batch_size: int
    device: torch.device
    overwrite: bool
    progress: bool
    stac: bool
    multiple_of: int

    def run_arguments(self) -> dict:
        return {"tile": self.tile, "overlap": self.overlap, "batch_size": self.batch_size, "device": self.device,
                "overwrite": self.overwrite, "progress": self.progress, "multiple_of": self.multiple_of}

    def record(self) -> dict:
        return {"tile": self.tile, "overlap": self.overlap, "batch_size": self.batch_size, "stac": self.stac}


def _options(settings: _Settings, options: SourceOptions | None, **given: object) -> dict:
    """The options a run was given, as JSON values (paths and dates as text)."""
    record = {**settings.record(), **(options.record() if options is not None else {}), **given}
    return json.loads(json.dumps(record, default=str))


def _each(
    opened: OpenedSource,
    output: Path,
    one: Callable[[OpenedSource, Path], list[Path]],
    settings: _Settings,
    quicklook: object,
) -> SceneRun:
    """Run ``one`` on the source, or on each item of a collection into the folder ``output``.

    Under ``torchrun``, a collection of at least as many items as ranks is shared by whole items: rank ``r``
    runs items ``r, r + N, ...`` by itself, and every rank returns the whole collection's result.
    """
    if not opened.is_collection:
        return _single(lambda: one(opened, output))
    if quicklook is not None:
        raise InvalidSceneError("`quicklook` names one file: leave it out for a collection (each output gets its own)")
    if output.suffix.lower() in (".tif", ".tiff"):
        raise InvalidSceneError(f"a collection of {len(opened.items)} items writes one output per item: give a folder, not {output}")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InvalidSceneError(f"cannot make the output folder {output} ({error.strerror}): choose another folder") from None
    ranks = distributed.start(settings.device)
    by_items = 1 < ranks.world_size <= len(opened.items)
    mine = ranks.share(list(enumerate(opened.items))) if by_items else list(enumerate(opened.items))
    if by_items:
        logger.info("rank %d of %d runs items %s", ranks.rank, ranks.world_size, ", ".join(l.item.id for _, l in mine))
    with distributed.alone() if by_items else nullcontext():
        done = [(index, _item(located, output, one, settings.overwrite)) for index, located in mine]
    if by_items:
        done = sorted((outcome for rank_done in ranks.gather(done) for outcome in rank_done), key=lambda outcome: outcome[0])
    result = SceneRun()
    for _, item_run in done:
        result.written += item_run.written
        result.skipped += item_run.skipped
        result.failed.update(item_run.failed)
    return result


def _item(located: LocatedItem, output: Path, one: Callable[[OpenedSource, Path], list[Path]], overwrite: bool) -> SceneRun:
    """One item of a collection: written, skipped (its output exists) or failed (with why)."""
    item = located.item
    target = output / f"{_safe_name(item.id)}.tif"
    if target.exists() and not overwrite:
        logger.info("%s exists: item %s is done", target, item.id)
        return SceneRun(skipped=[item.id])
    try:
        return SceneRun(written=one(OpenedSource(item.id, items=(located,)), target))
    except AxsModelError as error:
        if _is_about_the_run(error):
            raise
        message = " ".join(str(error).split())
        logger.warning("item %s failed: %s", item.id, message)
        return SceneRun(failed={item.id: message})


def _check_output_free(opened: OpenedSource, output: Path, overwrite: bool) -> None:
    """Refuse an existing output before any model loads (a collection's finished items are skipped instead)."""
    if not opened.is_collection:
        refuse_existing_output(output, overwrite)


def _is_about_the_run(error: AxsModelError) -> bool:
    """Errors that every item would meet (the model, the weights): raised at once rather than per item."""
    return isinstance(error, (BaseModelMismatchError, CheckpointMismatchError, CheckpointNotFoundError, CorruptCheckpointError))


def _single(run: Callable[[], list[Path]]) -> SceneRun:
    return SceneRun(written=run())


def _safe_name(item_id: str) -> str:
    """An item id as a file name: path separators and other odd characters become ``_``."""
    name = "".join(character if character.isalnum() or character in "-_." else "_" for character in item_id)
    return name.lstrip(".") or "item"


def _scene(opened: OpenedSource, band_names: Sequence[str], frames: int, options: SourceOptions, by_name: bool) -> SceneInput:
    if opened.path is not None:
        _check_no_item_options(options)
        return SceneInput.open(
            opened.path, len(band_names) * frames, band_names if by_name and frames == 1 else (),
            scale=options.scale, offset=options.offset,
        )
    _check_no_file_options(options)
    if frames != len(opened.items):
        raise InvalidSceneError(
            f"the model takes {frames} date(s); {opened.name} gives {len(opened.items)} item(s): give "
            f"{'one item' if frames == 1 else f'{frames} items, one per date'}"
        )
    return item_scene(
        opened.items, band_names, bbox=options.bbox, crs=options.crs, resolution=options.resolution,
        mask_clouds=options.mask_clouds, sar_modality=options.sar_modality, sign=options.sign_with,
    )


def _sar_scene(opened: OpenedSource, options: SourceOptions, linear: bool) -> SceneInput:
    if opened.path is not None:
        _check_no_item_options(options)
        _check_calibrated(opened.path)
        scene = SceneInput.open(opened.path, len(B.S1GRD_BANDS), B.S1GRD_BANDS, scale=options.scale,
                                offset=options.offset, to_db=linear)
        return _with_modality(scene, options.sar_modality or "S1GRD")
    _check_no_file_options(options)
    if linear:
        raise InvalidSceneError("`linear` is for local GeoTIFFs: an item's own product says whether it holds linear power")
    if len(opened.items) != 1:
        raise InvalidSceneError(f"generation takes one date; {opened.name} gives {len(opened.items)} items")
    return item_scene(
        opened.items, B.S1GRD_BANDS, bbox=options.bbox, crs=options.crs, resolution=options.resolution,
        mask_clouds=options.mask_clouds, sar_modality=options.sar_modality, sign=options.sign_with,
    )


def _check_calibrated(path: Path) -> None:
    if path.is_file() and np.dtype(read_header(str(path)).dtype).kind in "iu":
        raise InvalidSceneError(
            f"{path} holds integer numbers, not backscatter in dB or linear power: uncalibrated Sentinel-1 GRD "
            "numbers must be calibrated first (e.g. ESA SNAP's Calibration, or sarsen), or use an RTC product"
        )


def _with_modality(scene: SceneInput, modality: str) -> SceneInput:
    return replace(scene, modality=modality)


def _check_no_item_options(options: SourceOptions) -> None:
    asked = [name for name in ("bbox", "crs", "resolution", "sign") if getattr(options, name) is not None]
    asked += ["mask_clouds"] if options.mask_clouds else []
    if asked:
        raise InvalidSceneError(f"{', '.join(f'`{name}`' for name in asked)} apply to STAC items; a local GeoTIFF is read on its own grid")


def _check_no_file_options(options: SourceOptions) -> None:
    if options.scale != 1.0 or options.offset != 0.0:
        raise InvalidSceneError("`scale` and `offset` are for local GeoTIFFs: an item's units come from its own metadata")


def _segment(
    segmenter, model_source: object, scene: SceneInput, output: Path, settings: _Settings, probabilities: bool,
    standardize: bool, dates: Sequence[date | str] | None, quicklook: object, options: SourceOptions,
) -> list[Path]:
    frames = segmenter.num_frames
    check_output_paths(scene.local_files, [output, *([Path(quicklook)] if quicklook is not None else [])])
    coordinates = _coordinates(segmenter, scene, dates)
    model_mean, model_std = segmenter.input_statistics
    mean = torch.tensor(model_mean)[:, None, None, None]
    std = torch.tensor(model_std)[:, None, None, None]
    device = settings.device

    def predict(batch: torch.Tensor) -> torch.Tensor:
        stack = batch.unflatten(1, (frames, segmenter.in_channels)).transpose(1, 2)  # [B, C, T, H, W]
        if standardize:
            stack = (stack - mean) / std
        images = stack if frames > 1 else stack[:, :, 0]
        given = {name: value.expand(len(batch), *value.shape[1:]).to(device) for name, value in coordinates.items()}
        with torch.inference_mode():
            return as_tensor(segmenter(images.to(device), **given))

    fingerprints = weights_fingerprints(segmentation=segmenter)
    provenance = products.provenance("segment", _options(settings, options, probabilities=probabilities,
                                                  standardize=standardize, dates=dates),
                             fingerprints, scene, segmenter, model_source)
    spec = products.segmentation_output(output, segmenter.num_classes, probabilities, quicklook, provenance)
    run_scene(
        scene, {"classes": spec}, predict, fill=model_mean * frames if standardize else 0.0,
        run={"command": "segment", **_model_identity(model_source), "standardize": standardize,
             "coordinates": {name: value.tolist() for name, value in coordinates.items()}, "weights": fingerprints},
        **settings.run_arguments(),
    )
    description = products.segmentation_description(segmenter, model_source, settings.tile, segmenter.input_bands * frames, standardize)
    return products.written(settings.stac, {"classes": (spec, scene, description)}, provenance)


def _coordinates(segmenter, scene: SceneInput, dates: Sequence[date | str] | None) -> dict[str, torch.Tensor]:
    """What a TL model adds: ``temporal_coords [1, T, 2]`` (year, day of year) from the items' dates or ``dates``,
    and ``location_coords [1, 2]`` (lat, lon) of the scene's centre. Nothing for a model without them."""
    uses = segmenter.coordinates
    if dates and scene.items:
        raise InvalidSceneError("`dates` are for local time stacks: items give their own dates")
    given = [date.fromisoformat(str(day)[:10]) for day in (dates or ())]
    if scene.items and "temporal_coords" in uses:
        given = [date.fromisoformat(moment[:10]) for moment in scene.dates if moment]
    if dates and "temporal_coords" not in uses:
        raise InvalidSceneError(f"`dates` given, but the model ({segmenter.base_model.name}) does not take acquisition dates")
    if dates and len(given) != segmenter.num_frames:
        raise InvalidSceneError(
            f"`dates` gives {len(given)} date(s); the model takes {segmenter.num_frames} time step(s), one date each"
        )
    coordinates = {}
    if given:
        days = [[float(day.year), float(day.timetuple().tm_yday)] for day in given]
        coordinates["temporal_coords"] = torch.tensor([days])
    if "location_coords" in uses:
        coordinates["location_coords"] = torch.tensor([scene.centre_lat_lon()])
    return coordinates


def _sar_to_optical(
    scene: SceneInput, output: Path, quicklook: Path, settings: _Settings, generation: products.Generation, models: dict,
) -> list[Path]:
    check_output_paths(scene.local_files, [output, quicklook])
    modality = scene.modality or "S1GRD"
    generator = _generator(generation, modality, settings.device, models)
    device = settings.device

    def predict(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return generator({modality: batch.to(device)})["S2L2A"].cpu()

    fingerprints = weights_fingerprints(generator=generator)
    provenance = products.provenance("sar-to-optical", _options(settings, None, **generation.identity(), seed=generation.seed),
                             fingerprints, scene, None, None, generation)
    spec = products.optical_output(output, generation.as_float, quicklook, provenance, generation.generator, modality)
    run_scene(
        scene, {"optical": spec}, predict, fill=TERRAMIND_MODALITIES[modality].mean, seed=generation.seed,
        run={"command": "sar-to-optical", **generation.identity(), "modality": modality, "weights": fingerprints},
        **settings.run_arguments(),
    )
    return products.written(settings.stac, {"optical": (spec, scene, products.generator_description(generation, modality, settings.tile))}, provenance)


def _check_pipeline_model(segmenter) -> None:
    band_names = segmenter.input_bands
    if segmenter.in_channels != len(band_names) or not set(band_names) <= set(B.S2L2A_NAMES):
        raise InvalidSceneError(
            f"the segmentation model takes {segmenter.in_channels} bands ({', '.join(band_names)}); the pipeline feeds "
            f"it bands of the generated Sentinel-2 L2A scene ({', '.join(B.S2L2A_NAMES)})"
        )
    if segmenter.num_frames > 1:
        raise InvalidSceneError(
            f"the segmentation model takes time stacks of {segmenter.num_frames} dates; the pipeline generates one "
            "date: segment a stack of scenes (items, or a stacked GeoTIFF with `dates`), or use a single-date model"
        )


def _pipeline(
    segmenter, model_source: object, scene: SceneInput, output: Path, optical: Path | None, settings: _Settings,
    generation: products.Generation, models: dict, probabilities: bool, quicklook: object,
) -> list[Path]:
    extra = [Path(path) for path in (quicklook, optical) if path is not None]
    check_output_paths(scene.local_files, [output, *extra])
    modality = scene.modality or "S1GRD"
    generator = _generator(generation, modality, settings.device, models)
    device = settings.device
    selected = [B.S2L2A_NAMES.index(band) for band in segmenter.input_bands]
    model_mean, model_std = segmenter.input_statistics
    mean = torch.tensor(model_mean)[:, None, None]
    std = torch.tensor(model_std)[:, None, None]

    def predict(batch: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.inference_mode():
            generated = generator({modality: batch.to(device)})["S2L2A"].cpu()
            reflectance = generated[:, selected].clamp(0, B.REFLECTANCE_MAX)
            logits = as_tensor(segmenter(((reflectance - mean) / std).to(device)))
        return {"classes": logits, "optical": generated}

    fingerprints = weights_fingerprints(segmentation=segmenter, generator=generator)
    provenance = products.provenance("pipeline", _options(settings, None, probabilities=probabilities, **generation.identity(),
                                                   seed=generation.seed),
                             fingerprints, scene, segmenter, model_source, generation)
    outputs = {"classes": products.segmentation_output(output, segmenter.num_classes, probabilities, quicklook, provenance)}
    if optical is not None:
        outputs["optical"] = products.optical_output(optical, generation.as_float, None, provenance, generation.generator, modality)
    run_scene(
        scene, outputs, predict, fill=TERRAMIND_MODALITIES[modality].mean, seed=generation.seed,
        run={"command": "pipeline", **_model_identity(model_source), **generation.identity(), "modality": modality,
             "weights": fingerprints},
        **settings.run_arguments(),
    )
    generated = products.generator_description(generation, modality, settings.tile)
    classes = products.segmentation_description(segmenter, model_source, settings.tile, B.S1GRD_BANDS, False, generated)
    described = {name: (spec, scene, classes if name == "classes" else generated) for name, spec in outputs.items()}
    return products.written(settings.stac, described, provenance)


def _segmentation_model(model: object, base_checkpoint: object, device: object, dtype: str | None):
    from ..models import SegmentationModel

    device = check_device(device)
    if isinstance(model, torch.nn.Module):
        if not isinstance(model, SegmentationModel):
            raise InvalidSceneError(
                f"`model` is a {type(model).__name__}; the scene tasks take a segmentation model (a saved folder, a "
                "Lightning .ckpt or SegmentationModel): for any other module use stream_model"
            )
        return model.eval(), device
    path = Path(os.fspath(model))
    if not path.exists():
        raise InvalidSceneError(f"model not found: {path}")
    foundation = _foundation_weights(path)
    if foundation is not None:
        raise InvalidSceneError(
            f"{path} holds the foundation weights of {foundation}, not a fine-tuned model: `model` takes a segmentation "
            "model fine-tuned from them. Fine-tune one (docs/fine_tuning.md; `axs-scenes demo` makes a tiny one) and "
            "give the folder its save_pretrained wrote, or the Lightning .ckpt of the training run"
        )
    loaded = SegmentationModel.from_pretrained(path, checkpoint_path=base_checkpoint, device=device, dtype=dtype)
    return loaded.eval(), device


def _foundation_weights(path: Path) -> str | None:
    """The catalog name of the published foundation weights ``path`` is (a file) or holds (a folder), if it is."""
    from ..models.pretrained import is_earlier_save
    from ..weights.catalog import KNOWN_MODELS

    if path.is_dir():
        if is_earlier_save(path):
            return None
        names = {entry.name for entry in path.iterdir()}
    else:
        names = {path.name}
    for spec in KNOWN_MODELS.values():
        if names & {spec.filename, f"{spec.stem}.safetensors"}:
            return spec.name
    return None


def _generator(generation: products.Generation, modality: str, device: torch.device, models: dict):
    """TerraMind for ``modality`` -> S2L2A, built once per modality in a run."""
    from ..models import build_terramind_generator

    if modality not in models:
        models[modality] = build_terramind_generator(
            input_modalities=(modality,), timesteps=generation.timesteps, checkpoint_path=generation.checkpoint_path,
            device=device, dtype=generation.dtype, size=generation.generator,
        ).eval()
    return models[modality]


def _model_identity(model_source: object) -> dict:
    if isinstance(model_source, torch.nn.Module):
        return {"model": products.model_href(model_source)}
    path = Path(os.fspath(model_source))
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return {"model": str(path.resolve()), "model_files": [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in files]}


def check_device(name: object) -> torch.device:
    """``name`` as a device this machine has (default: CUDA when there is one; under torchrun, each rank's own),
    or :class:`InvalidSceneError` saying which exist."""
    if isinstance(name, torch.device):
        name = str(name)
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InvalidSceneError(f"`device` {name} is not a device: pass cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidSceneError(f"`device` {name} was given but no CUDA device is available")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise InvalidSceneError(
            f"`device` {name}: this machine has {torch.cuda.device_count()} CUDA device(s), cuda:0 to "
            f"cuda:{torch.cuda.device_count() - 1}"
        )
    if device.type not in ("cpu", "cuda"):
        raise InvalidSceneError(f"`device` {name} is not supported: pass cpu, cuda or cuda:N")
    return distributed.local_device(device)
