"""Weights on read-only mounts, missing or dangling weights folders, unreadable and unsafe files: each loads
where it can, and otherwise says its own cause (never "corrupt, delete it" for a file that is fine)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from axs_lib.errors import (
    CorruptCheckpointError,
    DanglingLinkError,
    UnsafeCheckpointError,
    WeightsDirNotFoundError,
)
from axs_lib.models import KNOWN_MODELS, build_prithvi_600_backbone, convert_to_safetensors, find_all, find_checkpoint
from axs_lib.weights.catalog import CONVERTED_FILENAME, PRITHVI_600M
from axs_lib.weights.reading import read_state_dict
from helpers import checkpoint, process_environment

SPEC = KNOWN_MODELS[PRITHVI_600M]


@pytest.fixture
def read_only(tmp_path):
    """``read_only(folder)``: the same folder seen through a read-only bind mount, unmounted after the test."""
    mounts: list[Path] = []

    def mount(source: Path) -> Path:
        target = tmp_path / f"read-only-{len(mounts)}"
        target.mkdir()
        attempt = subprocess.run(["mount", "--bind", str(source), str(target)], capture_output=True, text=True)
        if attempt.returncode != 0:
            pytest.skip(f"a read-only bind mount is not permitted here: {attempt.stderr.strip()}")
        mounts.append(target)
        subprocess.run(["mount", "-o", "remount,ro,bind", str(target)], check=True, capture_output=True)
        return target

    try:
        yield mount
    finally:
        for target in reversed(mounts):  # lazy: a model loaded in the test may still map a file from it
            subprocess.run(["umount", "--lazy", str(target)], check=True)


@pytest.fixture
def copied_without_mtime(weights_copy) -> Path:
    """A weights folder whose Prithvi ``.pt`` was converted, then copied without keeping its modification time."""
    published = weights_copy / PRITHVI_600M / SPEC.filename
    convert_to_safetensors(published)
    os.utime(published, ns=(0, 0))
    return weights_copy


def info_lines(caplog, text: str) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno == logging.INFO and text in record.getMessage()]


def test_weights_on_a_read_only_mount_load_hashing_the_copy_again_and_write_nothing(
    copied_without_mtime, read_only, use_weights, caplog
):
    mounted = use_weights(read_only(copied_without_mtime))
    listing = sorted(path.name for path in (mounted / PRITHVI_600M).iterdir())
    caplog.set_level(logging.INFO, logger="axs_lib")

    assert find_all()[PRITHVI_600M].path == mounted / PRITHVI_600M / CONVERTED_FILENAME
    assert len(build_prithvi_600_backbone().blocks) == 4

    assert sorted(path.name for path in (mounted / PRITHVI_600M).iterdir()) == listing
    assert len(info_lines(caplog, "SHA-256")) == 2, "one INFO line per load"
    assert all("the folder is read-only, so this is done at every load" in line for line in info_lines(caplog, "SHA-256"))


def test_a_folder_that_cannot_be_written_for_another_reason_still_loads(copied_without_mtime, monkeypatch, caplog):
    def full_disk(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full_disk)
    caplog.set_level(logging.INFO, logger="axs_lib")
    found = find_checkpoint(SPEC, copied_without_mtime / PRITHVI_600M)
    assert found.path.name == CONVERTED_FILENAME
    assert info_lines(caplog, "No space left on device")
    assert not [path for path in found.path.parent.iterdir() if path.name.endswith(".tmp")]


def test_an_axs_weights_dir_that_does_not_exist_is_an_error_not_a_fallback(tiny_weights, use_weights, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tiny_weights))
    use_weights(tmp_path / "no-such-folder")
    with pytest.raises(WeightsDirNotFoundError) as raised:
        find_checkpoint(SPEC)
    assert str(raised.value) == (
        f"AXS_WEIGHTS_DIR is set to {tmp_path / 'no-such-folder'}, which does not exist. Point it at the folder that "
        f"holds the model folders (download into one with: axs-setup --weights-dir {tmp_path / 'no-such-folder'}), "
        "or unset it to search weights/hf and the Hugging Face cache."
    )
    assert isinstance(raised.value, FileNotFoundError)


def test_axs_register_models_says_so_in_one_line_and_exits_2(tmp_path):
    env = process_environment(AXS_WEIGHTS_DIR=str(tmp_path / "no-such-folder"), HF_HUB_OFFLINE="1")
    completed = subprocess.run(
        [sys.executable, "-m", "axs_lib.cli.register_models"], env=env, capture_output=True, text=True, timeout=600
    )
    assert completed.returncode == 2, completed.stderr[-3000:]
    assert "Traceback" not in completed.stderr
    assert completed.stderr.splitlines()[-1:] == [f"error: AXS_WEIGHTS_DIR is set to {tmp_path / 'no-such-folder'}, which "
                                             f"does not exist. Point it at the folder that holds the model folders "
                                             f"(download into one with: axs-setup --weights-dir "
                                             f"{tmp_path / 'no-such-folder'}), or unset it to search weights/hf and "
                                             "the Hugging Face cache."]


def test_an_axs_weights_dir_that_is_a_dangling_link_is_named_as_one(use_weights, tmp_path):
    link = tmp_path / "weights"
    link.symlink_to(tmp_path / "unmounted-volume")
    use_weights(link)
    with pytest.raises(WeightsDirNotFoundError, match=f"a symbolic link to {tmp_path / 'unmounted-volume'}, which does not"):
        find_checkpoint(SPEC)


def test_a_model_file_that_is_a_dangling_link_is_named_not_skipped(tiny_weights, use_weights, tmp_path, monkeypatch, caplog):
    root = tmp_path / "weights"
    (root / PRITHVI_600M).mkdir(parents=True)
    blob = tmp_path / "blobs" / "deleted"
    (root / PRITHVI_600M / SPEC.filename).symlink_to(blob)
    monkeypatch.setenv("HF_HUB_CACHE", str(tiny_weights))
    use_weights(root)

    with pytest.raises(DanglingLinkError) as raised:
        find_checkpoint(SPEC)
    assert str(raised.value).startswith(f"{root / PRITHVI_600M / SPEC.filename} is a symbolic link to {blob}, which")
    assert "axs-setup --models Prithvi-EO-2.0-600M" in str(raised.value)
    assert PRITHVI_600M not in find_all()
    assert f"is a symbolic link to {blob}" in caplog.text


def test_a_checkpoint_path_that_is_a_dangling_link_is_named(tmp_path):
    link = tmp_path / "prithvi.pt"
    link.symlink_to(tmp_path / "gone.pt")
    with pytest.raises(DanglingLinkError, match="is a symbolic link to"):
        find_checkpoint(SPEC, link)


UNREADABLE = """
import sys
from pathlib import Path
from axs_lib.models import KNOWN_MODELS, find_checkpoint
from axs_lib.weights.reading import read_state_dict
for folder in sys.argv[1:]:
    try:
        read_state_dict(find_checkpoint(KNOWN_MODELS["Prithvi-EO-2.0-600M"], Path(folder)).path)
    except Exception as error:
        print(f"{type(error).__name__}: {error}")
