"""A STAC 1.x item beside an output (``OUT.json``): the output as a COG asset, the inputs it was derived from
(each source item, or the local file), and the model described with the STAC Machine Learning Model extension (``mlm``), written with pystac."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pystac
import rasterio
import torch
from pystac.extensions.classification import Classification, ClassificationExtension
from pystac.extensions.eo import Band, EOExtension
from pystac.extensions.mlm import (
    AssetGeneralMLMExtension, InputStructure, MLMExtension, ModelInput, ModelOutput, ResultStructure, TaskType,
    ValueScaling, ValueScalingType,
)
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, RasterBand, RasterExtension
from rasterio.warp import transform_bounds

from .provenance import Provenance
from .quicklook import class_colour
from .inputs import SceneInput
from .outputs import OutputSpec

INPUT_DATETIME_TAGS = ("DATETIME", "ACQUISITION_DATETIME")
"""Input dataset tags read as the item's datetime (ISO 8601), when present; otherwise the item is dated now."""


@dataclass(frozen=True)
class ModelDescription:
    """What the ``mlm`` extension says about the model that made an output.

    Attributes:
        name, architecture: e.g. ``"Prithvi-EO-2.0-600M"``, ``"Prithvi ViT + UperNet"``.
        task: ``"semantic-segmentation"`` or ``"generative"``.
        input_bands: the bands the model reads, in order; tile: the window side it runs on.
        input_mean, input_std: the per-band z-score applied before the model, or empty when none is.
        input_description: what the input is (units, preprocessing inside the model).
        output_bands: the output's band names; classes: class names for a class map, else empty.
        href, artifact_type: the model's weights (file, folder or URL) and their format.
    """

    name: str
    architecture: str
    task: str
    input_bands: Sequence[str]
    tile: int
    input_description: str
    output_bands: Sequence[str]
    href: str
    artifact_type: str
    input_mean: Sequence[float] = ()
    input_std: Sequence[float] = ()
    classes: Sequence[str] = ()


def write_stac_item(spec: OutputSpec, source: SceneInput, model: ModelDescription, provenance: Provenance) -> Path:
    """Write ``OUT.json`` beside ``spec.path`` (atomically) and return its path."""
    item_path = spec.path.with_suffix(".json")
    item = stac_item(spec, source, model, provenance)
    item.set_self_href(str(item_path.resolve()))
    temporary = item_path.with_name(f".{item_path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(json.dumps(item.to_dict(include_self_link=False), indent=1))
        os.replace(temporary, item_path)
    finally:
        temporary.unlink(missing_ok=True)
    return item_path


def stac_item(spec: OutputSpec, source: SceneInput | Path, model: ModelDescription, provenance: Provenance) -> pystac.Item:
    """The item for the finished output ``spec.path`` made from ``source`` (a scene input, or a local file) by ``model``."""
    with rasterio.open(spec.path) as output:
        crs, bounds, transform, shape = output.crs, output.bounds, output.transform, output.shape
        resolution = output.res[0]
    west, south, east, north = transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21)
    polygon = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    now = dt.datetime.now(dt.timezone.utc)
    item = pystac.Item(
        id=spec.path.stem, geometry={"type": "Polygon", "coordinates": [polygon]}, bbox=[west, south, east, north],
        datetime=_input_datetime(source) or now,
        properties={"created": pystac.utils.datetime_to_str(now), "axs:provenance": _provenance(provenance)},
    )
    for link in _derived_from(source):
        item.add_link(link)

    asset = pystac.Asset(spec.path.name, media_type=pystac.MediaType.COG, roles=["data"], title=spec.path.name)
    item.add_asset("data", asset)
    if spec.quicklook is not None:
        quicklook = os.path.relpath(spec.quicklook.path.resolve(), spec.path.resolve().parent)
        item.add_asset("overview", pystac.Asset(quicklook, media_type=pystac.MediaType.PNG, roles=["overview"]))
    _describe_bands(asset, spec, resolution)
    projection = ProjectionExtension.ext(item, add_if_missing=True)
    epsg = crs.to_epsg()
    projection.apply(
        code=f"EPSG:{epsg}" if epsg else None, wkt2=None if epsg else crs.to_wkt(), bbox=list(bounds),
        shape=list(shape), transform=list(transform)[:6],
    )
    if spec.colormap is not None:
        ClassificationExtension.ext(asset, add_if_missing=True).apply(classes=_legend(spec, model.classes))
    _describe_model(item, model)
    return item


