"""Items from catalogs nobody here controls may name only what they should, and a raster may be only a raster.

Each refusal is checked to have opened nothing: no request for the named file reached the local server, and no
local file was read (the local bait file's access time is not consulted: the bait is a path GDAL would have to
open, and a refusal happens before any open)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

import catalog_scenes as C
from axs_lib.demo.catalog_server import CatalogServer
from axs_lib.errors import SourceReadError, UntrustedItemError
from axs_lib.scenes import documents
from axs_lib.scenes.items import item_scene
from axs_lib.scenes.sources import open_source

BANDS = ("VV", "VH")


@pytest.fixture
def served(tmp_path) -> Path:
    """A served folder with a good Sentinel-1 RTC item in ``good/``, and a local bait raster outside it."""
    C.sentinel1_rtc(tmp_path / "served" / "good")
    C.write_cog(tmp_path / "bait.tif", np.ones((C.HEIGHT, C.WIDTH)), "float32", None)
    return tmp_path / "served"


def with_vv_href(folder: Path, href: str) -> Path:
    """A copy of the good item whose ``vv`` asset names ``href``."""
    document = json.loads(next((folder / "good").glob("*.json")).read_text())
    document["assets"]["vv"]["href"] = href
    path = folder / "good" / "edited.json"
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize(
    "href, why",
    [
        ("file://{bait}", "may not name local files"),
        ("{bait}", "may not name local files"),
        ("/vsizip/{bait}.zip/x.tif", "GDAL virtual file systems are not opened from items"),
        ("/vsicurl/http://127.0.0.1:9/x.tif", "GDAL virtual file systems are not opened from items"),
        ("ftp://example.invalid/vv.tif", "'ftp' scheme is not supported"),
        ("s3://bucket/vv.tif", "'s3' scheme is not supported"),
        ("data:image/tiff;base64,AAAA", "'data' scheme is not supported"),
    ],
)
def test_a_remote_item_may_name_only_http_urls(served, href, why):
    bait = served.parent / "bait.tif"
    edited = with_vv_href(served, href.format(bait=bait))
    with CatalogServer(served) as server:
        with pytest.raises(UntrustedItemError, match=f"asset 'vv' names .*: .*{why}.*; nothing was opened"):
            item_scene(open_source(server.url("good/edited.json")).items, BANDS)
        assert [request.path for request in server.requests] == ["/good/edited.json"], "nothing else was asked for"
    assert edited.exists()


@pytest.mark.parametrize("href", ["/vsizip/{bait}.zip/x.tif", "/vsicurl/http://127.0.0.1:9/x.tif", "ftp://h/x.tif"])
def test_a_local_item_may_not_name_virtual_file_systems_or_other_schemes(served, href):
    bait = served.parent / "bait.tif"
    edited = with_vv_href(served, href.format(bait=bait))

    with pytest.raises(UntrustedItemError, match="asset 'vv' names"):
        item_scene(open_source(str(edited)).items, BANDS)


def test_a_relative_href_climbing_into_a_virtual_file_system_is_refused(served):
    edited = with_vv_href(served, "../../../../../../../../vsizip/x.zip/y.tif")

    with pytest.raises(UntrustedItemError, match="GDAL virtual file systems are not opened from items"):
        item_scene(open_source(str(edited)).items, BANDS)


def test_a_local_item_may_name_local_files_by_relative_absolute_and_file_url(served):
    vv = served / "good" / "vv.tif"
    for href in ("./vv.tif", str(vv), vv.as_uri()):
        edited = with_vv_href(served, href)
        scene = item_scene(open_source(str(edited)).items, BANDS)
        assert Path(scene.bands[0].location) == vv, href


def test_a_remote_item_names_relative_hrefs_on_its_own_server(served):
    with CatalogServer(served) as server:
        scene = item_scene(open_source(server.url("good/" + next((served / "good").glob("S1*.json")).name)).items, BANDS)
        assert scene.bands[0].location == server.url("good/vv.tif")


def test_a_vrt_posing_as_a_geotiff_is_refused_and_its_sources_are_never_opened(served):
    secret = served.parent / "secret.tif"
    C.write_cog(secret, np.full((C.HEIGHT, C.WIDTH), 7.0), "float32", None)
    vrt = f"""<VRTDataset rasterXSize="{C.WIDTH}" rasterYSize="{C.HEIGHT}">
  <SRS>{C.CRS}</SRS><GeoTransform>{', '.join(map(str, list(C.TRANSFORM)[:6]))}</GeoTransform>
  <VRTRasterBand dataType="Float32" band="1"><SimpleSource>
    <SourceFilename relativeToVRT="0">{secret}</SourceFilename><SourceBand>1</SourceBand>
  </SimpleSource></VRTRasterBand></VRTDataset>"""
    (served / "good" / "vv.tif").write_text(vrt)

    with CatalogServer(served) as server:
        url = server.url("good/" + next((served / "good").glob("S1*.json")).name)
        with pytest.raises(UntrustedItemError, match="vv.tif is not a GeoTIFF; only Cloud-Optimized GeoTIFFs are read"):
            item_scene(open_source(url).items, BANDS)
    with rasterio.open(served / "good" / "vv.tif") as dataset:  # GDAL itself would have followed it
        assert dataset.read(1)[0, 0] == 7.0


def test_a_document_larger_than_the_limit_is_refused_before_it_is_read_whole(served, monkeypatch):
    monkeypatch.setattr(documents, "MAX_DOCUMENT_BYTES", 1000)
    big = served / "big.json"
    big.write_text(json.dumps({"type": "FeatureCollection", "features": [], "padding": "x" * 5000}))

    with CatalogServer(served) as server:
        with pytest.raises(UntrustedItemError, match=r"big.json is larger than 0 MiB, the most a STAC document is read to"):
            open_source(server.url("big.json"))
    with pytest.raises(UntrustedItemError, match="is larger than"):
        open_source(str(big))


def test_a_collection_of_more_than_max_items_is_refused_with_that_number(served):
    item = json.loads(next((served / "good").glob("S1*.json")).read_text())
    features = [{**item, "id": f"item-{index}"} for index in range(4)]
    collection = served / "good" / "collection.json"
    collection.write_text(json.dumps({"type": "FeatureCollection", "features": features}))

    with pytest.raises(UntrustedItemError, match=r"holds 4 items, more than max_items=3"):
        open_source(str(collection), max_items=3)
    assert len(open_source(str(collection), max_items=4).items) == 4


def test_redirects_are_followed_only_to_http(served):
    with CatalogServer(served) as server:
        name = next((served / "good").glob("S1*.json")).name
        server.redirects["/moved.json"] = server.url(f"good/{name}")
        server.redirects["/to-file.json"] = f"file://{served / 'good' / name}"
        assert open_source(server.url("moved.json")).items[0].item.id.startswith("S1A")
        with pytest.raises(SourceReadError, match="redirects to a URL that is not http or https"):
            open_source(server.url("to-file.json"))


def test_signed_hrefs_never_reach_messages(served):
    with CatalogServer(served) as server:
        edited = with_vv_href(served, server.url("good/missing.tif") + "?st=2024&sig=SECRET")
        with pytest.raises(Exception) as raised:
            item_scene(open_source(server.url("good/" + edited.name)).items, BANDS)
    message = str(raised.value)
    assert "asset 'vv'" in message and "missing.tif: not found (HTTP 404)" in message and "SECRET" not in message
