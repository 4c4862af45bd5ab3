"""Every ``python`` block of the README and of docs/ runs, in order, against the tiny checkpoints."""

from __future__ import annotations

import re
import tempfile
import textwrap
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PYTHON_BLOCK = re.compile(r"^( *)```python\n(.*?)^\1```", re.DOTALL | re.MULTILINE)


@pytest.fixture
def tf32_settings_restored():
    """Examples may allow TF32; put PyTorch's process-wide settings back afterwards."""
    settings = (torch.backends.cuda.matmul, torch.backends.cudnn.conv)
    saved = [setting.fp32_precision for setting in settings]
    yield
    for setting, value in zip(settings, saved):
        setting.fp32_precision = value


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_code_examples_run(page, tiny_weights, use_weights, tf32_settings_restored, tmp_path, monkeypatch):
    blocks = [textwrap.dedent(block) for _, block in PYTHON_BLOCK.findall(page.read_text())]
    if page.name in ("model_registration.md", "api.md", "README.md"):
        assert blocks, f"{page.name} should show runnable examples"
    use_weights(tiny_weights)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # examples' tempfile.mkdtemp() folders go with the test
    namespace: dict = {}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"{page.name}[python block {number}]", "exec"), namespace)


def test_the_guides_factory_examples_run_verbatim_on_a_single_tile(tiny_weights, use_weights):
    guide = (ROOT / "docs" / "model_registration.md").read_text()
    section = guide[guide.index("## 4. The factories"):guide.index("## 5.")]
    first_block = textwrap.dedent(PYTHON_BLOCK.findall(section)[0][1])
    use_weights(tiny_weights)
    namespace: dict = {}
    exec(compile(first_block, "model_registration.md[factories]", "exec"), namespace)
    assert namespace["optical"].shape[0] == namespace["features"][-1].shape[0] == namespace["logits"].shape[0] == 1
    assert not any(namespace[name].training for name in ("generator", "encoder", "segmenter"))


BASH_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.DOTALL | re.MULTILINE)
SCENE_COMMAND = re.compile(r"(?:axs-scenes|-m axs_lib\.cli\.scenes) (segment|sar-to-optical|pipeline) (.*)")


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_each_command_block_writes_each_output_once_so_it_runs_when_pasted(page):
    import shlex

    for block in BASH_BLOCK.findall(page.read_text()):
        outputs = []
        for line in block.replace("\\\n", " ").splitlines():
            match = SCENE_COMMAND.search(line.split(" #")[0])
            if match is None:
                continue
            words = shlex.split(match.group(2))
            outputs.append(words[0] if "--search" in words else words[1])
        assert len(outputs) == len(set(outputs)), f"{page.name}: a block writes one of {outputs} twice"


def test_the_lightning_checkpoint_path_in_the_docs_is_where_the_shipped_config_writes():
    import yaml

    config = yaml.safe_load((ROOT / "configs" / "prithvi_600_lora_segmentation.yaml").read_text())
    logger = config["trainer"]["logger"]["init_args"]
    folder = f"{logger['save_dir']}/{logger['name']}/version_0/checkpoints/"  # Lightning: <logger.log_dir>/checkpoints
    shown = re.findall(r"(output/[\w/=.-]+\.ckpt)", (ROOT / "docs" / "fine_tuning.md").read_text())
    assert shown and all(path.startswith(folder) for path in shown), shown
