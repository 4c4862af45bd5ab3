"""``.pt`` → ``model.safetensors``: atomic, verified, skipped when current, redone when stale, preferred when current."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from axs_lib.cli import setup as setup_cli
from axs_lib.models import KNOWN_MODELS, build_prithvi_600_backbone, convert_to_safetensors, find_checkpoint
from axs_lib.weights import conversion, provenance
from axs_lib.weights.catalog import CONVERTED_FILENAME, PRITHVI_600M
from helpers import checkpoint

SPEC = KNOWN_MODELS[PRITHVI_600M]


@pytest.fixture
def prithvi_pt(weights_copy):
    return weights_copy / PRITHVI_600M / SPEC.filename


@pytest.fixture
def hashed(monkeypatch) -> list:
    """The files whose SHA-256 is computed from now on, in order: to check a conversion, or to record its source."""
    files = []
    real_sha256 = provenance.sha256_of

    def counted(path):
        files.append(path)
        return real_sha256(path)

    monkeypatch.setattr(provenance, "sha256_of", counted)
    monkeypatch.setattr(conversion, "sha256_of", counted)
    return files


def test_conversion_writes_model_safetensors_that_the_loader_prefers(prithvi_pt):
    converted = convert_to_safetensors(prithvi_pt)
    assert converted == prithvi_pt.with_name(CONVERTED_FILENAME)
    found = find_checkpoint(SPEC, prithvi_pt.parent)
    assert (found.path, found.format) == (converted, "safetensors")
    assert provenance.conversion_record(converted)["axs_source_sha256"] == provenance.sha256_of(prithvi_pt)


def test_safetensors_and_pt_load_identical_parameters(prithvi_pt, tmp_path):
    from_pt = build_prithvi_600_backbone(checkpoint_path=prithvi_pt)
    from_safetensors = build_prithvi_600_backbone(checkpoint_path=convert_to_safetensors(prithvi_pt))
    pt_state, st_state = from_pt.state_dict(), from_safetensors.state_dict()
    assert pt_state.keys() == st_state.keys()
    assert all(torch.equal(pt_state[key], st_state[key]) for key in pt_state)


def test_an_interrupted_conversion_leaves_nothing_the_loader_would_pick_up(prithvi_pt, monkeypatch):
    def interrupted(path, expected):
        raise KeyboardInterrupt

    monkeypatch.setattr(conversion, "_verify_round_trip", interrupted)
    with pytest.raises(KeyboardInterrupt):
        convert_to_safetensors(prithvi_pt)
    assert sorted(p.name for p in prithvi_pt.parent.iterdir()) == ["Prithvi_EO_V2_600M.pt", "config.json"]
    assert find_checkpoint(SPEC, prithvi_pt.parent).path == prithvi_pt


def test_a_partial_file_left_by_a_killed_conversion_is_ignored(prithvi_pt):
    (prithvi_pt.parent / ".model.4242.partial.safetensors").write_bytes(b"half a file")
    assert find_checkpoint(SPEC, prithvi_pt.parent).path == prithvi_pt


def test_an_up_to_date_conversion_is_skipped(prithvi_pt):
    converted = convert_to_safetensors(prithvi_pt)
    written = converted.stat().st_mtime_ns
    assert convert_to_safetensors(prithvi_pt).stat().st_mtime_ns == written


def test_a_stale_conversion_is_ignored_by_the_loader_and_redone(prithvi_pt, caplog):
    converted = convert_to_safetensors(prithvi_pt)
    state = checkpoint(prithvi_pt)
    state["encoder.norm.weight"] = state["encoder.norm.weight"] + 1
    torch.save(state, prithvi_pt)

    assert find_checkpoint(SPEC, prithvi_pt.parent).path == prithvi_pt
    assert "--convert-only" in caplog.text
    convert_to_safetensors(prithvi_pt)
    assert find_checkpoint(SPEC, prithvi_pt.parent).path == converted
    assert torch.equal(checkpoint(converted)["encoder.norm.weight"], state["encoder.norm.weight"])


def test_a_copied_source_with_a_new_mtime_still_matches_by_hash(prithvi_pt):
    converted = convert_to_safetensors(prithvi_pt)
    os.utime(prithvi_pt, ns=(0, 0))
    assert provenance.is_current(converted, prithvi_pt)


def test_a_copied_source_is_hashed_once_not_at_every_load(prithvi_pt, hashed):
    converted = convert_to_safetensors(prithvi_pt)
    os.utime(prithvi_pt, ns=(0, 0))
    hashed.clear()
    for _ in range(3):
        assert find_checkpoint(SPEC, prithvi_pt.parent).path == converted
    assert hashed == [prithvi_pt]
    state = checkpoint(prithvi_pt)
    state["encoder.norm.weight"] = state["encoder.norm.weight"] + 1
    torch.save(state, prithvi_pt)
    assert find_checkpoint(SPEC, prithvi_pt.parent).path == prithvi_pt, "an edited file is not taken for the verified copy"


def test_a_conversion_of_another_file_in_a_shared_folder_is_not_used(prithvi_pt, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shutil.copy(prithvi_pt, shared / SPEC.filename)
    convert_to_safetensors(shared / SPEC.filename)
    tokenizer = KNOWN_MODELS["TerraMind-1.0-Tokenizer-S1GRD"]
    shutil.copy(prithvi_pt.parent.parent / tokenizer.name / tokenizer.filename, shared / tokenizer.filename)
    assert find_checkpoint(tokenizer, shared).path == shared / tokenizer.filename


def test_setup_convert_only_converts_what_is_downloaded(weights_copy, capsys):
    assert setup_cli.main(["--convert-only", "--weights-dir", str(weights_copy), "--models", PRITHVI_600M]) == 0
    assert (weights_copy / PRITHVI_600M / CONVERTED_FILENAME).is_file()
    assert str(weights_copy / PRITHVI_600M / CONVERTED_FILENAME) in capsys.readouterr().out


def test_setup_convert_only_with_nothing_downloaded_fails_clearly(tmp_path, capsys):
    assert setup_cli.main(["--convert-only", "--weights-dir", str(tmp_path)]) == 1
    assert "nothing to convert" in capsys.readouterr().err


def test_loading_goes_straight_to_the_requested_dtype(prithvi_pt):
    for path in (prithvi_pt, convert_to_safetensors(prithvi_pt)):
        model = build_prithvi_600_backbone(checkpoint_path=path, dtype="bf16", device="cpu")
        assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
        assert {p.device.type for p in model.parameters()} == {"cpu"}


def test_tied_weights_are_stored_once_and_come_back_under_both_names(weights_copy):
    from axs_lib.weights.catalog import TERRAMIND_LARGE
    from axs_lib.weights.reading import read_state_dict

    source = weights_copy / TERRAMIND_LARGE / KNOWN_MODELS[TERRAMIND_LARGE].filename
    converted = convert_to_safetensors(source)
    tied = "decoder_embeddings.tok_sen2l2a@224.to_logits.weight"
    from safetensors import safe_open

    with safe_open(converted, framework="pt") as handle:
        assert tied not in handle.keys()
    state = read_state_dict(converted)
    assert torch.equal(state[tied], state["decoder_embeddings.tok_sen2l2a@224.token_emb.weight"])
    assert set(state) == set(checkpoint(source))


def test_convert_only_does_not_hash_files_that_did_not_change(weights_copy, hashed, caplog):
    arguments = ["--convert-only", "--weights-dir", str(weights_copy), "--models", PRITHVI_600M]
    assert setup_cli.main(arguments) == 0
    hashed.clear()
    caplog.clear()
    assert setup_cli.main(arguments) == 0
    assert hashed == []
    assert "modification time changed" not in caplog.text


def test_convert_only_redoes_a_stale_conversion_hashing_the_source_once_to_check_and_once_to_record(weights_copy, hashed):
    arguments = ["--convert-only", "--weights-dir", str(weights_copy), "--models", PRITHVI_600M]
    assert setup_cli.main(arguments) == 0
    source = weights_copy / PRITHVI_600M / SPEC.filename
    state = checkpoint(source)
    state["encoder.norm.weight"] = state["encoder.norm.weight"] + 1
    torch.save(state, source)
    hashed.clear()
    assert setup_cli.main(arguments) == 0
    assert hashed == [source, source]
    assert torch.equal(checkpoint(source.with_name(CONVERTED_FILENAME))["encoder.norm.weight"], state["encoder.norm.weight"])


def test_a_damaged_conversion_is_written_again(prithvi_pt):
    converted = convert_to_safetensors(prithvi_pt)
    converted.write_bytes(converted.read_bytes()[:1000])
    convert_to_safetensors(prithvi_pt)
    assert provenance.is_current(converted, prithvi_pt)


def test_the_stale_conversion_hint_names_the_weights_folder(prithvi_pt, caplog):
    convert_to_safetensors(prithvi_pt)
    state = checkpoint(prithvi_pt)
    state["encoder.norm.weight"] = state["encoder.norm.weight"] + 1
    torch.save(state, prithvi_pt)
    find_checkpoint(SPEC, prithvi_pt.parent)
    assert f"axs-setup --models {PRITHVI_600M} --weights-dir {prithvi_pt.parent.parent} --convert-only" in caplog.text