def _describe_bands(asset: pystac.Asset, spec: OutputSpec, resolution: float) -> None:
    names = list(spec.descriptions) or [f"band_{index}" for index in range(1, spec.bands + 1)]
    common_names = [tags.get("common_name") for tags in spec.band_tags] or [None] * spec.bands
    RasterExtension.ext(asset, add_if_missing=True).apply(
        bands=[
            RasterBand.create(
                nodata="nan" if math.isnan(spec.nodata) else spec.nodata, data_type=DataType(spec.dtype), spatial_resolution=resolution,
                unit=spec.units or None, scale=spec.scale, offset=spec.offset,
            )
            for _ in names
        ]
    )
    EOExtension.ext(asset, add_if_missing=True).apply(
        bands=[Band.create(name=name, common_name=common) for name, common in zip(names, common_names)]
    )


def _legend(spec: OutputSpec, classes: Sequence[str]) -> list[Classification]:
    legend = [
        Classification.create(value=value, name=name, color_hint="%02X%02X%02X" % class_colour(value))
        for value, name in enumerate(classes)
    ]
    return [*legend, Classification.create(value=int(spec.nodata), name="nodata", nodata=True, color_hint="000000")]


def _describe_model(item: pystac.Item, model: ModelDescription) -> None:
    scaling = [
        ValueScaling.create(ValueScalingType.Z_SCORE, mean=mean, stddev=std)
        for mean, std in zip(model.input_mean, model.input_std)
    ]
    model_input = ModelInput.create(
        name="input", bands=list(model.input_bands), description=model.input_description,
        input=InputStructure.create(
            shape=[-1, len(model.input_bands), model.tile, model.tile],
            dim_order=["batch", "bands", "height", "width"], data_type=DataType.FLOAT32,
        ),
    )
    # The MLM schema (1.4) takes one value-scaling object per band; pystac's setter takes a single one.
    model_input.properties["value_scaling"] = [scale.to_dict() for scale in scaling] or None
    task = TaskType(model.task)
    model_output = ModelOutput.create(
        name="classes" if model.classes else "output", tasks=[task],
        result=ResultStructure.create(
            shape=[-1, len(model.classes) or len(model.output_bands), model.tile, model.tile],
            dim_order=["batch", "channel", "height", "width"], data_type=DataType.FLOAT32,
        ),
        classes=[Classification.create(value=value, name=name) for value, name in enumerate(model.classes)] or None,
    )
    MLMExtension.ext(item, add_if_missing=True).apply(
        name=model.name, architecture=model.architecture, tasks=[task], input=[model_input], output=[model_output],
        framework="pytorch", framework_version=torch.__version__.split("+")[0], pretrained=True,
    )
    weights = pystac.Asset(model.href, title=f"{model.name} weights", roles=["mlm:model"])
    item.add_asset("model", weights)
    AssetGeneralMLMExtension.ext(weights, add_if_missing=True).apply(artifact_type=model.artifact_type)


def _provenance(provenance: Provenance) -> dict:
    return {
        "command": provenance.command, "options": dict(provenance.options), **provenance.versions(),
        "models": [vars(model) for model in provenance.models], **dict(provenance.generation),
        **({"inputs": dict(provenance.inputs)} if provenance.inputs else {}),
    }


def _derived_from(source: SceneInput | Path) -> list[pystac.Link]:
    """``derived_from`` links: each source item (its href without query), or the local input file."""
    if isinstance(source, SceneInput) and source.items:
        return [
            pystac.Link("derived_from", item.href, media_type=pystac.MediaType.GEOJSON, title=f"input item {item.id}")
            for item in source.items if item.href
        ]
    path = source.path if isinstance(source, SceneInput) else source
    return [pystac.Link("derived_from", str(Path(path).resolve()), media_type=pystac.MediaType.GEOTIFF, title="input")]


def _input_datetime(source: SceneInput | Path) -> dt.datetime | None:
    if isinstance(source, SceneInput):
        if source.dates and source.dates[0]:
            return pystac.utils.str_to_datetime(source.dates[0])
        source = source.path
    with rasterio.open(source) as src:
        tags = src.tags()
    for name in INPUT_DATETIME_TAGS:
        if name in tags:
            try:
                moment = dt.datetime.fromisoformat(tags[name])
            except ValueError:
                continue
            return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)
    return None
