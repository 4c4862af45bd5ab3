"""The package's surface: where names live, and the catalog against TerraTorch's own tables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import axs_lib
from axs_lib.models import KNOWN_MODELS, WrongModuleImportError
from axs_lib.weights.catalog import PRITHVI_MODELS, TERRAMIND_MODALITIES, TERRAMIND_MODELS, Family
from helpers import process_environment


def test_factories_imported_from_the_top_package_point_to_axs_lib_models():
    with pytest.raises(WrongModuleImportError, match="from axs_lib.models import build_prithvi_600"):
        from axs_lib import build_prithvi_600  # noqa: F401
    with pytest.raises(AttributeError):
        axs_lib.no_such_name  # noqa: B018


def test_every_catalog_entry_matches_terratorchs_published_weights_table():
    from terratorch.models.backbones.prithvi_vit import pretrained_weights as prithvi
    from terratorch.models.backbones.terramind.model.terramind_register import pretrained_weights as terramind
    from terratorch.models.backbones.terramind.tokenizer.tokenizer_register import pretrained_weights as tokenizers

    published = {**prithvi, **terramind, **tokenizers}
    for spec in KNOWN_MODELS.values():
        assert published[spec.builder] == {"hf_hub_id": spec.repo_id, "hf_hub_filename": spec.filename}, spec.name


def test_the_catalogs_model_facts_are_terratorchs_bands_statistics_and_patch_sizes():
    from terratorch.models.backbones.prithvi_vit import prithvi_cfgs
    from terratorch.models.backbones.terramind.model.terramind_register import v1_pretraining_mean, v1_pretraining_std
    from terratorch.registry import TERRATORCH_BACKBONE_REGISTRY

    for spec in PRITHVI_MODELS:
        configuration = prithvi_cfgs[spec.builder]
        assert spec.bands == tuple(getattr(band, "value", band) for band in configuration["bands"]), spec.name
        assert (spec.mean, spec.std) == (tuple(configuration["mean"]), tuple(configuration["std"])), spec.name
        assert spec.patch_size == configuration["patch_size"][-1], spec.name
    raw = [name for name, modality in TERRAMIND_MODALITIES.items() if modality.bands]
    encoder = TERRATORCH_BACKBONE_REGISTRY.build("terramind_v1_tiny", pretrained=False, modalities=raw)
    for name in raw:
        key = encoder.mod_name_mapping[name]
        modality = TERRAMIND_MODALITIES[name]
        assert (modality.mean, modality.std) == (tuple(v1_pretraining_mean[key]), tuple(v1_pretraining_std[key])), name
        assert len(modality.bands) == encoder.encoder_embeddings[key].num_channels, name
    assert {spec.patch_size for spec in TERRAMIND_MODELS} == {encoder.encoder_embeddings[key].patch_size[-1]} == {16}


def test_every_catalog_builder_is_registered_in_terratorch():
    from terratorch.registry import TERRATORCH_BACKBONE_REGISTRY, TERRATORCH_FULL_MODEL_REGISTRY

    for spec in KNOWN_MODELS.values():
        registry = TERRATORCH_FULL_MODEL_REGISTRY if spec.family is Family.TERRAMIND_TOKENIZER else TERRATORCH_BACKBONE_REGISTRY
        assert spec.builder in registry, spec.builder


NETWORK_PROBE = """
import json, socket, sys, threading

attempts = []

def refused(name):
    def refuse(*args, **kwargs):
        attempts.append(f"{name}{args[1:2] if name == 'connect' else args[:1]}")
        raise OSError("no network in this test")
    return refuse

for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "create_connection"):
    setattr(socket, name, refused(name))
socket.socket.connect = refused("connect")
socket.socket.connect_ex = refused("connect")

import axs_lib.models

for thread in threading.enumerate():
    if thread is not threading.main_thread():
        thread.join(timeout=20)
with open(sys.argv[1], "w") as report:
    json.dump(attempts, report)
