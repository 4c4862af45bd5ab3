"""``benchmarks/gpu.py`` runs each part on CPU with the tiny checkpoints and writes sane JSON figures.

float16 is left out: its matrix products are very slow on CPU and add no code path. ``--compile`` is
exercised in the ``flops`` part only, where it costs least.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import process_environment

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_part(part: str, tmp_path: Path, *options: str) -> dict:
    results = tmp_path / f"{part}.json"
    command = [sys.executable, "benchmarks/gpu.py", "--part", part, "--device", "cpu", "--tiny", "--iters", "1"]
    run = subprocess.run(
        [*command, *options, "--json", str(results)], cwd=REPO_ROOT, env=process_environment(HF_HUB_OFFLINE="1"),
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    record = json.loads(results.read_text())
    assert record["part"] == part and record["settings"]["tiny"] and record["settings"]["device"] == "cpu"
    assert {"device", "torch", "terratorch", "axs_lib", "date"} <= set(record["environment"])
    return record


def assert_measured(measurement: dict, batch_sizes: list[int]) -> None:
    """Timed at every batch size asked, without error; tiles/s agree with the time; no CUDA memory figure on CPU."""
    assert measurement["error"] is None and measurement["oom_batch"] is None
    batches = measurement["batches"]
    assert [result["batch"] for result in batches] == batch_sizes
    for result in batches:
        assert result["seconds_per_call"] > 0 and result["peak_memory_bytes"] is None
        assert result["tiles_per_s"] == pytest.approx(result["batch"] / result["seconds_per_call"])
    assert measurement["smallest"] == batches[0]
    assert measurement["best"]["tiles_per_s"] == max(result["tiles_per_s"] for result in batches)


def test_generation_compares_both_generators_per_dtype_and_timesteps(tmp_path):
    rows = run_part("generation", tmp_path, "--dtypes", "fp32,bf16")["results"]

    assert [(row["dtype"], row["timesteps"]) for row in rows] == [(d, t) for d in ("fp32", "bf16") for t in (6, 12)]
    for row in rows:
        assert_measured(row["ours"], [1, 2])
        if row["dtype"] == "fp32":
            assert_measured(row["stock"], [1, 2])
        elif row["stock"]["error"]:  # TerraTorch's generator cast to bf16 may fail; the reason is kept
            assert ":" in row["stock"]["error"] and not row["stock"]["batches"]


def test_inference_compares_lora_ranks_with_stock_terratorch(tmp_path):
    rows = run_part("inference", tmp_path, "--dtypes", "fp32")["results"]

    assert [row["variant"] for row in rows] == ["LoRA r4", "LoRA r8"]
    for row in rows:
        assert_measured(row["ours"], [1, 2])
        assert_measured(row["stock"], [1, 2])
    trainable = [row["ours"]["info"]["trainable_params"] for row in rows]
    assert 0 < trainable[0] < trainable[1]


def test_training_steps_start_at_batch_two_for_every_variant_and_lora_rank_sets_the_trainable_weights(tmp_path):
    rows = {row["variant"]: row for row in run_part("training", tmp_path, "--dtypes", "fp32")["results"]}

    assert len(rows) == 6
    for row in rows.values():
        assert_measured(row["ours"], [2])
        if row["stock"] is not None:
            assert_measured(row["stock"], [2])
    assert rows["LoRA r8, gradient_checkpointing"]["stock"] is None  # TerraTorch has no equivalent
    trainable = {label: row["ours"]["info"]["trainable_params"] for label, row in rows.items()}
    assert all(count > 0 for count in trainable.values())
    assert trainable["LoRA r4"] < trainable["LoRA r8"] == trainable["LoRA r8, gradient_checkpointing"]


def test_flops_counts_the_same_work_for_stock_and_ours_and_relates_throughput_to_the_matmul_peak(tmp_path):
    result = run_part("flops", tmp_path, "--compile")["results"]

    assert set(result["matmul_tflops"]) == {"bf16", "fp32", "fp32+tf32"}
    assert all(value > 0 for value in result["matmul_tflops"].values())
    runs = [(row["run"]["encoder"], row["run"]["dtype"], row["run"]["tf32"], row["run"]["compiled"]) for row in result["encoders"]]
    assert runs == [
        ("stock", "bf16", None, False), ("ours", "bf16", None, False), ("ours", "bf16", None, True),
        ("stock", "fp32", False, False), ("ours", "fp32", False, False),
        ("stock", "fp32", True, False), ("ours", "fp32", True, False),
    ]
    assert len({row["gflop_per_tile"] for row in result["encoders"]}) == 1 and result["encoders"][0]["gflop_per_tile"] > 0
    for row in result["encoders"]:
        assert_measured(row["measurement"], [1, 2])
        best = row["measurement"]["best"]
        assert row["tflops"] == pytest.approx(row["gflop_per_tile"] * best["tiles_per_s"] / 1000)
        assert row["fraction_of_peak"] == pytest.approx(row["tflops"] / result["matmul_tflops"][row["peak"]])
