"""``axs-scenes`` (``python -m axs_lib.cli.scenes``): ``segment``, ``sar-to-optical``, ``pipeline``, ``evaluate`` and ``demo``."""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections.abc import Callable
from datetime import date
from functools import partial
from pathlib import Path

import numpy as np
import torch

from . import demo
from ..errors import AxsModelError, BaseModelMismatchError, InvalidSceneError, SceneInterruptedError
from ..weights.catalog import KNOWN_MODELS, TERRAMIND_MODALITIES, TERRAMIND_PATCH_SIZE, terramind_model
from ..weights.discovery import find_checkpoint
from ..weights.fingerprint import weights_fingerprints
from ..scenes import bands as B
from ..scenes import distributed
from ..scenes.engine import as_tensor, run_scene
from ..scenes.provenance import ModelUse, Provenance
from ..scenes.quicklook import Quicklook, class_colour
from ..scenes.rasters import OutputSpec, SceneInput, check_output_paths
from ..scenes.stac import ModelDescription, write_stac_item
from ..scenes.windows import check_tiling
from .errors import fail

CLASS_NODATA = 255
UINT16_NODATA = 65535


def main(argv: list[str] | None = None) -> int:
    """Run one command; a library error is one line on stderr (:func:`axs_lib.cli.errors.fail`)."""
    args = _parser().parse_args(argv)
    started = time.perf_counter()
    try:
        _check_common(args)
        written = args.command(args)
    except AxsModelError as error:
        code = fail(_in_command_terms(error), error)
        distributed.stop()
        return code
    if _rank() == 0 and written:
        print(f"wrote {' and '.join(str(path) for path in written)} in {time.perf_counter() - started:.1f} s")
    distributed.stop()
    return 0


def _in_command_terms(error: AxsModelError) -> str:
    """A library error's message, said with this command's options: the library names Python arguments in
    backticks (`` `tile` ``, `` `overwrite=True` ``), which become ``--tile``, ``--overwrite``."""
    if isinstance(error, SceneInterruptedError):
        return f"{error.problem}; {error.advice}, then rerun the same command to {error.resume}"
    if isinstance(error, BaseModelMismatchError):
        return (
            f"{error.folder} was fine-tuned from base weights with fingerprint {error.expected}, but the base found "
            f"at {error.base} has fingerprint {error.found}: pass --base-checkpoint <the original base weights>, "
            "or save the model with include_base=True to make its folder self-contained"
        )
    message = str(error).replace("call again with the same arguments", "rerun the same command")
    return re.sub(r"`(\w+)(?:=True)?`", lambda argument: "--" + argument.group(1).replace("_", "-"), message)


def segment(args: argparse.Namespace) -> list[Path]:
    """A class map (or class probabilities) from a segmentation model on a Prithvi or TerraMind encoder, over a
    scene of the model's bands; for a model built with num_frames=T, over a time stack (T x the model's bands,
    date by date, with --dates)."""
    model, device = _segmentation_model(args)
    standardize = not args.no_standardize
    bands = model.input_bands
    if standardize and model.in_channels != len(bands):
        raise InvalidSceneError(
            f"the model takes {model.in_channels} bands; standardisation knows the {len(bands)} pretraining bands "
            f"({', '.join(bands)}) only: standardise the input yourself and pass --no-standardize"
        )
    frames = model.num_frames
    scene = SceneInput.open(args.input, model.in_channels * frames, bands if standardize and frames == 1 else ())
    coordinates = _coordinates(args, scene, model)
    model_mean, model_std = model.input_statistics
    mean = torch.tensor(model_mean)[:, None, None, None]
    std = torch.tensor(model_std)[:, None, None, None]

    def predict(batch: torch.Tensor) -> torch.Tensor:
        stack = batch.unflatten(1, (frames, model.in_channels)).transpose(1, 2)  # [B, C, T, H, W]
        if standardize:
            stack = (stack - mean) / std
        images = stack if frames > 1 else stack[:, :, 0]
        given = {name: value.expand(len(batch), *value.shape[1:]).to(device) for name, value in coordinates.items()}
        with torch.inference_mode():
            return as_tensor(model(images.to(device), **given))

    fingerprints = weights_fingerprints(segmentation=model)
    provenance = _provenance(args, "segment", fingerprints, model.base_model.name)
    output = _segmentation_output(args.output, model.num_classes, args.probabilities, args.quicklook, provenance)
    run_scene(
        scene, {"classes": output}, predict, fill=model_mean * frames if standardize else 0.0,
        run={"command": "segment", **_model_identity(args.model), "standardize": standardize,
             "coordinates": {name: value.tolist() for name, value in coordinates.items()}, "weights": fingerprints},
        **_common(args, device, model.patch_size),
    )
    description = _segmentation_description(args, model, bands * frames, standardize)
    return _written(args, {"classes": (output, args.input, description)}, provenance)


