"""The scene benchmark runs end to end on a small scene and prints its table."""

from __future__ import annotations

from helpers import run_benchmark


def test_small_scene_benchmark_prints_peak_memory_and_speed(work):
    completed = run_benchmark("scenes.py", "--sizes", "256", "--stock-max", "0", "--workdir", str(work))
    row = next(line for line in completed.stdout.splitlines() if line.startswith("| 256²"))
    cells = [cell.strip() for cell in row.split("|")[1:-1]]
    assert cells[1] == "4" and float(cells[2]) > 0 and float(cells[3]) > 0 and float(cells[4]) >= 0 and cells[5] == "not run"
    assert list(work.iterdir()) == [], "the benchmark leaves nothing behind"
