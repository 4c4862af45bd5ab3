"""What the scene tasks write besides the pixels: how model outputs are encoded (class maps, probabilities,
reflectance), the provenance every output carries, the model descriptions for STAC items, and the STAC items
themselves."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InvalidSceneError
from ..weights.catalog import KNOWN_MODELS, terramind_model
from ..weights.discovery import find_checkpoint
from . import bands as B
from .inputs import SceneInput
from .outputs import OutputSpec
from .provenance import ModelUse, Provenance
from .quicklook import Quicklook, class_colour
from .stac import ModelDescription, write_stac_item

@dataclass(frozen=True)
class Generation:
    """How a generator was asked to run: TerraMind's size, diffusion steps, seed, input units and checkpoint."""

    generator: str
    timesteps: int
    seed: int
    linear: bool
    as_float: bool
    checkpoint_path: str | os.PathLike | None
    dtype: str | None

    def identity(self) -> dict:
        return {
            "generator": self.generator, "timesteps": self.timesteps, "linear": self.linear, "float": self.as_float,
            "checkpoint_path": str(self.checkpoint_path) if self.checkpoint_path else None, "dtype": self.dtype,
        }


CLASS_NODATA = 255
UINT16_NODATA = 65535
SAR_MODALITIES = ("S1GRD", "S1RTC")


def segmentation_output(
    path: Path, num_classes: int, probabilities: bool, quicklook: object, provenance: Provenance
) -> OutputSpec:
    binary = num_classes == 1
    if probabilities:
        def encode(logits: np.ndarray, valid: np.ndarray) -> np.ndarray:
            tensor = torch.from_numpy(logits)
            values = (torch.sigmoid(tensor) if binary else torch.softmax(tensor, dim=0)).numpy()
            values[:, ~valid] = np.nan
            return values

        if quicklook is not None:
            raise InvalidSceneError("`quicklook` shows a class map: leave out `probabilities=True`, or `quicklook`")
        names = ["probability"] if binary else class_names(num_classes)
        return OutputSpec(
            path, num_classes, "float32", float("nan"), encode, names, tags={**provenance.tags(), "UNITS": "probability"},
            units="probability", resampling="average",
        )
    if num_classes > CLASS_NODATA:
        raise InvalidSceneError(f"the model has {num_classes} classes; a uint8 class map holds 255: pass `probabilities=True`")

    def classes(logits: np.ndarray, valid: np.ndarray) -> np.ndarray:
        values = (logits[0] > 0) if binary else logits.argmax(axis=0)
        values = values.astype(np.uint8)[None]
        values[:, ~valid] = CLASS_NODATA
        return values

    return OutputSpec(
        path, 1, "uint8", CLASS_NODATA, classes, ["class"], tags={**provenance.tags(), "UNITS": "class index"},
        band_tags=[{"classes": ",".join(class_names(max(num_classes, 2)))}],
        colormap={value: (*class_colour(value), 255) for value in range(CLASS_NODATA)} | {CLASS_NODATA: (0, 0, 0, 0)},
        resampling="mode", quicklook=None if quicklook is None else Quicklook(Path(quicklook)),
    )


def class_names(num_classes: int) -> list[str]:
    return [f"class_{index}" for index in range(num_classes)]


def optical_output(
    path: Path, as_float: bool, quicklook: Path | None, provenance: Provenance, generator: str, modality: str
) -> OutputSpec:
    dtype, nodata = ("float32", float("nan")) if as_float else ("uint16", UINT16_NODATA)

    def encode(optical: np.ndarray, valid: np.ndarray) -> np.ndarray:
        values = optical if as_float else np.rint(np.clip(optical, 0, B.REFLECTANCE_MAX))
        values = values.astype(dtype)
        values[:, ~valid] = nodata
        return values

    return OutputSpec(
        path, len(B.S2L2A_BANDS), dtype, nodata, encode,
        descriptions=[band for band, _ in B.S2L2A_BANDS],
        tags={**provenance.tags(), "SOURCE": f"TerraMind 1.0 {generator.capitalize()} {modality} -> S2L2A", "UNITS": "reflectance x 10000"},
        band_tags=[{"name": name, "common_name": B.S2L2A_COMMON_NAMES[name]} for name in B.S2L2A_NAMES],
        scale=1 / B.REFLECTANCE_MAX, offset=0.0, units="reflectance", resampling="average",
        quicklook=None if quicklook is None else Quicklook(quicklook, B.RGB_BANDS),
    )