def _coordinates(args: argparse.Namespace, scene: SceneInput, model) -> dict[str, torch.Tensor]:
    """What a TL model adds: ``temporal_coords [1, T, 2]`` (year, day of year) from ``--dates``, and
    ``location_coords [1, 2]`` (lat, lon) of the scene's centre. Nothing for a model without them."""
    uses = model.coordinates
    dates = args.dates or []
    if dates and "temporal_coords" not in uses:
        raise InvalidSceneError(f"--dates given, but the model ({model.base_model.name}) does not take acquisition dates")
    if dates and len(dates) != model.num_frames:
        raise InvalidSceneError(
            f"--dates gives {len(dates)} date(s); the model takes {model.num_frames} time step(s), one date each"
        )
    coordinates = {}
    if dates:
        days = [[float(day.year), float(day.timetuple().tm_yday)] for day in dates]
        coordinates["temporal_coords"] = torch.tensor([days])
    if "location_coords" in uses:
        coordinates["location_coords"] = torch.tensor([scene.centre_lat_lon()])
    return coordinates


def sar_to_optical(args: argparse.Namespace) -> list[Path]:
    """Sentinel-2 L2A reflectance generated by TerraMind from a Sentinel-1 GRD scene."""
    scene = SceneInput.open(args.input, len(B.S1GRD_BANDS), B.S1GRD_BANDS)
    generator, device = _generator(args)
    to_db = _sar_to_db(args.linear)

    def predict(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return generator({"S1GRD": to_db(batch).to(device)})["S2L2A"].cpu()

    fingerprints = weights_fingerprints(generator=generator)
    provenance = _provenance(args, "sar-to-optical", fingerprints)
    output = _optical_output(args.output, args.as_float, args.quicklook or args.output.with_suffix(".png"), provenance, args.generator)
    run_scene(
        scene, {"optical": output}, predict, fill=_sar_fill(args.linear), seed=args.seed,
        run={"command": "sar-to-optical", **_generator_identity(args), "weights": fingerprints},
        **_common(args, device, TERRAMIND_PATCH_SIZE),
    )
    return _written(args, {"optical": (output, args.input, _generator_description(args))}, provenance)


def pipeline(args: argparse.Namespace) -> list[Path]:
    """SAR -> optical -> classes in one pass; the optical scene is written only with ``--optical``."""
    scene = SceneInput.open(args.input, len(B.S1GRD_BANDS), B.S1GRD_BANDS)
    model, device = _segmentation_model(args)
    bands = model.input_bands
    if model.in_channels != len(bands) or not set(bands) <= set(B.S2L2A_NAMES):
        raise InvalidSceneError(
            f"the segmentation model takes {model.in_channels} bands ({', '.join(bands)}); the pipeline feeds it "
            f"bands of the generated Sentinel-2 L2A scene ({', '.join(B.S2L2A_NAMES)})"
        )
    if model.num_frames > 1:
        raise InvalidSceneError(
            f"the segmentation model takes time stacks of {model.num_frames} dates; the pipeline generates one date: "
            "segment a stack of scenes with segment --dates, or use a single-date model"
        )
    generator, _ = _generator(args)
    to_db = _sar_to_db(args.linear)
    selected = [B.S2L2A_NAMES.index(band) for band in bands]
    model_mean, model_std = model.input_statistics
    mean = torch.tensor(model_mean)[:, None, None]
    std = torch.tensor(model_std)[:, None, None]

    def predict(batch: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.inference_mode():
            optical = generator({"S1GRD": to_db(batch).to(device)})["S2L2A"].cpu()
            reflectance = optical[:, selected].clamp(0, B.REFLECTANCE_MAX)
            logits = as_tensor(model(((reflectance - mean) / std).to(device)))
        return {"classes": logits, "optical": optical}

    fingerprints = weights_fingerprints(segmentation=model, generator=generator)
    provenance = _provenance(args, "pipeline", fingerprints, model.base_model.name)
    outputs = {"classes": _segmentation_output(args.output, model.num_classes, args.probabilities, args.quicklook, provenance)}
    if args.optical:
        outputs["optical"] = _optical_output(args.optical, args.as_float, None, provenance, args.generator)
    patch = math.lcm(TERRAMIND_PATCH_SIZE, model.patch_size)
    run_scene(
        scene, outputs, predict, fill=_sar_fill(args.linear), seed=args.seed,
        run={
            "command": "pipeline", **_model_identity(args.model), **_generator_identity(args),
            "weights": fingerprints,
        },
        **_common(args, device, patch),
    )
    generated = _generator_description(args)
    classes = _segmentation_description(args, model, B.S1GRD_BANDS, False, generated)
    return _written(args, {name: (spec, args.input, classes if name == "classes" else generated) for name, spec in outputs.items()}, provenance)


def evaluate(args: argparse.Namespace) -> list[Path]:
    """Scores of a prediction against a reference raster, over the pixels valid in both, streamed window by window:
    optical (PSNR, SSIM, MAE per band, SAM) or classes (confusion matrix, IoU and F1 per class, mIoU, accuracy)."""
    from ..scenes.evaluation import evaluate_scene, format_report

    result = evaluate_scene(
        args.prediction, args.reference, args.kind, num_classes=args.num_classes, ignore_index=args.ignore_index,
        scale=args.scale, reference_offset=args.reference_offset, reference_bands=args.reference_bands,
        tile=args.tile, progress=not args.quiet,
    )
    print(json.dumps(result, indent=1) if args.json else format_report(result))
    return []


def _segmentation_model(args: argparse.Namespace):
    from ..models import PrithviSegmentation

    device = _device(args.device)
    model = PrithviSegmentation.from_pretrained(args.model, checkpoint_path=args.base_checkpoint, device=device, dtype=args.dtype)
    return model.eval(), device


def _generator(args: argparse.Namespace):
    from ..models import build_terramind_generator

    device = _device(args.device)
    model = build_terramind_generator(
        timesteps=args.timesteps, checkpoint_path=args.checkpoint_path, device=device, dtype=args.dtype,
        variant=args.generator,
    )
    return model.eval(), device


def _segmentation_output(
    path: Path, num_classes: int, probabilities: bool, quicklook: Path | None, provenance: Provenance
) -> OutputSpec:
    binary = num_classes == 1
    if probabilities:
        def encode(logits: np.ndarray, valid: np.ndarray) -> np.ndarray:
            tensor = torch.from_numpy(logits)
            values = (torch.sigmoid(tensor) if binary else torch.softmax(tensor, dim=0)).numpy()
            values[:, ~valid] = np.nan
            return values

        if quicklook is not None:
            raise InvalidSceneError("--quicklook shows a class map: leave out --probabilities, or --quicklook")
        names = ["probability"] if binary else _class_names(num_classes)
        return OutputSpec(
            path, num_classes, "float32", float("nan"), encode, names, tags={**provenance.tags(), "UNITS": "probability"},
            units="probability", resampling="average",
        )
    if num_classes > CLASS_NODATA:
        raise InvalidSceneError(f"the model has {num_classes} classes; a uint8 class map holds 255: pass --probabilities")

    def classes(logits: np.ndarray, valid: np.ndarray) -> np.ndarray:
        values = (logits[0] > 0) if binary else logits.argmax(axis=0)
        values = values.astype(np.uint8)[None]
        values[:, ~valid] = CLASS_NODATA
        return values

    return OutputSpec(
        path, 1, "uint8", CLASS_NODATA, classes, ["class"], tags={**provenance.tags(), "UNITS": "class index"},
        band_tags=[{"classes": ",".join(_class_names(max(num_classes, 2)))}],
        colormap={value: (*class_colour(value), 255) for value in range(CLASS_NODATA)} | {CLASS_NODATA: (0, 0, 0, 0)},
        resampling="mode", quicklook=None if quicklook is None else Quicklook(quicklook),
    )


def _class_names(num_classes: int) -> list[str]:
    return [f"class_{index}" for index in range(num_classes)]


def _optical_output(path: Path, as_float: bool, quicklook: Path | None, provenance: Provenance, generator: str) -> OutputSpec:
    if as_float:
        dtype, nodata = "float32", float("nan")
    else:
        dtype, nodata = "uint16", UINT16_NODATA

    def encode(optical: np.ndarray, valid: np.ndarray) -> np.ndarray:
        values = optical if as_float else np.rint(np.clip(optical, 0, B.REFLECTANCE_MAX))
        values = values.astype(dtype)
        values[:, ~valid] = nodata
        return values

    return OutputSpec(
        path, len(B.S2L2A_BANDS), dtype, nodata, encode,
        descriptions=[band for band, _ in B.S2L2A_BANDS],
        tags={**provenance.tags(), "SOURCE": f"TerraMind 1.0 {generator.capitalize()} S1GRD -> S2L2A", "UNITS": "reflectance x 10000"},
        band_tags=[{"name": name, "common_name": B.S2L2A_COMMON_NAMES[name]} for name in B.S2L2A_NAMES],
        scale=1 / B.REFLECTANCE_MAX, offset=0.0, units="reflectance", resampling="average",
        quicklook=None if quicklook is None else Quicklook(quicklook, B.RGB_BANDS),
    )


def _provenance(
    args: argparse.Namespace, command: str, fingerprints: dict[str, str], segmentation_base: str | None = None
) -> Provenance:
    """What the outputs' tags and STAC items say made them: ``fingerprints`` by role (:func:`weights_fingerprints`),
    the segmentation model's base model by catalog name."""
    models = []
    if "segmentation" in fingerprints:
        models.append(ModelUse("segmentation", segmentation_base, fingerprints["segmentation"], str(args.model.resolve())))
    if "generator" in fingerprints:
        name = terramind_model(args.generator)
        checkpoint = find_checkpoint(KNOWN_MODELS[name], args.checkpoint_path)
        models.append(ModelUse("generator", name, fingerprints["generator"], str(checkpoint.path.resolve())))
    given = {name: value for name, value in vars(args).items() if name != "command"}
    options = json.loads(json.dumps(given, default=str))  # paths and dates as text
    generation = {"seed": args.seed, "timesteps": args.timesteps} if "generator" in fingerprints else {}
    return Provenance(command, options, models, generation)


def _segmentation_description(
    args: argparse.Namespace, model, input_bands: tuple[str, ...], standardize: bool, generator: ModelDescription | None = None
) -> ModelDescription:
    recipe = model.build_recipe.arguments if model.build_recipe is not None else {}
    mean, std = model.input_statistics
    architecture = f"{model.base_model.name} ViT encoder + {recipe.get('decoder', 'UperNetDecoder')} (TerraTorch)"
    if generator is not None:
        architecture = f"{generator.architecture}, then {architecture} on {', '.join(model.input_bands)}"
    return ModelDescription(
        name=args.model.resolve().name if generator is None else f"{generator.name} + {args.model.resolve().name}",
        architecture=architecture, task="semantic-segmentation", input_bands=input_bands, tile=args.tile,
        input_description=generator.input_description if generator is not None else (
            ("dB" if model.input_modality in ("S1GRD", "S1RTC") else "reflectance x 10000")
            + (f", standardised with {model.base_model.name}'s pretraining mean and std" if standardize
               else ", standardised by the caller")
        ),
        output_bands=["class"], href=str(args.model.resolve()),
        artifact_type="lightning.ckpt" if args.model.is_file() else "axs_lib.save_pretrained",
        input_mean=mean if standardize else (), input_std=std if standardize else (),
        classes=_class_names(max(model.num_classes, 2)),
    )


def _generator_description(args: argparse.Namespace) -> ModelDescription:
    name = terramind_model(args.generator)
    return ModelDescription(
        name=name, architecture=f"TerraMind 1.0 {args.generator} any-to-any generation, S1GRD -> S2L2A ({args.timesteps} diffusion steps)",
        task="generative", input_bands=B.S1GRD_BANDS, tile=args.tile,
        input_description="Sentinel-1 GRD backscatter in dB" + (" (converted from linear power)" if args.linear else "")
        + ", standardised inside the model with TerraMind's pretraining statistics",
        output_bands=B.S2L2A_NAMES, href=f"https://huggingface.co/{KNOWN_MODELS[name].repo_id}",
        artifact_type="torch.save",
    )


def _written(args: argparse.Namespace, outputs: dict, provenance: Provenance) -> list[Path]:
    """The files a command wrote: each output, its quick-look, and with ``--stac`` its STAC item (written here,
    by rank 0). ``outputs`` maps names to ``(spec, input, model description)``."""
    written = []
    for spec, source, description in outputs.values():
        written += [spec.path] + ([spec.quicklook.path] if spec.quicklook is not None else [])
        if args.stac:
            item = spec.path.with_suffix(".json")
            if _rank() == 0:
                write_stac_item(spec, source, description, provenance)
            written.append(item)
    return written


def _sar_to_db(linear: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    if linear:
        return lambda power: 10 * torch.log10(power.clamp_min(B.LINEAR_FLOOR))
    return lambda db: db


def _sar_fill(linear: bool) -> tuple[float, ...]:
    """What nodata SAR pixels are given to the generator: TerraMind's S1GRD pretraining mean (dB), or its power."""
    mean_db = TERRAMIND_MODALITIES["S1GRD"].mean
    return tuple(10 ** (db / 10) for db in mean_db) if linear else mean_db


def _model_identity(path: Path) -> dict:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return {"model": str(path.resolve()), "model_files": [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in files]}


def _generator_identity(args: argparse.Namespace) -> dict:
    return {
        "generator": args.generator, "timesteps": args.timesteps, "linear": args.linear, "float": args.as_float,
        "checkpoint_path": str(args.checkpoint_path) if args.checkpoint_path else None, "dtype": args.dtype,
    }


def _common(args: argparse.Namespace, device: torch.device, multiple_of: int) -> dict:
    return {
        "tile": args.tile, "overlap": args.overlap, "batch_size": args.batch_size, "device": device,
        "overwrite": args.overwrite, "progress": not args.quiet, "multiple_of": multiple_of,
    }


def _device(name: str | None) -> torch.device:
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InvalidSceneError(f"--device {name} is not a device: pass cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidSceneError(f"--device {name} was given but no CUDA device is available")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise InvalidSceneError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if device.type not in ("cpu", "cuda"):
        raise InvalidSceneError(f"--device {name} is not supported: pass cpu, cuda or cuda:N")
    return distributed.local_device(device)


def _rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


def _check_common(args: argparse.Namespace) -> None:
    if "output" not in args:  # the demo writes its own files
        return
    _device(args.device)
    extra_outputs = [getattr(args, "quicklook", None), getattr(args, "optical", None)]
    check_output_paths(args.input, [args.output, *(path for path in extra_outputs if path is not None)])
    if args.batch_size < 1:
        raise InvalidSceneError(f"--batch-size must be at least 1, got {args.batch_size}")
    check_tiling(args.tile, args.overlap, TERRAMIND_PATCH_SIZE if args.command is sar_to_optical else 1)
    model = getattr(args, "model", None)
    if model is not None and not model.exists():
        raise InvalidSceneError(f"model not found: {model}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="axs-scenes", description="Whole-scene inference, streamed window by window (also under torchrun)."
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def common(sub: argparse.ArgumentParser, tile: int) -> None:
        sub.add_argument("--tile", type=int, default=tile, help=f"window size in pixels (default {tile})")
        sub.add_argument("--overlap", type=int, default=32, help="pixels shared by neighbouring windows, half trimmed on each side (default 32)")
        sub.add_argument("--batch-size", type=int, default=4, help="windows per forward pass (default 4; generation runs one at a time)")
        sub.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available; under torchrun, each rank's own GPU)")
        sub.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default=None, help="weights precision (default: as stored)")
        sub.add_argument("--overwrite", action="store_true", help="replace an existing output or another run's partial output")
        sub.add_argument("--quiet", action="store_true", help="no progress bar")
        sub.add_argument("--stac", action="store_true", help="also write a STAC item (OUTPUT with .json) beside each output")

    def generation(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--generator", choices=("tiny", "small", "base", "large"), default="large",
                         help="TerraMind 1.0 size that generates (default large; its checkpoint must be on disk)")
        sub.add_argument("--timesteps", type=int, default=12, help="diffusion steps, 1..1000 (default 12; 6 is the low-memory setting)")
        sub.add_argument("--seed", type=int, default=0, help="seed of the generation noise, combined with each window's position (default 0)")
        sub.add_argument("--linear", action="store_true", help="the input is linear power, not dB")
        sub.add_argument("--float", dest="as_float", action="store_true", help="optical output in float32 instead of uint16")
        sub.add_argument("--checkpoint-path", type=Path, help="TerraMind checkpoint file or folder (default: search)")

    def segmentation(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--model", type=Path, required=True, help="folder written by save_pretrained, or a Lightning .ckpt")
        sub.add_argument("--probabilities", action="store_true", help="float32 class probabilities instead of a uint8 class map")
        sub.add_argument("--base-checkpoint", type=Path, help="the base Prithvi weights the model was fine-tuned from, when its folder does not hold them (default: search)")
        sub.add_argument("--quicklook", type=Path, help="PNG of the class map to write, in fixed class colours")

    sub = commands.add_parser("segment", help="reflectance GeoTIFF -> class map", description=segment.__doc__)
    sub.add_argument("input", type=Path, help="GeoTIFF with the model's bands (Prithvi: BLUE GREEN RED NIR_NARROW SWIR_1 SWIR_2, reflectance x 10000)")
    sub.add_argument("output", type=Path, help="GeoTIFF to write")
    segmentation(sub)
    sub.add_argument("--no-standardize", action="store_true", help="the input is already standardised: skip Prithvi's mean/std")
    sub.add_argument("--dates", type=date.fromisoformat, nargs="+", metavar="YYYY-MM-DD",
                     help="acquisition date of each time step, for models that take them (Prithvi *_tl)")
    common(sub, 224)
    sub.set_defaults(command=segment)

    sub = commands.add_parser("sar-to-optical", help="Sentinel-1 GRD GeoTIFF -> Sentinel-2 L2A GeoTIFF", description=sar_to_optical.__doc__)
    sub.add_argument("input", type=Path, help="two-band Sentinel-1 GRD GeoTIFF (VV, VH) in dB, or linear power with --linear")
    sub.add_argument("output", type=Path, help="12-band Sentinel-2 L2A GeoTIFF to write")
    sub.add_argument("--quicklook", type=Path, help="RGB PNG to write (default: OUTPUT with .png)")
    generation(sub)
    common(sub, 224)
    sub.set_defaults(command=sar_to_optical)

    sub = commands.add_parser("pipeline", help="Sentinel-1 GRD GeoTIFF -> class map, through generated optical", description=pipeline.__doc__)
    sub.add_argument("input", type=Path, help="two-band Sentinel-1 GRD GeoTIFF (VV, VH)")
    sub.add_argument("output", type=Path, help="class map GeoTIFF to write")
    sub.add_argument("--optical", type=Path, help="also write the generated Sentinel-2 L2A scene here")
    segmentation(sub)
    generation(sub)
    common(sub, 224)
    sub.set_defaults(command=pipeline)

    sub = commands.add_parser("evaluate", help="score a prediction against a reference raster", description=evaluate.__doc__)
    sub.add_argument("prediction", type=Path, help="GeoTIFF written by sar-to-optical, segment or pipeline (or any on a CRS)")
    sub.add_argument("reference", type=Path, help="reference Sentinel-2 reflectance or label raster; reprojected to the prediction's grid if needed")
    sub.add_argument("--kind", choices=("optical", "classes"), help="default: classes for a one-band integer prediction, else optical")
    sub.add_argument("--num-classes", type=int, metavar="N", help="classes 0..N-1 (default: the largest class found in either raster + 1)")
    sub.add_argument("--ignore-index", type=int, metavar="LABEL", help="reference label to leave out (classes)")
    sub.add_argument("--scale", type=float, default=10000, help="reflectance = value / SCALE (optical; default 10000)")
    sub.add_argument("--reference-offset", type=float, default=0, help="added to the reference before scaling (Sentinel-2 L2A baseline >= 04.00: -1000)")
    sub.add_argument("--reference-bands", type=int, nargs="+", metavar="BAND", help="1-based reference bands in the prediction's band order (default: by description, else file order)")
    sub.add_argument("--tile", type=int, default=512, help="block size in pixels (default 512)")
    sub.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    sub.add_argument("--quiet", action="store_true", help="no progress bar")
    sub.set_defaults(command=evaluate)

    sub = commands.add_parser("demo", help="every command on a synthetic scene with tiny random-weight models", description=demo.run.__doc__)
    sub.add_argument("--folder", type=Path, help="where to write the scene, models and outputs (default: a new temporary folder)")
    sub.set_defaults(command=partial(demo.run, run_command=main))
    return parser


if __name__ == "__main__":
    sys.exit(main())
