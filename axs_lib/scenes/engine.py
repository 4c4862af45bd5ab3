"""The streaming engine: run a model over a raster window by window, with bounded memory.

Only a batch of windows is in memory at a time; each window's core is saved as soon as it is computed
(see :mod:`axs_lib.scenes.outputs`), so peak memory is set by the tile size, the batch size and the model,
not by the scene. :func:`stream_model` is the entry point for any ``nn.Module``; :func:`run_scene` is the
general form the commands use (several outputs, a custom forward).
"""

from __future__ import annotations

import logging
import random
import shutil
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing, contextmanager
from pathlib import Path

import numpy as np
import torch
from rasterio._err import CPLE_BaseError
from torch import nn
from tqdm.auto import tqdm

from ..errors import InvalidSceneError, SceneInterruptedError, SceneReadError
from ..weights.fingerprint import weights_fingerprints
from . import distributed
from .locking import OutputLock
from .hrefs import redact
from .inputs import SceneInput, SceneReader, gdal_environment
from .outputs import OutputSpec, PartialOutput, check_output_paths
from .windows import Window, WindowPlan, check_tiling, plan_windows

logger = logging.getLogger(__name__)

READ_AHEAD = 2
"""Batches read ahead of the one the model runs on: reads overlap compute, and memory stays a few batches."""

Predict = Callable[[torch.Tensor], "torch.Tensor | Mapping[str, torch.Tensor]"]
"""``[B, bands, tile, tile]`` float32 -> one tensor ``[B, C, tile, tile]``, or one per output name."""


def run_scene(
    scene: SceneInput,
    outputs: Mapping[str, OutputSpec],
    predict: Predict,
    *,
    tile: int,
    overlap: int,
    batch_size: int = 1,
    fill: Sequence[float] | float = 0.0,
    seed: int | None = None,
    device: torch.device | str = "cpu",
    run: Mapping | None = None,
    overwrite: bool = False,
    progress: bool = False,
    multiple_of: int = 1,
) -> None:
    """Stream ``predict`` over ``scene`` and write ``outputs`` (see :func:`stream_model` for the arguments).

    Args:
        outputs: what to write; when ``predict`` returns a mapping, its keys name the outputs.
        fill: the value given to the model at nodata pixels, per band or for all.
        seed: when given, each window runs alone in the model with Python's and torch's random generators
            seeded from ``seed`` and the window's position (:meth:`Window.seed`), so random draws do not
            depend on batches, resumption or the number of processes; ``batch_size`` is then not used.
        run: what identifies this run besides the input and the tiling, for resuming (model, weights, options).
    """
    check_tiling(tile, overlap, multiple_of)
    if batch_size < 1:
        raise InvalidSceneError(f"`batch_size` must be at least 1, got {batch_size}")
    check_output_paths(scene.local_files, [path for spec in outputs.values() for path in _written_paths(spec)])
    plan = plan_windows(scene.height, scene.width, tile, overlap)
    partials = {name: PartialOutput(spec) for name, spec in outputs.items()}
    description = {
        **scene.fingerprint(), "tile": tile, "overlap": overlap, "seed": seed,
        "outputs": {name: [str(spec.path), spec.bands, spec.dtype] for name, spec in outputs.items()},
        **(run or {}),
    }
    device = distributed.local_device(torch.device(device))
    ranks = distributed.start(device)
    locks = [OutputLock(spec.path) for spec in outputs.values()] if ranks.is_main else []
    try:
        ranks.on_main(lambda: _claim(partials.values(), locks, description, overwrite, plan))
        _stream(scene, plan, partials, predict, ranks, batch_size if seed is None else 1, fill, seed, device, progress)
        ranks.barrier()
        if ranks.is_main:
            for partial in partials.values():
                _assemble(partial, scene, plan)
    finally:
        for lock in locks:
            lock.release()


def _claim(partials: Iterable[PartialOutput], locks: Sequence[OutputLock], run: Mapping, overwrite: bool, plan: WindowPlan) -> None:
    for lock in locks:
        lock.acquire()
    for partial in partials:
        partial.claim(run, overwrite, plan)


