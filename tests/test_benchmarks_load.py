"""The load benchmark runs end to end at toy sizes and prints its table."""

from __future__ import annotations

import json
import re

from helpers import run_benchmark

MODELS = ("terramind_backbone", "terramind_generator", "prithvi", "prithvi_300_tl")
"""The default three, and one of the size-class models (another family member, TL)."""


def test_tiny_benchmark_prints_a_ratio_per_model(tmp_path):
    results = tmp_path / "results.json"
    completed = run_benchmark(
        "load.py", "--tiny", "--rounds", "1", "--workdir", str(tmp_path / "work"), "--json", str(results), "--models", *MODELS
    )

    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
            for line in completed.stdout.splitlines() if line.startswith("| ") and line.split("|")[1].strip() in MODELS}
    assert set(rows) == set(MODELS), completed.stdout
    for model, cells in rows.items():
        speed_up = cells[3]
        if model == "terramind_generator":  # the stock generator cannot load tiny tokenizers; it is skipped
            assert cells[1] == "skipped" and speed_up == "n/a"
        else:
            assert re.fullmatch(r"\d+\.\d×", speed_up), f"{model}: {speed_up}"
        assert cells[-1].endswith("/ yes"), f"{model}: our load did not take the checkpoint's weights"
    assert "stock terramind_generator skipped" in completed.stdout

    runs = json.loads(results.read_text())["runs"]
    assert {(run["case"], run["way"]) for run in runs if run["error"] is None} == {
        ("terramind_backbone", "stock"), ("terramind_backbone", "ours"), ("terramind_generator", "ours"),
        ("prithvi", "stock"), ("prithvi", "ours"), ("prithvi_300_tl", "stock"), ("prithvi_300_tl", "ours"),
    }
