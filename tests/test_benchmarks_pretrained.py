"""The save/reload benchmark runs end to end at toy size and reports exact reloads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "pretrained.py"


def test_tiny_benchmark_reports_sizes_load_times_and_exact_logits(tmp_path):
    results = tmp_path / "results.json"
    completed = subprocess.run(
        [sys.executable, str(BENCHMARK), "--tiny", "--rounds", "1", "--workdir", str(tmp_path / "work"),
         "--json", str(results)],
        env=dict(os.environ, HF_HUB_OFFLINE="1"), capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "| from_pretrained(adapter-only folder) |" in completed.stdout
    report = json.loads(results.read_text())
    assert {run["step"] for run in report["runs"]} == {"base", "adapter_only", "include_base"}
    assert all(run["max_logit_difference"] == 0.0 for run in report["runs"] if run["step"] != "base")
    assert "base/Prithvi_EO_V2_600M.safetensors" in report["save"]["include_base_files"]
    assert report["save"]["adapter_only_bytes"] < report["save"]["include_base_bytes"]