def _stream(
    scene: SceneInput,
    plan: WindowPlan,
    partials: Mapping[str, PartialOutput],
    predict: Predict,
    ranks: distributed.Ranks,
    step: int,
    fill: Sequence[float] | float,
    seed: int | None,
    device: torch.device,
    progress: bool,
) -> None:
    """Compute and save this rank's unfinished windows, ``step`` at a time, reading ahead (:func:`_read_ahead`).

    Every model call gets exactly ``step`` windows (the last batch is padded by repeating its last window), so
    a window's result does not depend on where the batches of this rank's share happen to end.
    """
    fill_values = np.broadcast_to(np.asarray(fill, dtype=np.float32), (len(scene.bands),))[:, None, None]
    todo = [window for window in ranks.share(plan.windows) if not all(p.done(window) for p in partials.values())]
    first = next(iter(partials.values()))
    bar = tqdm(total=len(plan), initial=first.count_done(), unit="window", disable=not (progress and ranks.shows_progress))
    logger.info("%s: %d windows, %d left on rank %d", scene.name, len(plan), len(todo), ranks.rank)
    batches = [todo[start : start + step] for start in range(0, len(todo), step)]
    with gdal_environment():
        reader = scene.reader()
        try:
            with closing(_read_ahead(reader, batches, step, plan.tile, fill_values)) as reads:
                for batch, read in reads:
                    try:
                        inputs, valid = read.result()
                    except (OSError, CPLE_BaseError) as error:
                        raise SceneReadError(
                            f"cannot read {scene.name} ({_one_line(error)})",
                            _read_advice(scene), _resume(first, plan), first.folder,
                        ) from error
                    with _seeded(None if seed is None else batch[0].seed(seed), device):
                        predicted = predict(torch.from_numpy(inputs))
                    if not isinstance(predicted, Mapping):
                        predicted = {next(iter(partials)): predicted}
                    try:
                        _save_cores(batch, partials, predicted, valid)
                    except OSError as error:
                        raise SceneInterruptedError(
                            f"cannot save a window in {first.folder} ({_one_line(error)}; {_free_space(first.folder)})",
                            "the disk is probably full: make room on it", _resume(first, plan), first.folder,
                        ) from error
                    bar.n = first.count_done() if ranks.world_size > 1 else bar.n + len(batch)
                    bar.refresh()
        finally:
            reader.close()
            bar.close()


def _read_ahead(
    reader: SceneReader, batches: Sequence[Sequence[Window]], step: int, tile: int, fill: np.ndarray
) -> Iterator[tuple[Sequence[Window], Future]]:
    """Each batch with its pending read, the reads running up to :data:`READ_AHEAD` batches ahead in one thread,
    so the next batches are fetched while the model runs on this one."""
    reading = ThreadPoolExecutor(1, thread_name_prefix="axs-read-ahead")
    pending: deque[tuple[Sequence[Window], Future]] = deque()
    try:
        for batch in batches:
            pending.append((batch, reading.submit(_read_batch, reader, batch, step, tile, fill)))
            if len(pending) > READ_AHEAD:
                yield pending.popleft()
        while pending:
            yield pending.popleft()
    finally:
        reading.shutdown(wait=True, cancel_futures=True)


def _assemble(partial: PartialOutput, scene: SceneInput, plan: WindowPlan) -> None:
    try:
        with gdal_environment():
            partial.assemble(scene.profile, plan)
    except (OSError, CPLE_BaseError) as error:
        raise SceneInterruptedError(
            f"cannot write {partial.spec.path} ({_one_line(error)}; {_free_space(partial.folder)})",
            "the disk is probably full: make room on it", f"assemble it from the {len(plan)} saved windows",
            partial.folder,
        ) from error


def _resume(partial: PartialOutput, plan: WindowPlan) -> str:
    return f"continue from window {partial.count_done() + 1} of {len(plan)}"


def _read_advice(scene: SceneInput) -> str:
    if scene.path is not None:
        return "the file is truncated or corrupt: check or replace it"
    return "an asset is missing, refused or damaged, or its server failed: check the item and its server"


def _free_space(folder: Path) -> str:
    return f"{shutil.disk_usage(folder).free / 2**20:.0f} MiB free there"


def _one_line(error: BaseException) -> str:
    """GDAL's own message where rasterio wraps it ("Read failed. See previous exception for details.")."""
    return redact(" ".join(str(error.__cause__ or error).split()))


def _written_paths(spec: OutputSpec) -> list[Path]:
    return [spec.path] if spec.quicklook is None else [spec.path, spec.quicklook.path]


