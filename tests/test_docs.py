"""Every ``python`` block of the README and of docs/ runs, in order, against the tiny checkpoints."""

from __future__ import annotations

import re
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
def test_code_examples_run(page, tiny_weights, use_weights, tf32_settings_restored):
    blocks = [textwrap.dedent(block) for _, block in PYTHON_BLOCK.findall(page.read_text())]
    if page.name in ("model_registration.md", "api.md", "README.md"):
        assert blocks, f"{page.name} should show runnable examples"
    use_weights(tiny_weights)
    namespace: dict = {}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"{page.name}[python block {number}]", "exec"), namespace)
