"""Scenes as catalogs publish them: each catalog's items, served over HTTP with Range requests, give the models
their bands in the models' units. Expected values come from the scene's truth (catalog_scenes.truth) and the
published conventions, never from the code under test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import reproject

import catalog_scenes as C
from axs_lib.demo.catalog_server import CatalogServer
from axs_lib.errors import InvalidSceneError
from axs_lib.scenes import SceneInput
from axs_lib.scenes.inputs import gdal_environment
from axs_lib.scenes.items import item_scene
from axs_lib.scenes.sources import open_source
from axs_lib.scenes.windows import Window

PRITHVI = ("BLUE", "GREEN", "RED", "NIR_NARROW", "SWIR_1", "SWIR_2")
TERRAMIND_S2 = ("COASTAL_AEROSOL", "BLUE", "GREEN", "RED", "RED_EDGE_1", "RED_EDGE_2", "RED_EDGE_3", "NIR_BROAD",
                "NIR_NARROW", "WATER_VAPOR", "SWIR_1", "SWIR_2")


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    """The scene in every catalog's conventions, one folder each."""
    root = tmp_path_factory.mktemp("catalogs")
    C.earth_search_sentinel2(root / "es-offset-in-files", offset_applied=False)
    C.earth_search_sentinel2(root / "es-offset-removed", offset_applied=True)
    C.earth_search_sentinel2(root / "es-c1", offset_applied=False, collection="sentinel-2-c1-l2a")
    C.planetary_computer_sentinel2(root / "pc-baseline-05.10", baseline="05.10")
    C.planetary_computer_sentinel2(root / "pc-baseline-03.01", baseline="03.01")
    C.hls(root / "hls-s30", landsat=False)
    C.hls(root / "hls-l30", landsat=True)
    C.sentinel1_rtc(root / "s1-rtc")
    C.sentinel1_grd(root / "s1-grd", calibrated=True)
    C.sentinel1_grd(root / "s1-grd-numbers", calibrated=False)
    return root


@pytest.fixture(scope="module")
def server(published):
    with CatalogServer(published) as running:
        yield running


def item_url(server: CatalogServer, folder: str) -> str:
    (item,) = [path for path in (server.folder / folder).glob("*.json")]
    return server.url(f"{folder}/{item.name}")


def read_whole(scene: SceneInput) -> tuple[np.ndarray, np.ndarray]:
    """Every pixel of the scene in one window: (values [bands, H, W], valid [H, W])."""
    side = max(scene.height, scene.width)
    with gdal_environment():
        reader = scene.reader()
        try:
            values, valid = reader.read(Window(0, 0, 0, 0, side, side), side)
        finally:
            reader.close()
    return values[:, : scene.height, : scene.width], valid[: scene.height, : scene.width]


def scene_of(url: str, bands, **options) -> SceneInput:
    return item_scene(open_source(url).items, bands, **options)


CATALOG_CASES = {
    # folder: why the truth is what the model gets
    "es-offset-in-files": "Earth Search, files hold +1000: raster:bands scale 0.0001 and offset -0.1 apply",
    "es-offset-removed": "Earth Search, earthsearch:boa_offset_applied: the published -0.1 must not apply again",
    "es-c1": "Earth Search Collection 1: offset not applied to the files, scale and offset published",
    "pc-baseline-05.10": "Planetary Computer, baseline 05.10: no metadata, the baseline implies -1000",
    "pc-baseline-03.01": "Planetary Computer, baseline 03.01: no offset",
    "hls-s30": "HLS S30: int16 x 10000, fill -9999, Sentinel-2 band ids",
    "hls-l30": "HLS L30: Landsat numbering, NIR narrow B05 and SWIR B06/B07, read by key without eo:bands",
}


@pytest.mark.parametrize("folder", CATALOG_CASES)
def test_each_catalog_gives_prithvi_hls_reflectance_x_10000_in_its_band_order(server, folder):
    scene = scene_of(item_url(server, folder), PRITHVI)
    values, valid = read_whole(scene)

    truth = C.truth()
    expected = np.stack([truth[band] for band in C.PRITHVI_S2_IDS])
    hole = np.zeros((C.HEIGHT, C.WIDTH), dtype=bool)
    hole[C.HOLE] = True
    assert (valid == ~hole).all(), CATALOG_CASES[folder]
    assert np.array_equal(values[:, valid], expected[:, valid]), CATALOG_CASES[folder]


