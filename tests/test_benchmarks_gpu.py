"""``benchmarks/gpu.py`` runs end to end on CPU with the tiny checkpoints and prints its three parts.

One run covers every code path: float32 (where stock TerraTorch's generator works) and bfloat16 (where it
fails), the compiled variants, and ``--dtypes`` leaving the other dtypes out. float16 is left out because
its matrix products are very slow on CPU (it tripled the run's time) and add no code path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DTYPES = ("fp32", "bf16")


def table_rows(output: str, header_start: str) -> list[list[str]]:
    """The cells of the markdown table whose header row starts with ``header_start``."""
    lines = output.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def is_number(cell: str) -> bool:
    try:
        return float(cell.split(" ")[0]) > 0
    except ValueError:
        return False


def test_tiny_cpu_run_prints_generation_prithvi_and_flops_tables_for_the_dtypes_asked(tmp_path):
    results = tmp_path / "results.json"
    command = [sys.executable, "benchmarks/gpu.py", "--device", "cpu", "--tiny", "--iters", "1", "--compile"]
    command += ["--dtypes", ",".join(DTYPES), "--json", str(results)]
    run = subprocess.run(
        command, cwd=REPO_ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-4000:]
    output = run.stdout
    assert output.startswith("# axs_lib GPU benchmark")
    for title in (
        "## TerraMind generation S1GRD -> S2L2A, 64x64",
        "## Prithvi EO 2.0 600M segmentation (UperNet), 28x28",
        "## Prithvi encoder `forward_features`, 28x28, no_grad",
    ):
        assert title in output

    generation = table_rows(output, "| dtype | timesteps | ours peak GiB | ours ms/tile | ours tiles/s | stock peak GiB |")
    assert [row[:2] for row in generation] == [[dtype, steps] for dtype in DTYPES for steps in ("6", "12")]
    assert all(row[2] == "n/a" and is_number(row[3]) and is_number(row[4]) for row in generation)
    assert all(row[5] == "n/a" or row[5].startswith("fails (") for row in generation)
    assert all(is_number(row[6]) for row in generation if row[0] == "fp32")

    prithvi = table_rows(output, "| mode | dtype | variant | ours trainable | ours peak GiB |")
    assert [row[:2] for row in prithvi] == [["inference", d] for d in DTYPES for _ in range(3)] + [
        ["training", d] for d in DTYPES for _ in range(7)
    ]
    assert [row[2] for row in prithvi if row[2].endswith("compile")] == ["LoRA r8, compile"] * 2 * len(DTYPES)
    assert all(row[4] == "n/a" and is_number(row[5]) and is_number(row[6]) for row in prithvi)
    with_stock = [row for row in prithvi if "checkpointing" not in row[2]]
    assert len(with_stock) == 8 * len(DTYPES) and all(is_number(row[8]) for row in with_stock)

    matmuls = table_rows(output, "| matmul | TFLOP/s |")
    assert [row[0].split(" ")[0] for row in matmuls] == ["bf16", "fp32", "fp32+tf32"]
    encoders = table_rows(output, "| encoder | dtype | TF32 | compiled | GFLOP/tile |")
    assert [row[:4] for row in encoders] == [
        ["stock PrithviViT", "bf16", "default", "no"],
        ["axs_lib encoder", "bf16", "default", "no"],
        ["axs_lib encoder", "bf16", "default", "yes"],
        ["stock PrithviViT", "fp32", "off", "no"],
        ["axs_lib encoder", "fp32", "off", "no"],
        ["stock PrithviViT", "fp32", "on", "no"],
        ["axs_lib encoder", "fp32", "on", "no"],
    ]
    assert all(is_number(row[4]) and is_number(row[6]) for row in encoders)
    assert len({row[4] for row in encoders}) == 1, "stock and axs_lib encoders count different FLOPs"

    assert {"settings", "generation", "prithvi", "flops"} <= set(json.loads(results.read_text()))

