"""Reading items over a network as the engine does: reads run ahead of the model (a bounded number of batches),
each file of a window is fetched by its own thread, signed links are signed again when they expire, and a server
that goes away part-way loses no finished window. The server is a real local HTTP server that injects the faults."""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

import catalog_scenes as C
from axs_lib.demo.catalog_server import CatalogServer
from axs_lib.errors import SceneReadError
from axs_lib.scenes import engine, inputs
from axs_lib.scenes.engine import run_scene
from axs_lib.scenes.items import item_scene
from axs_lib.scenes.outputs import OutputSpec
from axs_lib.scenes.sources import open_source
from axs_lib.scenes.windows import plan_windows

PRITHVI = ("BLUE", "GREEN", "RED", "NIR_NARROW", "SWIR_1", "SWIR_2")
TILE, OVERLAP, BATCH = 64, 16, 2


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    """An Earth Search item of six bands, 256 x 320 pixels (two block rows of 128), files holding +1000."""
    root = tmp_path_factory.mktemp("remote")
    values = {band: np.tile(image, (4, 4)) for band, image in C.truth().items()}
    C.earth_search_sentinel2(root / "item", offset_applied=False, bands=C.PRITHVI_S2_IDS, values=values, scl=False)
    return root


def expected_values() -> np.ndarray:
    """Reflectance x 10000, as the truth holds it: what the model gets from the item."""
    truth = C.truth()
    return np.stack([np.tile(truth[band], (4, 4)) for band in C.PRITHVI_S2_IDS]).astype(np.float32)


def item_url(server: CatalogServer) -> str:
    (path,) = (server.folder / "item").glob("*.json")
    return server.url(f"item/{path.name}")


def copy_of_input(output: Path) -> dict[str, OutputSpec]:
    """One output that is the model input itself, so what was read can be compared with what was served."""
    def encode(core: np.ndarray, valid: np.ndarray) -> np.ndarray:
        values = core.copy()
        values[:, ~valid] = np.nan
        return values

    return {"copy": OutputSpec(output, len(PRITHVI), "float32", float("nan"), encode)}


def run_copy(scene, output: Path, predict=lambda batch: batch, **options) -> np.ndarray:
    run_scene(scene, copy_of_input(output), predict, tile=TILE, overlap=OVERLAP, batch_size=BATCH, **options)
    with rasterio.open(output) as dataset:
        return dataset.read()


def assert_same_as_served(written: np.ndarray) -> None:
    expected = expected_values()
    valid = ~np.isnan(written[0])
    assert valid.sum() > 0.9 * valid.size
    np.testing.assert_array_equal(written[:, valid], expected[:, valid])