def provenance(
    command: str, options: Mapping, fingerprints: Mapping[str, str], scene: SceneInput, segmenter, model_source: object,
    generation: Generation | None = None,
) -> Provenance:
    """What the outputs' tags and STAC items say made them: the models, the options and the input's bands."""
    models = []
    if "segmentation" in fingerprints:
        models.append(ModelUse("segmentation", segmenter.base_model.name, fingerprints["segmentation"], model_href(model_source)))
    if "generator" in fingerprints and generation is not None:
        name = terramind_model(generation.generator)
        checkpoint = find_checkpoint(KNOWN_MODELS[name], generation.checkpoint_path)
        models.append(ModelUse("generator", name, fingerprints["generator"], str(checkpoint.path.resolve())))
    seeded = {"seed": generation.seed, "timesteps": generation.timesteps} if generation is not None else {}
    return Provenance(command, dict(options), models, seeded, scene.describe())


def model_href(model_source: object) -> str:
    if isinstance(model_source, torch.nn.Module):
        return f"<{type(model_source).__name__} object>"
    return str(Path(os.fspath(model_source)).resolve())


def segmentation_description(
    segmenter, model_source: object, tile: int, input_bands: tuple[str, ...], standardize: bool,
    generator: ModelDescription | None = None,
) -> ModelDescription:
    recipe = segmenter.build_recipe.arguments if segmenter.build_recipe is not None else {}
    mean, std = segmenter.input_statistics
    architecture = f"{segmenter.base_model.name} ViT encoder + {recipe.get('decoder', 'UperNetDecoder')} (TerraTorch)"
    href = model_href(model_source)
    name = Path(href).name if not isinstance(model_source, torch.nn.Module) else type(model_source).__name__
    if generator is not None:
        architecture = f"{generator.architecture}, then {architecture} on {', '.join(segmenter.input_bands)}"
        name = f"{generator.name} + {name}"
    return ModelDescription(
        name=name, architecture=architecture, task="semantic-segmentation", input_bands=input_bands, tile=tile,
        input_description=generator.input_description if generator is not None else (
            ("dB" if segmenter.input_modality in SAR_MODALITIES else "reflectance x 10000")
            + (f", standardised with {segmenter.base_model.name}'s pretraining mean and std" if standardize
               else ", standardised by the caller")
        ),
        output_bands=["class"], href=href,
        artifact_type="lightning.ckpt" if Path(href).is_file() else "axs_lib.save_pretrained",
        input_mean=mean if standardize else (), input_std=std if standardize else (),
        classes=class_names(max(segmenter.num_classes, 2)),
    )


def generator_description(generation: Generation, modality: str, tile: int) -> ModelDescription:
    name = terramind_model(generation.generator)
    product = "Sentinel-1 RTC" if modality == "S1RTC" else "Sentinel-1 GRD"
    return ModelDescription(
        name=name,
        architecture=f"TerraMind 1.0 {generation.generator} any-to-any generation, {modality} -> S2L2A "
                     f"({generation.timesteps} diffusion steps)",
        task="generative", input_bands=B.S1GRD_BANDS, tile=tile,
        input_description=f"{product} backscatter in dB, standardised inside the model with TerraMind's "
                          f"{modality} pretraining statistics",
        output_bands=B.S2L2A_NAMES, href=f"https://huggingface.co/{KNOWN_MODELS[name].repo_id}",
        artifact_type="torch.save",
    )


def written(stac: bool, outputs: Mapping, provenance: Provenance) -> list[Path]:
    """The files a task wrote: each output, its quick-look, and with ``stac`` its STAC item (written by rank 0).
    ``outputs`` maps names to ``(spec, scene, model description)``."""
    written = []
    for spec, scene, description in outputs.values():
        written += [spec.path] + ([spec.quicklook.path] if spec.quicklook is not None else [])
        if stac:
            if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
                write_stac_item(spec, scene, description, provenance)
            written.append(spec.path.with_suffix(".json"))
    return written