"""


def test_importing_the_library_prints_nothing_and_attempts_no_network_connection(tmp_path):
    environment = process_environment(LIGHTLY_DID_VERSION_CHECK=None, HF_HUB_OFFLINE=None)
    attempts = tmp_path / "attempts.json"
    result = subprocess.run([sys.executable, "-c", NETWORK_PROBE, str(attempts)], cwd=tmp_path, env=environment,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and "axs_lib" not in result.stderr, result.stdout + result.stderr
    assert json.loads(attempts.read_text()) == []


def test_terramind_band_names_match_terratorchs_pretrained_bands():
    from terratorch.models.backbones.terramind.model.terramind_register import PRETRAINED_BANDS

    from axs_lib.weights.catalog import TERRAMIND_MODALITIES

    raw_keys = {"S2L2A": "untok_sen2l2a@224", "S2L1C": "untok_sen2l1c@224", "S1GRD": "untok_sen1grd@224",
                "S1RTC": "untok_sen1rtc@224", "RGB": "untok_sen2rgb@224", "DEM": "untok_dem@224"}
    assert {name for name, modality in TERRAMIND_MODALITIES.items() if modality.bands} == set(raw_keys)
    for name, key in raw_keys.items():
        assert list(TERRAMIND_MODALITIES[name].bands) == PRETRAINED_BANDS[key], name


def test_the_model_modules_import_each_other_at_their_top_never_inside_a_function_to_dodge_a_circle():
    import ast

    models = Path(__file__).resolve().parents[1] / "axs_lib" / "models"
    inside_functions = [
        f"{path.name}: {function.name} imports {'.' * node.level}{node.module or ''}"
        for path in sorted(models.glob("*.py"))
        for function in ast.walk(ast.parse(path.read_text()))
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
        for node in ast.walk(function)
        if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("axs_lib"))
    ]
    assert inside_functions == []


def test_processes_the_tests_start_import_the_package_under_test(tmp_path, monkeypatch):
    decoy = tmp_path / "elsewhere" / "axs_lib"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("")  # another copy, first on the path the tests were started with
    monkeypatch.setenv("PYTHONPATH", str(decoy.parent))

    result = subprocess.run([sys.executable, "-c", "import axs_lib; print(axs_lib.__file__)"], cwd=tmp_path,
                            env=process_environment(), capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == Path(axs_lib.__file__).resolve()


def test_installed_from_a_wheel_the_default_weights_folder_is_the_users_not_site_packages(tmp_path):
    """A non-editable install into a fresh venv (its dependencies seen through this environment's site-packages)."""
    import site
    import sysconfig

    checkout = Path(axs_lib.__file__).resolve().parents[1]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    venv_site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                    check=True, capture_output=True, text=True).stdout.strip())
    ours = [path for path in site.getsitepackages() if Path(path).is_dir()] or [sysconfig.get_paths()["purelib"]]
    (venv_site / "dependencies.pth").write_text("\n".join(ours) + "\n")  # a path, not a site dir: no editable finder
    environment = {**process_environment(PYTHONPATH=None), "XDG_DATA_HOME": str(tmp_path / "data")}
    install = subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", str(checkout)],
        capture_output=True, text=True, cwd=tmp_path, env=environment, timeout=600,
    )
    assert install.returncode == 0, install.stdout + install.stderr

    where = subprocess.run(
        [python, "-c", "import axs_lib, axs_lib.weights.discovery as d; print(axs_lib.__file__); print(d.DEFAULT_WEIGHTS_DIR)"],
        capture_output=True, text=True, cwd=tmp_path, env=environment, timeout=120,
    )
    package, weights = where.stdout.split()
    assert Path(package).is_relative_to(venv_site), "the installed copy, not the checkout"
    assert Path(weights) == tmp_path / "data" / "axs_lib" / "weights" / "hf"
    usage = subprocess.run([venv / "bin" / "axs-setup", "--help"], capture_output=True, text=True, cwd=tmp_path,
                           env=environment, timeout=120)
    assert usage.returncode == 0 and str(tmp_path / "data" / "axs_lib" / "weights" / "hf") in "".join(usage.stdout.split())
    assert "``" not in usage.stdout, "plain text, not reStructuredText"


def test_the_saved_folder_and_lightning_formats_know_files_and_state_dicts_not_the_model_class():
    import ast

    models = Path(__file__).resolve().parents[1] / "axs_lib" / "models"
    for name in ("pretrained.py", "lightning_checkpoint.py"):
        source = (models / name).read_text()
        imported = {node.module for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)}
        assert not imported & {"segmentation", "prithvi", "terramind"}, name
        assert "TYPE_CHECKING" not in source, name