def stream_model(
    model: nn.Module,
    input_path: str | Path,
    output_path: str | Path,
    *,
    tile: int = 224,
    overlap: int = 32,
    batch_size: int = 4,
    bands: int | None = None,
    fill: Sequence[float] | float | None = None,
    standardize: bool = True,
    output_dtype: str = "float32",
    nodata: float | None = None,
    seed: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
    multiple_of: int = 1,
) -> Path:
    """Run ``model`` over a whole raster and write its output as a tiled GeoTIFF on the input's grid.

    ``model`` takes ``[B, bands, tile, tile]`` and returns ``[B, C, tile, tile]`` (a tensor, or an object with
    ``.output`` such as TerraTorch's ``ModelOutput``); it runs on its own device and dtype, under
    ``torch.inference_mode``. Windows overlap by ``overlap`` pixels and keep only their cores (half the overlap
    is trimmed on each inner side), so a model whose receptive field is at most ``overlap // 2`` pixels
    gives the whole-scene result. Nodata input pixels are given to the model as ``fill`` (default 0, or the
    pretraining mean for a standardised model) and are ``nodata`` in the output (NaN for float outputs unless
    given).

    A model that knows its pretraining statistics (a :class:`~axs_lib.models.segmentation.SegmentationModel`
    taking its pretraining bands: ``model.input_statistics``) gets its input standardised with them, as
    ``axs-scenes segment`` gives it; ``standardize=False`` passes the raster's values as they are (for a raster
    that is standardised already). Other models get the raster's values. Runs under ``torchrun`` split the windows across
    ranks. A run that was killed resumes from its partial output when started again with the same
    arguments; the output appears under its name only when complete.

    Only one run at a time writes ``output_path`` (a lock beside it); with ``overwrite``, an existing output
    stays as it was until the new one is complete. The run record holds the fingerprint of ``model``'s
    weights, so a partial output of other weights is never resumed. Every model call gets ``batch_size``
    windows (the last batch padded), so results do not depend on where batches end.

    Raises:
        InvalidSceneError: missing or unreadable input, wrong band count, no CRS, bad tile or overlap, an
            output folder that is missing or read-only, an output that is a folder or the input itself.
        OutputExistsError: ``output_path`` exists (pass ``overwrite=True``) or holds another run's partial.
        OutputLockedError: another run is writing ``output_path`` now.
        SceneReadError: the input cannot be read part-way (truncated or corrupt); finished windows are kept.
        SceneInterruptedError: a window or the output cannot be written (full disk); finished windows are kept.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None else torch.float32
    scene = SceneInput.open(input_path, bands if bands is not None else _input_bands(input_path))
    statistics = _input_statistics(model, len(scene.bands)) if standardize else None
    if fill is None:
        fill = statistics[0].flatten().tolist() if statistics is not None else 0.0
    if nodata is None:
        nodata = float("nan") if np.dtype(output_dtype).kind == "f" else np.iinfo(output_dtype).max

    def encode(core: np.ndarray, valid: np.ndarray) -> np.ndarray:
        values = core.astype(output_dtype)
        values[:, ~valid] = nodata
        return values

    def predict(batch: torch.Tensor) -> torch.Tensor:
        if statistics is not None:
            batch = (batch - statistics[0]) / statistics[1]
        with torch.inference_mode():
            return as_tensor(model(batch.to(device=device, dtype=dtype)))

    probe_channels = _output_channels(model, predict, len(scene.bands), tile)
    spec = OutputSpec(output_path, probe_channels, output_dtype, nodata, encode)
    run_scene(
        scene, {"output": spec}, predict, tile=tile, overlap=overlap, batch_size=batch_size, fill=fill, seed=seed,
        device=device,
        run={"model": type(model).__name__, "weights": weights_fingerprints(model=model), "standardized": statistics is not None},
        overwrite=overwrite, progress=progress,
        multiple_of=multiple_of,
    )
    return output_path


def _input_statistics(model: nn.Module, bands: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The model's pretraining mean and std as ``[bands, 1, 1]`` tensors, when it has them for ``bands`` bands."""
    statistics = getattr(model, "input_statistics", None)
    if statistics is None or getattr(model, "in_channels", None) != bands or len(statistics[0]) != bands:
        return None
    mean, std = (torch.tensor(values, dtype=torch.float32)[:, None, None] for values in statistics)
    return mean, std


def as_tensor(output: object) -> torch.Tensor:
    """A model's output as a float32 CPU tensor; objects with ``.output`` (TerraTorch's ``ModelOutput``) unwrapped."""
    if not isinstance(output, torch.Tensor):
        output = getattr(output, "output", output)
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"the model returned {type(output).__name__}; expected a tensor [B, C, H, W]")
    return output.float().cpu()


def _input_bands(path: Path) -> int:
    import rasterio

    if not path.is_file():
        raise InvalidSceneError(f"input not found: {path}")
    with rasterio.open(path) as src:
        return src.count


def _output_channels(model: nn.Module, predict: Predict, bands: int, tile: int) -> int:
    channels = getattr(model, "num_classes", None) or getattr(model, "out_channels", None)
    if isinstance(channels, int):
        return channels
    return predict(torch.zeros(1, bands, tile, tile)).shape[1]


def _read_batch(
    reader: SceneReader, batch: Sequence[Window], size: int, tile: int, fill: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The model input of ``batch``, padded to ``size`` windows by repeating the last; the masks of ``batch``."""
    inputs, valid = [], []
    for window in batch:
        values, mask = reader.read(window, tile)
        inputs.append(np.where(mask, values, fill))
        valid.append(mask)
    inputs += inputs[-1:] * (size - len(batch))
    return np.stack(inputs).astype(np.float32, copy=False), valid


def _save_cores(
    batch: Sequence[Window],
    partials: Mapping[str, PartialOutput],
    predicted: Mapping[str, torch.Tensor],
    valid: Sequence[np.ndarray],
) -> None:
    for name, partial in partials.items():
        values = predicted[name].float().cpu().numpy()
        for window, output, mask in zip(batch, values, valid):
            rows, cols = window.core_in_tile()
            partial.save(window, partial.spec.encode(output[:, rows, cols], mask[rows, cols]))


@contextmanager
def _seeded(seed: int | None, device: torch.device):
    """Python's and torch's generators seeded with ``seed`` inside the block, restored after."""
    if seed is None:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    state = random.getstate()
    with torch.random.fork_rng(devices=devices):
        random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(state)
