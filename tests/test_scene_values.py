"""What the scene commands give the models, checked by value: on a scene of one window, the command's output
equals the model applied here to inputs this test prepares itself from the documented facts
(../shared/DESIGN.md: Prithvi EO 2.0 600M's and TerraMind S1GRD's pretraining mean and std, dB = 10 log10 of
linear power, nodata given the mean). Band order, scale and offset, and provenance are checked the same way."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import torch

from axs_lib.cli.scenes import main
from axs_lib.errors import SceneInterruptedError
from axs_lib.models import PrithviSegmentation
from axs_lib.scenes import outputs as scene_outputs
from axs_lib.scenes.tasks import segment_scene
from axs_lib.weights.fingerprint import module_fingerprint
from test_scenes import NODATA, write_raster
from test_scenes_commands import segmentation_folder, terramind  # noqa: F401

SIDE = 56
"""One window: tile 56 (Prithvi's patch 14 x 4), no overlap."""
ONE_WINDOW = ["--tile", str(SIDE), "--overlap", "0", "--quiet"]
PRITHVI_600M_MEAN = [1087.0, 1342.0, 1433.0, 2734.0, 1958.0, 1363.0]
PRITHVI_600M_STD = [2248.0, 2179.0, 2178.0, 1850.0, 1242.0, 1049.0]
PRITHVI_NAMES = ["BLUE", "GREEN", "RED", "NIR_NARROW", "SWIR_1", "SWIR_2"]
S1GRD_MEAN = [-12.599, -20.293]
S1GRD_STD = [5.195, 5.890]
HOLE = (slice(3, 9), slice(40, 50))


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as dataset:
        return dataset.read()


def described(path: Path, data: np.ndarray, names: list[str]) -> Path:
    write_raster(path, data)
    with rasterio.open(path, "r+") as dataset:
        dataset.descriptions = tuple(names)
    return path


@pytest.fixture
def weights_dir(tiny_weights, use_weights):
    return use_weights(tiny_weights)


@pytest.fixture(scope="module")
def reflectance() -> np.ndarray:
    """Six bands of reflectance x 10000 with a nodata hole."""
    values = np.random.default_rng(7).uniform(0, 6000, (6, SIDE, SIDE)).astype(np.float32)
    values[(slice(None), *HOLE)] = NODATA
    return values


def probabilities_of(model: torch.nn.Module, standardised: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        logits = model(torch.from_numpy(standardised)[None].float()).output
    return torch.softmax(logits, dim=1)[0].numpy()


def test_segment_gives_prithvi_its_pretraining_standardisation_and_the_mean_at_nodata(
    reflectance, segmentation_folder, work, capsys
):
    source = described(work / "hls.tif", reflectance, PRITHVI_NAMES)
    assert main(["segment", str(source), str(work / "p.tif"), "--model", str(segmentation_folder), "--probabilities",
                 *ONE_WINDOW]) == 0, capsys.readouterr().err

    mean, std = np.array(PRITHVI_600M_MEAN)[:, None, None], np.array(PRITHVI_600M_STD)[:, None, None]
    standardised = (reflectance - mean) / std
    standardised[(slice(None), *HOLE)] = 0.0  # nodata is given the mean: 0 once standardised
    expected = probabilities_of(PrithviSegmentation.from_pretrained(segmentation_folder).eval(), standardised)
    written = read(work / "p.tif")
    hole = np.zeros((SIDE, SIDE), dtype=bool)
    hole[HOLE] = True
    assert np.isnan(written[:, hole]).all()
    np.testing.assert_allclose(written[:, ~hole], expected[:, ~hole], atol=2e-6)


def test_segment_gives_a_terramind_s1grd_model_its_own_db_statistics(terramind, work, capsys):
    from axs_lib.models.segmentation import build_from_recipe
    from test_family_saves import terramind_model_args

    model = build_from_recipe("EncoderDecoderFactory", terramind_model_args("tiny", "S1GRD"), pretrained=True,
                              checkpoint_path=None, device=torch.device("cpu"), dtype=None)
    folder = model.save_pretrained(work / "s1-model")
    side = 64
    db = np.stack([np.random.default_rng(1).normal(-12, 3, (side, side)), np.random.default_rng(2).normal(-20, 3, (side, side))])
    source = described(work / "s1.tif", db.astype(np.float32), ["VV", "VH"])
    assert main(["segment", str(source), str(work / "p.tif"), "--model", str(folder), "--probabilities",
                 "--tile", str(side), "--overlap", "0", "--quiet"]) == 0, capsys.readouterr().err

    standardised = (db - np.array(S1GRD_MEAN)[:, None, None]) / np.array(S1GRD_STD)[:, None, None]
    expected = probabilities_of(PrithviSegmentation.from_pretrained(folder).eval(), standardised.astype(np.float32))
    np.testing.assert_allclose(read(work / "p.tif"), expected, atol=2e-6)


def test_bands_described_in_another_order_give_the_same_output(reflectance, segmentation_folder, work, capsys):
    order = [4, 0, 5, 2, 1, 3]
    ordered = described(work / "ordered.tif", reflectance, PRITHVI_NAMES)
    shuffled = described(work / "shuffled.tif", reflectance[order], [PRITHVI_NAMES[index] for index in order])
    s2_ids = described(work / "ids.tif", reflectance[order], [["B02", "B03", "B04", "B8A", "B11", "B12"][i] for i in order])
    model = ["--model", str(segmentation_folder), "--probabilities", *ONE_WINDOW]
    for source in (ordered, shuffled, s2_ids):
        assert main(["segment", str(source), str(work / f"{source.stem}_out.tif"), *model]) == 0, capsys.readouterr().err

    np.testing.assert_array_equal(read(work / "shuffled_out.tif"), read(work / "ordered_out.tif"))
    np.testing.assert_array_equal(read(work / "ids_out.tif"), read(work / "ordered_out.tif"))


def test_a_file_described_as_other_bands_is_refused_not_read_in_file_order(reflectance, segmentation_folder, work, capsys):
    source = described(work / "other.tif", reflectance, ["B01", "B02", "B03", "B04", "B05", "B06"])

    assert main(["segment", str(source), str(work / "out.tif"), "--model", str(segmentation_folder), *ONE_WINDOW]) == 2
    assert "band descriptions name B01, B02, B03, B04, B05, B06, but not each of the bands" in capsys.readouterr().err
    assert not (work / "out.tif").exists()


class StandInGenerator(torch.nn.Module):
    """TerraMind's generation interface, ``{modality: [B, 2, H, W]} -> {"S2L2A": [B, 12, H, W]}``, as a fixed
    function of its input (the tiny random generator's output hardly depends on it): what the command gives the
    generator shows in what it writes."""

    def __init__(self) -> None:
        super().__init__()
        self.modalities: list[str] = []

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        ((modality, sar),) = inputs.items()
        self.modalities.append(modality)
        return {"S2L2A": stand_in_optical(sar)}


def stand_in_optical(sar: torch.Tensor) -> torch.Tensor:
    weights = torch.arange(1, 13, dtype=sar.dtype)[None, :, None, None]
    return 3000 + weights * (20 * sar[:, :1] - 10 * sar[:, 1:2])


@pytest.mark.parametrize("command", ["sar-to-optical", "pipeline"])
def test_sar_commands_give_the_generator_vv_and_vh_in_db_with_the_s1grd_mean_at_nodata(
    command, segmentation_folder, terramind, work, capsys, monkeypatch
):
    from axs_lib.scenes import tasks

    generator = StandInGenerator()
    monkeypatch.setattr(tasks, "_generator", lambda *arguments: generator)
    side = 112
    db = np.stack([np.random.default_rng(3).normal(-12, 3, (side, side)), np.random.default_rng(4).normal(-20, 3, (side, side))])
    db[(slice(None), *HOLE)] = NODATA
    linear = np.where(db == NODATA, NODATA, 10 ** (db / 10))
    sources = {
        "db": described(work / "db.tif", db.astype(np.float32), ["VV", "VH"]),
        "swapped": described(work / "swapped.tif", db[::-1].astype(np.float32), ["VH", "VV"]),
        "linear": described(work / "linear.tif", linear.astype(np.float32), ["VV", "VH"]),
    }
    common = ["--tile", str(side), "--overlap", "0", "--timesteps", "1", "--float", "--quiet"]
    if command == "pipeline":
        common += ["--model", str(segmentation_folder), "--probabilities", "--optical", "OPTICAL"]
    for name, source in sources.items():
        extra = ["--linear"] if name == "linear" else []
        arguments = [argument.replace("OPTICAL", str(work / f"{name}_optical.tif")) for argument in common]
        output = work / (f"{name}_out.tif" if command == "pipeline" else f"{name}_optical.tif")
        assert main([command, str(source), str(output), *arguments, *extra]) == 0, capsys.readouterr().err

    given = np.where(db == NODATA, np.array(S1GRD_MEAN)[:, None, None], db)  # nodata is given the S1GRD mean
    expected = stand_in_optical(torch.from_numpy(given)[None].float())[0].numpy()
    hole = np.zeros((side, side), dtype=bool)
    hole[HOLE] = True
    for name in sources:
        optical = read(work / f"{name}_optical.tif")
        assert np.isnan(optical[:, hole]).all(), name
        np.testing.assert_allclose(optical[:, ~hole], expected[:, ~hole], rtol=1e-5, atol=1e-2, err_msg=name)
    assert set(generator.modalities) == {"S1GRD"}
    if command == "pipeline":
        bands = [["COASTAL_AEROSOL", "BLUE", "GREEN", "RED", "RED_EDGE_1", "RED_EDGE_2", "RED_EDGE_3", "NIR_BROAD",
                  "NIR_NARROW", "WATER_VAPOR", "SWIR_1", "SWIR_2"].index(band) for band in PRITHVI_NAMES]
        reflectance = np.clip(expected[bands], 0, 10000)
        standardised = (reflectance - np.array(PRITHVI_600M_MEAN)[:, None, None]) / np.array(PRITHVI_600M_STD)[:, None, None]
        classes = probabilities_of(PrithviSegmentation.from_pretrained(segmentation_folder).eval(), standardised.astype(np.float32))
        for name in sources:
            np.testing.assert_allclose(read(work / f"{name}_out.tif")[:, ~hole], classes[:, ~hole], atol=1e-4, err_msg=name)


def test_scale_and_offset_convert_a_file_without_metadata(reflectance, segmentation_folder, work, capsys):
    valid = reflectance != NODATA
    with_offset = np.where(valid, reflectance + 1000, NODATA)  # Sentinel-2 L2A from baseline 04.00
    unit = np.where(valid, reflectance / 10000, NODATA)  # reflectance 0..1
    model = ["--model", str(segmentation_folder), "--probabilities", *ONE_WINDOW]
    runs = {
        "truth": (reflectance, []), "offset": (with_offset, ["--offset", "-1000"]), "unit": (unit, ["--scale", "10000"]),
    }
    for name, (data, options) in runs.items():
        source = described(work / f"{name}.tif", data.astype(np.float32), PRITHVI_NAMES)
        assert main(["segment", str(source), str(work / f"{name}_out.tif"), *model, *options]) == 0, capsys.readouterr().err

    np.testing.assert_allclose(read(work / "offset_out.tif"), read(work / "truth_out.tif"), atol=1e-6)
    np.testing.assert_allclose(read(work / "unit_out.tif"), read(work / "truth_out.tif"), atol=1e-5)


def test_the_weights_fingerprint_is_the_same_in_the_run_record_the_tags_and_the_stac_item(
    reflectance, segmentation_folder, work, monkeypatch
):
    expected = module_fingerprint(PrithviSegmentation.from_pretrained(segmentation_folder))
    source = described(work / "hls.tif", reflectance, PRITHVI_NAMES)
    output = work / "classes.tif"

    def disk_full(self, profile, plan):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:  # stop before the output is written, leaving the run record
        patch.setattr(scene_outputs.PartialOutput, "assemble", disk_full)
        with pytest.raises(SceneInterruptedError):
            segment_scene(segmentation_folder, source, output, tile=SIDE, overlap=0, stac=True)
    record = json.loads((work / "classes.tif.partial" / "run.json").read_text())
    segment_scene(segmentation_folder, source, output, tile=SIDE, overlap=0, stac=True)

    with rasterio.open(output) as dataset:
        tag = dataset.tags()["AXS_SEGMENTATION_WEIGHTS"]
    item = pystac.Item.from_file(str(output.with_suffix(".json")))
    (stac_model,) = item.properties["axs:provenance"]["models"]
    assert record["weights"]["segmentation"] == tag == stac_model["weights"] == expected


def test_segment_standardises_with_each_base_models_own_statistics(weights_dir, work, capsys):
    from terratorch.models.backbones.prithvi_vit import prithvi_cfgs

    from axs_lib.models.segmentation import build_from_recipe
    from test_family_saves import model_args, tile

    name = "Prithvi-EO-1.0-100M"  # its own pretraining statistics, not 2.0's
    model = build_from_recipe("EncoderDecoderFactory", model_args(name), pretrained=True, checkpoint_path=None,
                              device=torch.device("cpu"), dtype=None)
    folder = model.save_pretrained(work / "eo1-model")
    side = tile(name)  # one window: the scene is exactly one tile
    reflectance = np.random.default_rng(11).uniform(0, 6000, (6, side, side)).astype(np.float32)
    reflectance[(slice(None), *HOLE)] = NODATA
    source = described(work / "hls.tif", reflectance, PRITHVI_NAMES)
    assert main(["segment", str(source), str(work / "p.tif"), "--model", str(folder), "--probabilities",
                 "--tile", str(side), "--overlap", "0", "--quiet"]) == 0, capsys.readouterr().err

    table = prithvi_cfgs["prithvi_eo_v1_100"]  # TerraTorch's table: the published statistics
    mean, std = np.array(table["mean"])[:, None, None], np.array(table["std"])[:, None, None]
    standardised = (reflectance - mean) / std
    standardised[reflectance == NODATA] = 0.0
    expected = probabilities_of(PrithviSegmentation.from_pretrained(folder).eval(), standardised.astype(np.float32))
    valid = (reflectance != NODATA).all(axis=0)
    np.testing.assert_allclose(read(work / "p.tif")[:, valid], expected[:, valid], atol=2e-6)