"""


def test_an_unreadable_file_is_reported_as_a_permission_problem_not_as_damage(weights_copy, tmp_path):
    """A real permission fault: the files are mode 000 and the reading process (root) lacks the capabilities that
    let root read anything (``setpriv`` drops ``CAP_DAC_OVERRIDE`` and ``CAP_DAC_READ_SEARCH``)."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to read as a user without permission")
    pt_folder = weights_copy / PRITHVI_600M
    converted_folder = tmp_path / "converted" / PRITHVI_600M
    shutil.copytree(pt_folder, converted_folder)
    convert_to_safetensors(converted_folder / SPEC.filename)
    unreadable = [pt_folder / SPEC.filename, converted_folder / CONVERTED_FILENAME]
    for path in unreadable:
        path.chmod(0)

    completed = subprocess.run(
        ["setpriv", "--bounding-set=-dac_override,-dac_read_search", sys.executable, "-c", UNREADABLE,
         str(pt_folder), str(converted_folder)],
        capture_output=True, text=True, timeout=600,
    )
    if "Operation not permitted" in completed.stderr:
        pytest.skip(f"capabilities cannot be dropped here: {completed.stderr.strip()}")
    assert completed.stdout.splitlines() == [
        f"UnreadableCheckpointError: Cannot read checkpoint {path}: permission denied. The file is not known to be "
        "damaged, so do not delete it: give this user read access to it and its folders (e.g. chmod a+r on the "
        "file, a+x on the folders) or run as a user who can read it."
        for path in unreadable
    ], completed.stderr[-3000:]


def test_a_pickle_that_weights_only_refuses_is_not_called_corrupt(weights_copy):
    published = weights_copy / PRITHVI_600M / SPEC.filename
    torch.save({**checkpoint(published), "args": argparse.Namespace(lr=1e-4)}, published)
    with pytest.raises(UnsafeCheckpointError) as raised:
        read_state_dict(published)
    message = str(raised.value)
    assert message.startswith(
        f"Checkpoint {published} holds more than tensors: torch.load(weights_only=True) refuses the Python object "
        "argparse.Namespace, and axs_lib never runs pickled code. The file is not damaged"
    )
    assert "corrupt" not in message and "delete" not in message
    assert not isinstance(raised.value, CorruptCheckpointError)


def test_a_truncated_pt_is_still_called_truncated(weights_copy):
    published = weights_copy / PRITHVI_600M / SPEC.filename
    published.write_bytes(published.read_bytes()[:-1000])
    with pytest.raises(CorruptCheckpointError, match="probably truncated or corrupt"):
        read_state_dict(published)


def test_the_verified_record_is_still_written_where_the_folder_allows(copied_without_mtime):
    find_checkpoint(SPEC, copied_without_mtime / PRITHVI_600M)
    record = copied_without_mtime / PRITHVI_600M / f".{CONVERTED_FILENAME}.verified.json"
    assert json.loads(record.read_text())["mtime_ns"] == 0