def test_terramind_gets_its_twelve_bands_with_the_three_red_edges_told_apart_by_band_name(server):
    values, valid = read_whole(scene_of(item_url(server, "es-offset-in-files"), TERRAMIND_S2))

    truth = C.truth()
    assert np.array_equal(values[:, valid], np.stack([truth[band] for band in C.S2_BANDS])[:, valid])


def test_items_are_read_in_place_by_range_requests_and_jpeg2000_twins_are_never_fetched(tmp_path):
    C.earth_search_sentinel2(tmp_path / "fresh", offset_applied=False)  # new URLs: nothing in GDAL's cache yet
    with CatalogServer(tmp_path) as server:
        read_whole(scene_of(item_url(server, "fresh"), PRITHVI))

    assert server.requested(".jp2") == []
    tiff_reads = [request for request in server.requests if request.path.endswith(".tif") and request.method == "GET"]
    assert tiff_reads and all(request.status == 206 for request in tiff_reads)


def test_a_bbox_fetches_only_the_blocks_it_needs(tmp_path):
    big = {band: np.tile(image, (8, 8)) for band, image in C.truth().items()}
    folder = tmp_path / "big"
    folder.mkdir()
    transform = C.TRANSFORM
    for band in C.PRITHVI_S2_IDS:
        C.write_cog(folder / f"{band}.tif", big[band] + 1000, "uint16", 0, transform)
    item = C._item("big", "sentinel-2-c1-l2a", {}, {
        C.EARTH_SEARCH_KEYS[C.S2_BANDS.index(band)]: {
            "href": f"./{band}.tif", "type": "image/tiff; application=geotiff",
            "eo:bands": [{"name": band, "common_name": C.S2_COMMON[C.S2_BANDS.index(band)]}],
            "raster:bands": [{"scale": 0.0001, "offset": -0.1, "nodata": 0}],
        } for band in C.PRITHVI_S2_IDS
    })
    C.save_item(folder, item)
    west, north = rasterio.warp.transform("EPSG:32633", "EPSG:4326", [399960.0 + 10], [5000040.0 - 10])
    east, south = rasterio.warp.transform("EPSG:32633", "EPSG:4326", [399960.0 + 300], [5000040.0 - 300])
    with CatalogServer(tmp_path) as server:
        scene = scene_of(server.url("big/big.json"), PRITHVI, bbox=[west[0], south[0], east[0], north[0]])
        values, valid = read_whole(scene)
        fetched = server.bytes_sent(".tif")  # headers and the blocks under the area
    total = sum(path.stat().st_size for path in folder.glob("*.tif"))

    col, row = ~scene.grid.transform @ (C.TRANSFORM.c, C.TRANSFORM.f)
    assert scene.grid.crs == rasterio.crs.CRS.from_string(C.CRS) and scene.grid.resolution == C.PIXEL
    assert col == int(col) and row == int(row), "the area stays aligned to the item's pixels"
    top, left = -int(row), -int(col)
    expected = np.stack([big[band][top : top + scene.height, left : left + scene.width] for band in C.PRITHVI_S2_IDS])
    assert np.array_equal(values, expected)
    assert 0 < fetched < total / 4, (fetched, total)


def test_twenty_metre_bands_are_resampled_bilinearly_onto_the_ten_metre_grid(tmp_path):
    truth = C.truth()
    coarse = {band: truth[band][::2, ::2] + 1000 for band in ("B8A", "B11", "B12")}
    folder = tmp_path / "mixed"
    folder.mkdir()
    coarse_transform = C.TRANSFORM @ rasterio.Affine.scale(2)
    assets = {}
    for band in C.PRITHVI_S2_IDS:
        fine = band not in coarse
        image = truth[band] + 1000 if fine else coarse[band]
        C.write_cog(folder / f"{band}.tif", image, "uint16", 0, C.TRANSFORM if fine else coarse_transform)
        index = C.S2_BANDS.index(band)
        assets[band] = {"href": f"./{band}.tif", "type": "image/tiff; application=geotiff",
                        "eo:bands": [{"name": band, "common_name": C.S2_COMMON[index]}]}
    C.save_item(folder, C._item("mixed", "sentinel-2-l2a", {"s2:processing_baseline": "05.10"}, assets))

    scene = item_scene(open_source(str(folder / "mixed.json")).items, PRITHVI)
    values, valid = read_whole(scene)

    assert (scene.width, scene.height, scene.grid.resolution) == (C.WIDTH, C.HEIGHT, C.PIXEL)
    expected = np.zeros((C.HEIGHT, C.WIDTH), dtype=np.float64)
    reproject(coarse["B11"].astype(np.float64), expected, src_transform=coarse_transform, src_crs=C.CRS,
              dst_transform=C.TRANSFORM, dst_crs=C.CRS, resampling=Resampling.bilinear, src_nodata=0, dst_nodata=0)
    inside = valid & (expected > 0)
    assert np.allclose(values[PRITHVI.index("SWIR_1")][inside], expected[inside] - 1000, atol=1e-3)
    assert scene.bands[PRITHVI.index("SWIR_1")].resampling == "bilinear"


