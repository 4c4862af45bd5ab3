"""The scene tasks over STAC items served as catalogs serve them: the same output as the same scene given as a
hand-prepared GeoTIFF in the model's units; collections, searches, provenance of the source items, no secrets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio

import catalog_scenes as C
from axs_lib.demo.catalog_server import API_ITEMS, CatalogServer
from axs_lib.cli.scenes import main
from axs_lib.scenes import tasks
from helpers import process_environment
from test_scenes import TORCHRUN
from test_scenes_commands import segmentation_folder, terramind  # noqa: F401

WINDOWS = ["--tile", "56", "--overlap", "14", "--quiet"]
PRITHVI_NAMES = ["BLUE", "GREEN", "RED", "NIR_NARROW", "SWIR_1", "SWIR_2"]


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as dataset:
        return dataset.read()


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    """Earth Search and HLS L30 items of the scene, a collection of both plus a broken item, and a STAC API."""
    root = tmp_path_factory.mktemp("served")
    earth_search = C.earth_search_sentinel2(root / "es", offset_applied=False)
    landsat = C.hls(root / "l30", landsat=True)
    broken = C.earth_search_sentinel2(root / "broken", offset_applied=False, item_id="broken",
                                      bands=("B02", "B03", "B04", "B8A", "B11"))
    features = []
    for path in (earth_search, landsat, broken):
        document = json.loads(path.read_text())
        document["links"] = [{"rel": "self", "href": f"SERVER/{path.parent.name}/{path.name}"}]
        features.append(document)
    (root / "collection.json").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    (root / API_ITEMS).write_text(json.dumps({"type": "FeatureCollection", "features": features[:2]}))
    C.sentinel1_rtc(root / "rtc")
    return root


@pytest.fixture(scope="module")
def server(catalog):
    with CatalogServer(catalog) as running:
        for name in ("collection.json", API_ITEMS):
            path = catalog / name
            path.write_text(path.read_text().replace("SERVER", running.root))
        yield running


@pytest.fixture(scope="module")
def hand_prepared(tmp_path_factory) -> Path:
    """Prithvi's six bands as reflectance x 10000, in Prithvi's order, described: what a user would prepare."""
    truth = C.truth()
    path = tmp_path_factory.mktemp("prepared") / "prithvi_bands.tif"
    return C.hand_prepared(path, [truth[band] for band in C.PRITHVI_S2_IDS], PRITHVI_NAMES)


def item_url(server: CatalogServer, folder: str) -> str:
    (path,) = (server.folder / folder).glob("*.json")
    return server.url(f"{folder}/{path.name}")


def test_segment_from_a_catalog_item_equals_segment_from_the_hand_prepared_geotiff(
    server, hand_prepared, segmentation_folder, work, capsys
):
    model = ["--model", str(segmentation_folder), "--probabilities"]
    assert main(["segment", str(hand_prepared), str(work / "local.tif"), *model, *WINDOWS]) == 0, capsys.readouterr().err
    for folder in ("es", "l30"):
        output = work / f"{folder}.tif"
        assert main(["segment", item_url(server, folder), str(output), *model, *WINDOWS]) == 0, capsys.readouterr().err
        np.testing.assert_array_equal(read(output), read(work / "local.tif"), err_msg=folder)


def test_the_output_records_its_source_item_and_each_bands_conversion(server, segmentation_folder, work, capsys):
    url = item_url(server, "es")
    output = work / "classes.tif"
    assert main(["segment", url, str(output), "--model", str(segmentation_folder), "--stac", *WINDOWS]) == 0, capsys.readouterr().err

    with rasterio.open(output) as dataset:
        tags = dataset.tags()
    (source,) = json.loads(tags["AXS_INPUT_ITEMS"])
    assert source == {"id": "S2B_33TUN_20240615_0_L2A", "collection": "sentinel-2-l2a", "datetime": C.DATETIME,
                      "href": url, "product": "Sentinel-2 L2A"}
    bands = json.loads(tags["AXS_INPUT_BANDS"])
    assert [band["asset"] for band in bands] == ["blue", "green", "red", "nir08", "swir16", "swir22"]
    assert bands[0]["conversion"] == "x 1 + -1000", "reflectance x 10000 = DN x 0.0001 x 10000 - 0.1 x 10000"
    item = pystac.Item.from_file(str(output.with_suffix(".json")))
    assert [link.href for link in item.links if link.rel == "derived_from"] == [url]
    assert item.datetime == pystac.utils.str_to_datetime(C.DATETIME)


def test_a_collection_writes_one_output_per_item_reports_the_failed_one_and_reruns_only_what_is_missing(
    server, segmentation_folder, work, capsys
):
    out = work / "outputs"
    arguments = ["segment", server.url("collection.json"), str(out), "--model", str(segmentation_folder), *WINDOWS]

    assert main(arguments) == 1
    captured = capsys.readouterr()
    assert "error: item broken: item broken has no asset for SWIR_2" in captured.err
    assert sorted(path.name for path in out.iterdir()) == ["HLS.L30.T33TUN.2024167T095031.v2.0.tif", "S2B_33TUN_20240615_0_L2A.tif"]
    finished = {path: path.stat().st_mtime_ns for path in out.iterdir()}

    assert main(arguments) == 1
    assert "2 item(s) already done" in capsys.readouterr().out
    assert {path: path.stat().st_mtime_ns for path in out.iterdir()} == finished


LOGGED_CLI = """import logging, sys
logging.basicConfig(level=logging.INFO, format="%(message)s")
from axs_lib.cli.scenes import main
sys.exit(main())
"""


def test_under_torchrun_each_rank_runs_whole_items_and_the_outputs_are_the_single_process_ones(
    server, segmentation_folder, work, capsys
):
    arguments = [server.url("collection.json"), "--model", str(segmentation_folder), *WINDOWS]
    assert main(["segment", arguments[0], str(work / "alone"), *arguments[1:]]) == 1, "one item is broken"
    capsys.readouterr()
    script = work / "logged_cli.py"
    script.write_text(LOGGED_CLI)

    shared = subprocess.run(
        [sys.executable, *TORCHRUN, str(script), "segment", arguments[0], str(work / "shared"), *arguments[1:]],
        capture_output=True, text=True, cwd=work, timeout=300, env=process_environment(TMPDIR=str(work)),
    )
    assert shared.returncode == 1, shared.stderr
    assert shared.stderr.count("error: item broken: item broken has no asset for SWIR_2") == 1, "said once, by rank 0"
    taken = sorted(line.split(": ", 1)[-1] for line in shared.stderr.splitlines() if " of 2 runs items " in line)
    assert taken == ["rank 0 of 2 runs items S2B_33TUN_20240615_0_L2A, broken",
                     "rank 1 of 2 runs items HLS.L30.T33TUN.2024167T095031.v2.0"], shared.stderr
    for path in sorted((work / "alone").iterdir()):
        np.testing.assert_array_equal(read(work / "shared" / path.name), read(path), err_msg=path.name)
    assert sorted(p.name for p in (work / "shared").iterdir()) == sorted(p.name for p in (work / "alone").iterdir())


def test_a_search_runs_the_items_it_finds(server, segmentation_folder, work, capsys):
    out = work / "found"
    arguments = ["segment", str(out), "--search", server.url("api"), "--collection", "sentinel-2-l2a",
                 "--datetime", "2024-06-01T00:00:00Z/2024-06-30T00:00:00Z", "--bbox", "14", "44", "16", "46",
                 "--max-cloud", "20", "--model", str(segmentation_folder), *WINDOWS]

    assert main(arguments) == 0, capsys.readouterr().err
    assert [path.name for path in out.iterdir()] == ["S2B_33TUN_20240615_0_L2A.tif"]


def test_the_python_api_takes_a_pystac_item(server, hand_prepared, segmentation_folder, work):
    item = pystac.Item.from_file(item_url(server, "es"))

    run = tasks.segment_scene(segmentation_folder, item, work / "from_item.tif", tile=56, overlap=14, probabilities=True)
    tasks.segment_scene(segmentation_folder, hand_prepared, work / "local.tif", tile=56, overlap=14, probabilities=True)

    assert run.written == [work / "from_item.tif"] and run.ok
    np.testing.assert_array_equal(read(work / "from_item.tif"), read(work / "local.tif"))


def test_sar_to_optical_feeds_an_rtc_item_to_terraminds_s1rtc_modality_in_db(server, terramind, work, capsys):
    output = work / "optical.tif"
    arguments = ["sar-to-optical", item_url(server, "rtc"), str(output), "--tile", "64", "--overlap", "16",
                 "--timesteps", "1", "--quiet"]
    assert main(arguments) == 0, capsys.readouterr().err

    with rasterio.open(output) as dataset:
        tags = dataset.tags()
    assert tags["SOURCE"] == "TerraMind 1.0 Large S1RTC -> S2L2A"
    assert [band["conversion"] for band in json.loads(tags["AXS_INPUT_BANDS"])] == ["x 1 + 0 then 10 log10"] * 2


def test_a_query_string_in_hrefs_never_reaches_tags_records_or_stac_items(catalog, server, segmentation_folder, work, capsys):
    signed = catalog / "signed.json"
    document = json.loads(next((catalog / "es").glob("S2B*.json")).read_text())
    for asset in document["assets"].values():
        asset["href"] = server.url("es/" + asset["href"].lstrip("./")) + "?st=2024-06-15&sig=SECRET"
    signed.write_text(json.dumps(document))
    output = work / "signed.tif"

    code = main(["segment", server.url("signed.json?token=SECRET"), str(output), "--model", str(segmentation_folder),
                 "--stac", *WINDOWS])

    captured = capsys.readouterr()
    assert code == 0, captured.err
    with rasterio.open(output) as dataset:
        assert "SECRET" not in json.dumps(dataset.tags())
    assert "SECRET" not in output.with_suffix(".json").read_text()
    assert "SECRET" not in captured.out + captured.err


def test_evaluate_takes_an_item_as_the_reference_in_its_catalogs_units(server, hand_prepared, capsys):
    for folder in ("es", "l30"):
        assert main(["evaluate", str(hand_prepared), item_url(server, folder), "--json", "--quiet"]) == 0
        result = json.loads(capsys.readouterr().out)
        hole = C.HOLE[0].stop - C.HOLE[0].start, C.HOLE[1].stop - C.HOLE[1].start
        assert result["valid_pixels"] == C.HEIGHT * C.WIDTH - hole[0] * hole[1], folder
        assert result["overall"]["mae"] == 0, f"{folder}: the item's reflectance is the prepared file's"


def test_an_asset_that_goes_away_mid_run_is_one_line_naming_it_and_the_same_command_continues_when_back(
    tmp_path, segmentation_folder, capsys
):
    values = {band: np.tile(image, (4, 4)) for band, image in C.truth().items()}
    C.earth_search_sentinel2(tmp_path / "flaky", offset_applied=False, bands=C.PRITHVI_S2_IDS, values=values, scl=False)
    output = tmp_path / "classes.tif"
    with CatalogServer(tmp_path) as server:
        url = item_url(server, "flaky")
        arguments = ["segment", url, str(output), "--model", str(segmentation_folder), "--batch-size", "4", *WINDOWS]
        server.faults["/flaky/B11.tif"] = (3, 404)  # the file's header and a first block, then it is gone

        assert main(arguments) == 2
        error = capsys.readouterr().err.strip()
        assert error.count("\n") == 0 and f"item S2B_33TUN_20240615_0_L2A asset 'swir16' ({server.url('flaky/B11.tif')})" in error
        assert "an asset is missing, refused or damaged" in error and "rerun the same command to continue from window" in error
        saved = len(list((tmp_path / "classes.tif.partial").glob("r*.npy")))
        assert saved > 0 and not output.exists()

        server.faults.clear()
        assert main(arguments) == 0, capsys.readouterr().err
        assert main([*arguments[:2], str(tmp_path / "clean.tif"), *arguments[3:]]) == 0
    np.testing.assert_array_equal(read(output), read(tmp_path / "clean.tif"))
