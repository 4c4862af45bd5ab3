"""What the scene commands write besides pixels: Cloud-Optimized GeoTIFFs, provenance tags, STAC items, quick-looks."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from PIL import Image
from pystac.extensions.classification import ClassificationExtension
from pystac.extensions.eo import EOExtension
from pystac.extensions.mlm import MLMExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import RasterExtension
from pystac.validation.stac_validator import JsonSchemaSTACValidator
from rasterio.warp import transform_bounds
from rio_cogeo.cogeo import cog_validate

import axs_lib
from axs_lib.scenes import stream_model
from axs_lib.scenes.cog import write_cog
from axs_lib.cli.scenes import main
from axs_lib.weights.fingerprint import weights_fingerprints
from axs_lib.scenes.quicklook import class_colour
from axs_lib.weights.fingerprint import module_fingerprint
from test_scenes import CRS_UTM33, convolution, write_raster
from test_scenes_commands import CLASSES, HEIGHT, WIDTH, hole_mask, scenes, segmentation_folder, terramind  # noqa: F401

TINY = ["--tile", "112", "--overlap", "16", "--timesteps", "6", "--quiet"]


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def tags(path: Path) -> dict[str, str]:
    with rasterio.open(path) as src:
        return src.tags()


def valid_stac_item(path: Path) -> pystac.Item:
    """The item at ``path``, checked against the STAC item schema that pystac ships (no extension schemas)."""
    document = json.loads(path.read_text())
    JsonSchemaSTACValidator().validate_core(document, pystac.STACObjectType.ITEM, document["stac_version"], str(path))
    return pystac.Item.from_file(str(path))


def assert_valid_cog(path: Path) -> None:
    is_valid, errors, warnings = cog_validate(str(path), strict=True)
    assert is_valid and not errors and not warnings, (errors, warnings)


def loaded_segmentation_fingerprint(folder: Path) -> str:
    from axs_lib.models import PrithviSegmentation

    return weights_fingerprints(segmentation=PrithviSegmentation.from_pretrained(folder))["segmentation"]


def test_segment_writes_a_cog_with_provenance_a_class_colour_quicklook_and_a_valid_stac_item(
    scenes, segmentation_folder, work, offline
):
    output = work / "classes.tif"
    assert main(["segment", str(scenes["optical"]), str(output), "--model", str(segmentation_folder), "--tile", "56",
                 "--overlap", "8", "--quiet", "--stac", "--quicklook", str(work / "classes.png")]) == 0

    assert_valid_cog(output)
    written = tags(output)
    assert written["AXS_COMMAND"] == "segment" and json.loads(written["AXS_OPTIONS"])["tile"] == 56
    assert written["AXS_SEGMENTATION_MODEL"] == "Prithvi-EO-2.0-600M"
    assert written["AXS_SEGMENTATION_WEIGHTS"] == loaded_segmentation_fingerprint(segmentation_folder)
    assert written["AXS_SEGMENTATION_SOURCE"] == str(segmentation_folder.resolve())
    assert written["AXS_LIB_VERSION"] == axs_lib.__version__ and written["TERRATORCH_VERSION"]
    assert written["UNITS"] == "class index" and "AXS_SEED" not in written
    with rasterio.open(output) as src:
        assert src.descriptions == ("class",) and src.colormap(1)[2] == (*class_colour(2), 255)
        classes = src.read(1)
    with Image.open(work / "classes.png") as quicklook:
        assert quicklook.mode == "P" and quicklook.size == (WIDTH, HEIGHT)
        shown = np.asarray(quicklook.convert("RGB"))
    assert (shown[hole_mask()] == 0).all()
    for value in np.unique(classes[~hole_mask()]):
        assert (shown[classes == value] == class_colour(int(value))).all()

    item = valid_stac_item(work / "classes.json")
    asset = item.assets["data"]
    assert asset.get_absolute_href() == str(output) and "data" in asset.roles
    assert item.assets["overview"].get_absolute_href() == str(work / "classes.png")
    assert [link.get_absolute_href() for link in item.get_links("derived_from")] == [str(scenes["optical"].resolve())]
    np.testing.assert_allclose(item.bbox, transform_bounds(CRS_UTM33, "EPSG:4326", *rasterio.open(output).bounds, densify_pts=21))
    assert ProjectionExtension.ext(item).code == "EPSG:32633" and ProjectionExtension.ext(item).shape == [HEIGHT, WIDTH]
    assert [(band.nodata, band.data_type) for band in RasterExtension.ext(asset).bands] == [(255, "uint8")]
    assert [band.name for band in EOExtension.ext(asset).bands] == ["class"]
    legend = {entry.value: (entry.name, entry.color_hint) for entry in ClassificationExtension.ext(asset).classes}
    assert legend[1] == ("class_1", "%02X%02X%02X" % class_colour(1)) and legend[255] == ("nodata", "000000")
    model = MLMExtension.ext(item)
    assert model.tasks == ["semantic-segmentation"] and model.framework == "pytorch"
    assert model.input[0].bands == ["BLUE", "GREEN", "RED", "NIR_NARROW", "SWIR_1", "SWIR_2"]
    assert [scaling["mean"] for scaling in model.input[0].properties["value_scaling"]][:2] == [1087.0, 1342.0]
    assert [entry.name for entry in model.output[0].classes] == [f"class_{index}" for index in range(CLASSES)]
    assert item.assets["model"].roles == ["mlm:model"] and item.properties["axs:provenance"]["command"] == "segment"


def test_pipeline_outputs_record_both_models_the_seed_and_timesteps_and_reflectance_units(
    scenes, segmentation_folder, terramind, tiny_weights, work, offline
):
    classes, optical = work / "classes.tif", work / "optical.tif"
    assert main(["pipeline", str(scenes["sar"]), str(classes), "--model", str(segmentation_folder), "--optical", str(optical),
                 "--seed", "3", "--stac", "--quicklook", str(work / "classes.png"), *TINY]) == 0

    for output in (classes, optical):
        assert_valid_cog(output)
        written = tags(output)
        assert (written["AXS_COMMAND"], written["AXS_SEED"], written["AXS_TIMESTEPS"]) == ("pipeline", "3", "6")
        assert written["AXS_GENERATOR_MODEL"] == "TerraMind-1.0-large"
        assert written["AXS_GENERATOR_WEIGHTS"].startswith("sampled-sha256:")
        assert written["AXS_SEGMENTATION_WEIGHTS"] == loaded_segmentation_fingerprint(segmentation_folder)
    with rasterio.open(optical) as src:
        assert src.tags()["UNITS"] == "reflectance x 10000" and src.descriptions[3] == "B04"
        assert set(src.scales) == {0.0001} and set(src.offsets) == {0.0} and set(src.units) == {"reflectance"}
        assert src.tags(4) == {"name": "RED", "common_name": "red"}

    generated = valid_stac_item(work / "optical.json")
    bands = EOExtension.ext(generated.assets["data"]).bands
    assert [(band.name, band.common_name) for band in bands][1:4] == [("B02", "blue"), ("B03", "green"), ("B04", "red")]
    assert {band.scale for band in RasterExtension.ext(generated.assets["data"]).bands} == {0.0001}
    generator = MLMExtension.ext(generated)
    assert (generator.mlm_name, generator.tasks, generator.input[0].bands) == ("TerraMind-1.0-large", ["generative"], ["VV", "VH"])
    assert generated.properties["axs:provenance"]["seed"] == 3
    assert MLMExtension.ext(valid_stac_item(work / "classes.json")).input[0].bands == ["VV", "VH"]


def test_probabilities_are_a_float_cog_whose_stac_item_has_nan_nodata_and_no_legend(scenes, segmentation_folder, work, offline):
    output = work / "probabilities.tif"
    assert main(["segment", str(scenes["optical"]), str(output), "--model", str(segmentation_folder), "--probabilities",
                 "--stac", "--tile", "56", "--overlap", "8", "--quiet"]) == 0

    assert_valid_cog(output)
    with rasterio.open(output) as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "3" and set(src.units) == {"probability"}
    item = valid_stac_item(work / "probabilities.json")
    assert {band.nodata for band in RasterExtension.ext(item.assets["data"]).bands} == {"nan"}
    assert [band.name for band in EOExtension.ext(item.assets["data"]).bands] == [f"class_{index}" for index in range(CLASSES)]
    assert "classification:classes" not in item.assets["data"].extra_fields


def test_quicklook_of_probabilities_is_refused_in_one_line_before_anything_is_written(scenes, segmentation_folder, work, capsys):
    arguments = ["segment", str(scenes["optical"]), str(work / "p.tif"), "--model", str(segmentation_folder),
                 "--probabilities", "--quicklook", str(work / "p.png"), "--tile", "56", "--overlap", "8", "--quiet"]
    assert main(arguments) == 2
    assert capsys.readouterr().err.startswith("error: --quicklook shows a class map")
    assert list(work.iterdir()) == []


def test_outputs_larger_than_a_block_are_cogs_with_overviews_down_to_one_block(work):
    scene = write_raster(work / "scene.tif", np.random.default_rng(0).normal(0, 1, (2, 600, 700)))
    stream_model(convolution(), scene, work / "out.tif", tile=256, overlap=16, batch_size=2)

    assert_valid_cog(work / "out.tif")
    with rasterio.open(work / "out.tif") as src:
        assert src.overviews(1) == [2, 4] and src.profile["blockxsize"] == 256
        assert src.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "3"


def test_class_overviews_hold_only_classes_and_reflectance_overviews_are_block_means(work):
    rng = np.random.default_rng(0)
    sources = {
        "mode": (rng.integers(0, 3, (1, 512, 512)).astype("uint8"), 255),
        "average": (np.kron(rng.integers(0, 10000, (1, 256, 256)), np.ones((1, 2, 2))).astype("uint16"), 65535),
    }
    for resampling, (data, nodata) in sources.items():
        plain = work / f"{resampling}-plain.tif"
        profile = {"driver": "GTiff", "count": 1, "height": 512, "width": 512, "dtype": data.dtype, "nodata": nodata,
                   "crs": CRS_UTM33, "transform": rasterio.Affine(10, 0, 0, 0, -10, 0)}
        with rasterio.open(plain, "w", **profile) as dst:
            dst.write(data)
        write_cog(plain, work / f"{resampling}.tif", resampling, 256)
        assert_valid_cog(work / f"{resampling}.tif")
        with rasterio.open(work / f"{resampling}.tif", overview_level=0) as overview:
            reduced = overview.read(1)
        if resampling == "mode":
            assert set(np.unique(reduced)) <= {0, 1, 2}
        else:
            np.testing.assert_array_equal(reduced, data[0, ::2, ::2])
    with rasterio.open(work / "mode.tif") as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "2"


def test_weights_fingerprints_are_module_fingerprints_by_role_for_the_models_given():
    first, second = convolution(0), convolution(1)

    assert weights_fingerprints(segmentation=first) == {"segmentation": module_fingerprint(first)}
    both = weights_fingerprints(segmentation=first, generator=second)
    assert both == {"segmentation": module_fingerprint(first), "generator": module_fingerprint(second)}
    assert both["segmentation"] != both["generator"]


def test_a_stac_item_is_dated_by_the_inputs_datetime_tag_when_it_has_one(work):
    from axs_lib.scenes.provenance import Provenance
    from axs_lib.scenes.outputs import OutputSpec
    from axs_lib.scenes.stac import ModelDescription, stac_item

    source = write_raster(work / "s1.tif", np.zeros((2, 16, 16)))
    with rasterio.open(source, "r+") as dst:
        dst.update_tags(DATETIME="2024-06-01T10:20:30")
    output = write_raster(work / "out.tif", np.zeros((1, 16, 16)))
    spec = OutputSpec(output, 1, "float32", float("nan"), lambda values, valid: values)
    model = ModelDescription("m", "a conv", "regression", ["VV", "VH"], 16, "dB", ["out"], "m.pt", "torch.save")

    item = stac_item(spec, source, model, Provenance("test", {}, []))
    assert item.datetime.isoformat() == "2024-06-01T10:20:30+00:00"
    assert stac_item(spec, output, model, Provenance("test", {}, [])).datetime > item.datetime