def test_sentinel1_rtc_is_linear_power_given_as_db_and_is_terraminds_s1rtc(server):
    scene = scene_of(item_url(server, "s1-rtc"), ("VV", "VH"))
    values, valid = read_whole(scene)

    linear = C.backscatter()
    assert scene.modality == "S1RTC"
    hole = np.zeros_like(valid)
    hole[C.HOLE] = True
    assert (valid == ~hole).all()
    for band, key in enumerate(("vv", "vh")):
        assert np.allclose(values[band][valid], 10 * np.log10(linear[key][valid]), atol=1e-4)


def test_a_grd_raster_located_by_ground_control_points_is_geocoded_north_up(server):
    scene = scene_of(item_url(server, "s1-grd"), ("VV", "VH"))
    values, valid = read_whole(scene)

    assert scene.modality == "S1GRD"
    assert scene.grid.crs == rasterio.crs.CRS.from_string(C.GCP_CRS)
    lon0, lat0 = C.GCP_ORIGIN
    west, north = scene.grid.transform @ (0, 0)
    assert np.isclose(west, lon0) and np.isclose(north, lat0 + C.HEIGHT * C.GCP_STEP)
    linear = C.backscatter()["vv"]  # the file's row 0 is the south edge: north-up, the truth is as written
    inside = valid & (linear > 0)
    inside[[0, -1], :] = inside[:, [0, -1]] = False
    assert np.allclose(values[0][inside], 10 * np.log10(linear[inside]), atol=1e-3)


def test_uncalibrated_grd_numbers_are_refused_with_how_to_get_calibrated_data(server):
    with pytest.raises(InvalidSceneError, match=r"uncalibrated digital numbers.*(Calibration|sarsen).*sentinel-1-rtc"):
        scene_of(item_url(server, "s1-grd-numbers"), ("VV", "VH"))


@pytest.mark.parametrize("folder, mask_value", [("es-offset-in-files", "SCL 9"), ("hls-s30", "Fmask bit 1")])
def test_mask_clouds_makes_the_items_own_cloud_pixels_nodata(server, folder, mask_value):
    scene = scene_of(item_url(server, folder), PRITHVI, mask_clouds=True)
    _, valid = read_whole(scene)

    expected = np.ones((C.HEIGHT, C.WIDTH), dtype=bool)
    expected[C.HOLE] = expected[C.CLOUD] = False
    assert (valid == expected).all(), mask_value


def test_two_items_make_a_time_stack_ordered_by_date(tmp_path):
    later = C.earth_search_sentinel2(tmp_path / "later", offset_applied=True, item_id="later",
                                     bands=C.PRITHVI_S2_IDS, values=C.truth(seed=5))
    earlier = C.earth_search_sentinel2(tmp_path / "earlier", offset_applied=True, item_id="earlier",
                                       bands=C.PRITHVI_S2_IDS)
    for path, moment in ((later, "2024-07-01T10:00:00Z"), (earlier, "2024-06-01T10:00:00Z")):
        document = json.loads(path.read_text())
        document["properties"]["datetime"] = moment
        path.write_text(json.dumps(document))
    items = [*open_source(str(later)).items, *open_source(str(earlier)).items]

    scene = item_scene(items, PRITHVI)
    values, valid = read_whole(scene)

    assert scene.dates == ("2024-06-01T10:00:00Z", "2024-07-01T10:00:00Z")
    first, second = C.truth(), C.truth(seed=5)
    expected = np.stack([first[band] for band in C.PRITHVI_S2_IDS] + [second[band] for band in C.PRITHVI_S2_IDS])
    assert np.array_equal(values[:, valid], expected[:, valid])


