"""The command-line tools, run as a user runs them: in a fresh Python process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from axs_lib.models import KNOWN_MODELS, REGISTERED_NAMES
from helpers import process_environment

ROOT = Path(__file__).resolve().parents[1]


def run(args: list[str], env_overrides: dict[str, str], *, project_weights: Path) -> subprocess.CompletedProcess:
    """Run a CLI with the project's own ``weights/hf`` replaced by ``project_weights``."""
    env = process_environment(**{"AXS_WEIGHTS_DIR": None, "HF_HUB_OFFLINE": "1", **env_overrides})
    launcher = (
        "import runpy, sys; import axs_lib.weights.discovery as d; "
        f"d.DEFAULT_WEIGHTS_DIR = __import__('pathlib').Path({str(project_weights)!r}); "
        "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    return subprocess.run(
        [sys.executable, "-c", launcher, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def cli_env(isolated_search):
    return {"HF_HUB_CACHE": str(isolated_search / "hf-cache")}


def test_register_models_prints_found_models_and_registered_names(tiny_weights, cli_env, isolated_search):
    result = run(["register_models.py"], {**cli_env, "AXS_WEIGHTS_DIR": str(tiny_weights)},
                 project_weights=isolated_search)
    assert result.returncode == 0, result.stderr
    for name, spec in KNOWN_MODELS.items():
        assert name in result.stdout and spec.filename in result.stdout
    assert "axs_prithvi_eo_v2_600_segmentation" in result.stdout
    assert "prithvi_600M" in result.stdout


def test_register_models_json_is_the_report(tiny_weights, cli_env, isolated_search):
    result = run(["register_models.py", "--json"], {**cli_env, "AXS_WEIGHTS_DIR": str(tiny_weights)},
                 project_weights=isolated_search)
    report = json.loads(result.stdout)
    assert {entry["name"] for entry in report["found"]} == set(KNOWN_MODELS)
    assert all(entry["format"] == "pt" and entry["size_bytes"] > 0 for entry in report["found"])
    assert [entry["name"] for entry in report["registered"]] == [entry.name for entry in REGISTERED_NAMES]


def test_register_models_without_weights_says_how_to_download_and_fails(cli_env, isolated_search):
    result = run(["register_models.py"], cli_env, project_weights=isolated_search)
    assert result.returncode == 1
    assert "error: No models found. Please download models first." in result.stderr
    assert "axs-setup" in result.stderr


@pytest.mark.parametrize(
    ("environment", "reason"),
    [
        ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE is set"),
        ({"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}, "cannot reach the Hugging Face Hub"),
    ],
    ids=["offline-mode", "no-network"],
)
def test_a_download_that_cannot_happen_says_why_in_one_line(tmp_path, cli_env, isolated_search, environment, reason):
    result = run(["axs_lib/setup.py", "--models", "Prithvi-EO-2.0-600M", "--weights-dir", str(tmp_path)],
                 {**cli_env, **environment}, project_weights=isolated_search)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and reason in errors[0]
    assert f"Prithvi_EO_V2_600M.pt into {tmp_path / 'Prithvi-EO-2.0-600M'}/" in errors[0]
    assert "Traceback" not in result.stderr


def test_setup_rejects_unknown_model_names(cli_env, isolated_search):
    result = run(["axs_lib/setup.py", "--models", "Prithvi-9000"], cli_env, project_weights=isolated_search)
    assert result.returncode == 2
    assert "invalid choice: 'Prithvi-9000'" in result.stderr


@pytest.mark.parametrize(
    "arguments",
    [["--help"], ["--convert-only"], ["--models", "Prithvi-EO-2.0-600M"]],
    ids=["help", "convert-only", "failed-download"],
)
def test_the_weights_tool_imports_neither_terratorch_nor_the_models(tmp_path, arguments):
    assert heavy_modules_imported_by_setup([*arguments, "--weights-dir", str(tmp_path)]) == []


def test_an_up_to_date_conversion_is_recognised_without_importing_torch(weights_copy):
    from axs_lib.models import convert_to_safetensors

    convert_to_safetensors(weights_copy / "Prithvi-EO-2.0-600M" / "Prithvi_EO_V2_600M.pt")
    arguments = ["--convert-only", "--models", "Prithvi-EO-2.0-600M", "--weights-dir", str(weights_copy)]
    assert heavy_modules_imported_by_setup(arguments) == []


def heavy_modules_imported_by_setup(arguments: list[str]) -> list[str]:
    """Run ``axs_lib/setup.py`` with ``arguments`` in a fresh process (Hub unreachable); which of TerraTorch, torch
    and the model code it imported."""
    probe = (
        "import runpy, sys\n"
        f"sys.argv = ['axs-setup', *{arguments!r}]\n"
        "try:\n    runpy.run_path('axs_lib/setup.py', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "import json\n"
        "print(json.dumps(sorted(name for name in ('terratorch', 'torch', 'axs_lib.models') if name in sys.modules)))"
    )
    environment = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "0"}
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=environment, capture_output=True, text=True,
                            timeout=120)
    return json.loads(result.stdout.splitlines()[-1]) if result.stdout else [result.stderr]


@pytest.mark.parametrize("script", ["axs-setup", "axs-register-models"])
def test_pip_installs_the_command_line_tools_and_they_run_from_any_folder(tmp_path, script):
    executable = shutil.which(script, path=str(Path(sys.executable).parent))
    assert executable, f"{script} is not installed beside {sys.executable}: pip install -e ."
    result = subprocess.run([executable, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {script}")


def test_every_tool_reports_a_failure_as_one_error_line_whose_exit_code_says_whose_fault_it_was(capsys):
    from axs_lib.cli.errors import BAD_INPUT, FAILED, fail
    from axs_lib.errors import InvalidArgumentError, SceneInterruptedError

    wrong_input = InvalidArgumentError("lora_r must be positive,\n  got 0")
    assert fail(wrong_input, wrong_input) == BAD_INPUT == 2
    interrupted = SceneInterruptedError("disk full", "free some space", "continue from window 3 of 9", "out.tif.partial")
    assert fail("disk full", interrupted) == FAILED == 1
    assert fail("nothing to convert", code=FAILED) == 1
    assert capsys.readouterr().err.splitlines() == [
        "error: lora_r must be positive, got 0", "error: disk full", "error: nothing to convert",
    ]
