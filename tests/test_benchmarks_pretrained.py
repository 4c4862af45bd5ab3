"""The save/reload benchmark runs end to end at toy size and reports exact reloads."""

from __future__ import annotations

import json

from helpers import run_benchmark


def test_tiny_benchmark_reports_sizes_load_times_and_exact_logits(tmp_path):
    results = tmp_path / "results.json"
    completed = run_benchmark(
        "pretrained.py", "--tiny", "--rounds", "1", "--workdir", str(tmp_path / "work"), "--json", str(results)
    )
    assert "| from_pretrained(adapter-only folder) |" in completed.stdout
    report = json.loads(results.read_text())
    assert {run["step"] for run in report["runs"]} == {"base", "adapter_only", "include_base"}
    assert all(run["max_logit_difference"] == 0.0 for run in report["runs"] if run["step"] != "base")
    assert "base/Prithvi_EO_V2_600M.safetensors" in report["save"]["include_base_files"]
    assert report["save"]["adapter_only_bytes"] < report["save"]["include_base_bytes"]
