"""The scene benchmark runs end to end on a small scene and prints its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "scenes.py"


def test_small_scene_benchmark_prints_peak_memory_and_speed(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    completed = subprocess.run(
        [sys.executable, str(BENCHMARK), "--sizes", "256", "--stock-max", "0", "--workdir", str(work)],
        capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    row = next(line for line in completed.stdout.splitlines() if line.startswith("| 256²"))
    cells = [cell.strip() for cell in row.split("|")[1:-1]]
    assert cells[1] == "4" and float(cells[2]) > 0 and float(cells[3]) > 0 and cells[4] == "not run"
    assert list(work.iterdir()) == [], "the benchmark leaves nothing behind"