def test_an_item_without_a_needed_band_is_refused_by_name(tmp_path):
    path = C.earth_search_sentinel2(tmp_path / "partial", offset_applied=True, bands=("B02", "B03", "B04", "B8A", "B11"))

    with pytest.raises(InvalidSceneError, match=r"has no asset for SWIR_2 \(common name 'swir22', band B12 or swir22\)"):
        item_scene(open_source(str(path)).items, PRITHVI)


def test_a_band_published_only_as_jpeg2000_is_refused_by_name(tmp_path):
    path = C.earth_search_sentinel2(tmp_path / "jp2", offset_applied=True, bands=C.PRITHVI_S2_IDS)
    document = json.loads(path.read_text())
    del document["assets"]["swir22"]
    path.write_text(json.dumps(document))

    with pytest.raises(InvalidSceneError, match="has SWIR_2 only as JPEG 2000 \\(swir22-jp2\\)"):
        item_scene(open_source(str(path)).items, PRITHVI)


def test_a_sentinel2_item_with_neither_scale_nor_processing_baseline_is_refused(tmp_path):
    path = C.planetary_computer_sentinel2(tmp_path / "pc", baseline="05.10", bands=C.PRITHVI_S2_IDS)
    document = json.loads(path.read_text())
    del document["properties"]["s2:processing_baseline"]
    path.write_text(json.dumps(document))

    with pytest.raises(InvalidSceneError, match="neither raster:bands scale and offset nor s2:processing_baseline"):
        item_scene(open_source(str(path)).items, PRITHVI)


def test_a_local_sentinel2_file_gives_prithvi_its_six_bands_by_description(tmp_path):
    truth = C.truth()
    path = C.hand_prepared(tmp_path / "s2.tif", [truth[band] + 1000 for band in C.S2_BANDS], list(C.S2_BANDS))

    scene = SceneInput.open(path, 6, PRITHVI, offset=-1000)
    values, valid = read_whole(scene)

    assert scene.indexes == tuple(C.S2_BANDS.index(band) + 1 for band in C.PRITHVI_S2_IDS)
    assert np.array_equal(values[:, valid], np.stack([truth[band] for band in C.PRITHVI_S2_IDS])[:, valid])


def test_a_local_file_of_other_bands_is_refused_naming_the_band_ids_wanted(tmp_path):
    path = C.hand_prepared(tmp_path / "rgb.tif", [C.truth()[band] for band in ("B02", "B03", "B04")], ["B02", "B03", "B04"])

    with pytest.raises(InvalidSceneError, match=r"has 3 band\(s\); expected 6 \(BLUE \(B02\), .*SWIR_2 \(B12\)\)"):
        SceneInput.open(path, 6, PRITHVI)


def test_an_item_is_warped_onto_a_grid_in_another_crs(server):
    scene = scene_of(item_url(server, "es-offset-removed"), PRITHVI, crs="EPSG:32632", resolution=10)
    values, valid = read_whole(scene)

    assert scene.grid.crs == rasterio.crs.CRS.from_string("EPSG:32632") and scene.grid.resolution == 10
    expected = np.zeros((scene.height, scene.width), dtype=np.float64)
    reproject(C.truth()["B04"], expected, src_transform=C.TRANSFORM, src_crs=C.CRS, dst_transform=scene.grid.transform,
              dst_crs="EPSG:32632", resampling=Resampling.bilinear, src_nodata=0, dst_nodata=0)
    inside = valid & (expected > 0)
    assert inside.sum() > 0.5 * C.HEIGHT * C.WIDTH
    assert np.allclose(values[PRITHVI.index("RED")][inside], expected[inside], atol=1e-3)


@pytest.mark.parametrize("fault, status", [("busy_every", 503), ("drop_every", 0)], ids=["503", "dropped-connection"])
def test_a_server_that_fails_one_request_in_five_gives_the_same_values(tmp_path, fault, status):
    values = {band: np.tile(image, (4, 4)) for band, image in C.truth().items()}
    C.earth_search_sentinel2(tmp_path / "busy", offset_applied=False, bands=C.PRITHVI_S2_IDS, values=values, scl=False)
    with CatalogServer(tmp_path) as server:
        setattr(server, fault, 5)
        scene = scene_of(item_url(server, "busy"), PRITHVI)
        read, valid = read_whole(scene)
        assert any(request.status == status for request in server.requests), "the fault happened"

    expected = np.stack([values[band] for band in C.PRITHVI_S2_IDS])
    assert np.array_equal(read[:, valid], expected[:, valid])