def test_the_next_batches_are_read_while_the_model_runs_on_one_and_never_more_than_read_ahead(
    published, tmp_path, monkeypatch
):
    read_windows: list[tuple[int, int]] = []
    original = inputs.SceneReader.read

    def recording(self, window, tile):
        result = original(self, window, tile)
        read_windows.append((window.row, window.col))
        return result

    monkeypatch.setattr(inputs.SceneReader, "read", recording)
    calls = []

    def predict(batch: torch.Tensor) -> torch.Tensor:
        """Waits until the next batch has been read (it never would be if reads waited for the model)."""
        call = len(calls)
        calls.append(len(read_windows))
        wanted = min((call + 2) * BATCH, windows)
        arrived = threading.Event()
        for _ in range(1000):
            if len(read_windows) >= wanted:
                arrived.set()
                break
            arrived.wait(0.01)
        assert arrived.is_set(), f"batch {call + 1} was not read while the model ran on batch {call}"
        assert len(read_windows) <= (call + 1 + engine.READ_AHEAD) * BATCH, "reads stay a bounded number of batches ahead"
        return batch

    with CatalogServer(published) as server:
        server.latency = 0.01
        scene = item_scene(open_source(item_url(server)).items, PRITHVI)
        windows = len(plan_windows(scene.height, scene.width, TILE, OVERLAP))
        assert_same_as_served(run_copy(scene, tmp_path / "copy.tif", predict))
    assert len(calls) == -(-windows // BATCH)


def test_each_file_is_fetched_by_its_own_thread_always_the_same_one(published, tmp_path, monkeypatch):
    readers: dict[str, set[str]] = {}
    original = inputs._BlockReader._block

    def recording(self, index, block_row, block_col):
        readers.setdefault(self.source.name, set()).add(threading.current_thread().name)
        return original(self, index, block_row, block_col)

    monkeypatch.setattr(inputs._BlockReader, "_block", recording)
    with CatalogServer(published) as server:
        assert_same_as_served(run_copy(item_scene(open_source(item_url(server)).items, PRITHVI), tmp_path / "copy.tif"))

    assert len(readers) == len(PRITHVI)
    assert all(len(threads) == 1 for threads in readers.values()), readers
    assert len(set().union(*readers.values())) == len(PRITHVI), "the six files are read at the same time, by six threads"


def test_a_signed_link_that_expires_part_way_is_signed_again_and_no_signature_reaches_the_records(
    published, tmp_path, caplog
):
    with CatalogServer(published) as server:
        server.signatures_expire_at = 16  # after the headers and a first read of each file
        signed = []

        def sign(href: str) -> str:
            assert "?" not in href, "the href is signed afresh, not with its old signature"
            signed.append(href)
            return f"{href}?sig={server.signature()}"

        with caplog.at_level(logging.DEBUG):
            scene = item_scene(open_source(item_url(server)).items, PRITHVI, sign=sign)
            written = run_copy(scene, tmp_path / "copy.tif")
        refused = [request for request in server.requests if request.status == 403]
        print(*server.requests, sep="\n")

    assert_same_as_served(written)
    assert refused, "signatures expired during the run"
    assert len(signed) > 2 * len(PRITHVI), "each file signed for its header, for reading, and again after expiry"
    ours = [record.getMessage() for record in caplog.records if record.name.startswith("axs_lib")]
    assert ours and not any("token-" in message for message in ours)
    with rasterio.open(tmp_path / "copy.tif") as dataset:
        assert "token-" not in json.dumps(dataset.tags())


def test_a_server_that_goes_away_part_way_keeps_the_finished_windows_and_a_new_signature_resumes_the_same_run(
    tmp_path,
):
    values = {band: np.tile(image, (8, 8)) for band, image in C.truth().items()}  # 512 x 640: fetched part by part
    C.earth_search_sentinel2(tmp_path / "served" / "item", offset_applied=False, bands=C.PRITHVI_S2_IDS,
                             values=values, scl=False)
    output = tmp_path / "copy.tif"

    def scene_signed(server: CatalogServer, signature: str):
        """Each phase signs with its own signature, so nothing is read from GDAL's cache of an earlier phase."""
        return item_scene(open_source(item_url(server)).items, PRITHVI, sign=lambda href: f"{href}?sig={signature}")

    with CatalogServer(tmp_path / "served") as server:
        run_copy(scene_signed(server, "clean"), tmp_path / "clean.tif")
        whole_run = len(server.requested(".tif"))
        port = server.port
    with CatalogServer(tmp_path / "served", port=port) as server:
        server.stop_after = whole_run // 2
        with pytest.raises(SceneReadError) as raised:
            run_copy(scene_signed(server, "first"), output)
    message = str(raised.value)
    assert message.count("\n") == 0 and "sig=" not in message
    assert server.url("item/") in message and "continue from window" in message
    assert list((tmp_path / "copy.tif.partial").glob("r*.npy")) and not output.exists()

    with CatalogServer(tmp_path / "served", port=port) as server:
        resumed = run_copy(scene_signed(server, "second"), output)
    with rasterio.open(tmp_path / "clean.tif") as dataset:
        np.testing.assert_array_equal(resumed, dataset.read())


def test_planetary_computer_signing_uses_its_token_for_the_container_and_drops_an_expired_signature(monkeypatch):
    import planetary_computer
    from planetary_computer.sas import SASToken

    from axs_lib.scenes.signing import signed, signer

    token_url = f"{planetary_computer.settings.Settings.get().sas_url}/sentinel2l2a01/sentinel2-l2"
    token = SASToken(token="st=2026-12-07&se=2026-12-08&sp=rl&sig=fresh", expiry=datetime.now(timezone.utc) + timedelta(hours=1))
    monkeypatch.setitem(planetary_computer.sas.TOKEN_CACHE, token_url, token)
    href = "https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/33/T/UN/B04_10m.tif"

    sign = signer("planetary-computer")
    assert signed(f"{href}?st=2026-12-06&se=2026-12-07&sp=rl&sig=expired", sign) == f"{href}?{token.token}"
    assert signed("/data/B04.tif", sign) == "/data/B04.tif", "local files are not signed"
