"""Where checkpoints are found: explicit path, AXS_WEIGHTS_DIR, weights/hf, the Hugging Face cache."""

from __future__ import annotations

import shutil

import pytest

from axs_lib.models import KNOWN_MODELS, CheckpointNotFoundError, build_prithvi_600_backbone, find_all, find_checkpoint
from axs_lib.weights import discovery
from axs_lib.demo.tiny_weights import model_folder, write_tiny_model
from axs_lib.weights.catalog import PRITHVI_600M, PRITHVI_MODELS

SPEC = KNOWN_MODELS[PRITHVI_600M]


@pytest.fixture
def prithvi_file(tiny_weights):
    return tiny_weights / PRITHVI_600M / SPEC.filename


def place(root, layout="plain", source=None):
    """Put the tiny Prithvi checkpoint under ``root`` in ``layout``; return the file."""
    folder = model_folder(root, PRITHVI_600M, layout)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, folder / SPEC.filename)
    shutil.copy(source.parent / "config.json", folder / "config.json")
    return folder / SPEC.filename


def test_an_explicit_file_is_used_as_given(prithvi_file):
    found = find_checkpoint(SPEC, prithvi_file)
    assert (found.path, found.origin, found.format) == (prithvi_file, "checkpoint_path", "pt")


def test_an_explicit_model_folder_or_weights_folder_is_searched(prithvi_file, tiny_weights):
    assert find_checkpoint(SPEC, prithvi_file.parent).path == prithvi_file
    assert find_checkpoint(SPEC, tiny_weights).path == prithvi_file


def test_an_explicit_path_that_does_not_exist_is_not_replaced_by_another(prithvi_file, use_weights, tmp_path):
    use_weights(prithvi_file.parent.parent)
    with pytest.raises(CheckpointNotFoundError, match="nowhere.pt"):
        find_checkpoint(SPEC, tmp_path / "nowhere.pt")


def test_search_order_is_env_then_project_then_hf_cache(prithvi_file, use_weights, tmp_path, monkeypatch):
    env_file = place(tmp_path / "env", source=prithvi_file)
    project_file = place(tmp_path / "project", source=prithvi_file)
    cache_file = place(tmp_path / "cache", "snapshot", source=prithvi_file)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(discovery, "DEFAULT_WEIGHTS_DIR", tmp_path / "project")

    assert find_checkpoint(SPEC).path == project_file
    use_weights(tmp_path / "env")
    assert find_checkpoint(SPEC).path == env_file
    monkeypatch.delenv("AXS_WEIGHTS_DIR")
    shutil.rmtree(tmp_path / "project")
    found = find_checkpoint(SPEC)
    assert (found.path, found.origin) == (cache_file, "HF cache")


def test_a_hub_snapshot_inside_the_weights_folder_is_found(prithvi_file, use_weights, tmp_path):
    snapshot_file = place(tmp_path / "weights", "snapshot", source=prithvi_file)
    use_weights(tmp_path / "weights")
    assert find_checkpoint(SPEC).path == snapshot_file
    assert "snapshots" in snapshot_file.parts


def test_models_load_from_a_snapshot_layout(prithvi_file, use_weights, tmp_path):
    place(tmp_path / "weights", "snapshot", source=prithvi_file)
    use_weights(tmp_path / "weights")
    assert len(build_prithvi_600_backbone().blocks) == 4


def test_safetensors_under_the_published_stem_is_preferred_to_the_pt(prithvi_file, tmp_path):
    from safetensors.torch import save_file

    from helpers import checkpoint

    copy = place(tmp_path / "w", source=prithvi_file)
    save_file(checkpoint(copy), copy.with_suffix(".safetensors"))
    found = find_checkpoint(SPEC, tmp_path / "w")
    assert (found.path.name, found.format) == ("Prithvi_EO_V2_600M.safetensors", "safetensors")


def test_missing_checkpoint_lists_every_place_and_the_download_command(use_weights, tmp_path):
    use_weights(tmp_path / "my-weights").mkdir()
    with pytest.raises(CheckpointNotFoundError) as raised:
        find_checkpoint(SPEC)
    message = str(raised.value)
    assert str(tmp_path / "my-weights") in message
    assert str(discovery.DEFAULT_WEIGHTS_DIR) in message
    assert "axs-setup --models Prithvi-EO-2.0-600M" in message
    assert "pretrained=False" in message
    assert isinstance(raised.value, FileNotFoundError)


def test_find_all_reports_only_models_present(tmp_path, use_weights, tiny_weights):
    write_tiny_model(tmp_path / "w", PRITHVI_600M)
    use_weights(tmp_path / "w")
    assert list(find_all()) == [PRITHVI_600M]
    use_weights(tiny_weights)
    assert set(find_all()) == set(KNOWN_MODELS)


def test_generator_finds_tokenizers_beside_terramind_in_a_hub_cache_given_as_path(tiny_weights, tmp_path):
    from axs_lib.models import build_terramind_generator

    cache = tmp_path / "cache"
    for name in ("TerraMind-1.0-large", "TerraMind-1.0-Tokenizer-S2L2A"):
        folder = model_folder(cache, name, "snapshot")
        shutil.copytree(tiny_weights / name, folder)
    terramind = model_folder(cache, "TerraMind-1.0-large", "snapshot") / KNOWN_MODELS["TerraMind-1.0-large"].filename
    assert build_terramind_generator(checkpoint_path=terramind).output_modalities == ("S2L2A",)


def test_a_truncated_model_safetensors_is_named_not_skipped(prithvi_file, tmp_path):
    from axs_lib.models import CorruptCheckpointError, convert_to_safetensors

    converted = convert_to_safetensors(place(tmp_path / "w", source=prithvi_file))
    converted.write_bytes(converted.read_bytes()[:-100])
    with pytest.raises(CorruptCheckpointError, match="truncated") as raised:
        find_checkpoint(SPEC, tmp_path / "w")
    assert str(converted) in str(raised.value)


def test_axs_weights_dir_naming_a_file_says_it_must_be_a_folder(prithvi_file, use_weights):
    from axs_lib.models import InvalidWeightsDirError

    use_weights(prithvi_file)
    with pytest.raises(InvalidWeightsDirError, match="AXS_WEIGHTS_DIR must be a folder"):
        find_checkpoint(SPEC)


def test_the_prithvi_rows_are_terratorchs_published_checkpoints():
    from terratorch.models.backbones.prithvi_vit import pretrained_weights

    rows = {spec.builder: (spec.repo_id, spec.filename) for spec in PRITHVI_MODELS}
    assert rows == {builder: (entry["hf_hub_id"], entry["hf_hub_filename"]) for builder, entry in pretrained_weights.items()}


@pytest.mark.parametrize("spec", PRITHVI_MODELS, ids=lambda spec: spec.name)
def test_setup_downloads_each_prithvi_model_and_discovery_finds_it(spec, tiny_weights, tmp_path, monkeypatch, use_weights):
    import huggingface_hub

    from axs_lib.cli import setup as setup_cli

    asked = []

    def from_the_hub(repo_id, local_dir, allow_patterns):
        asked.append((repo_id, sorted(allow_patterns)))
        shutil.copytree(tiny_weights / spec.name, local_dir, dirs_exist_ok=True)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", from_the_hub)
    assert setup_cli.main(["--weights-dir", str(tmp_path), "--models", spec.name]) == 0
    assert asked == [(spec.repo_id, sorted([spec.filename, "config.json"]))]
    use_weights(tmp_path)
    assert find_checkpoint(spec).path.parent == tmp_path / spec.name
