"""How long the weights tool takes to start, against ``import terratorch``, each in a fresh process.

    python benchmarks/startup.py                 # 5 rounds, a table on stdout
    python benchmarks/startup.py --rounds 3 --json /tmp/startup.json

Commands timed (wall clock of the whole process, median over rounds; the kinds alternate within a round):

- ``import terratorch``: the reference the tools must stay well under (a third of it at most);
- ``axs-setup --help``;
- ``axs-setup --convert-only`` over an empty weights folder (it looks for files, finds none, says so);
- ``axs-setup --convert-only`` over a folder whose conversion is up to date (it reads the safetensors header);
- a failed download: ``axs-setup --models Prithvi-EO-2.0-600M`` with the Hub at a closed local port;
- ``import axs_lib.models`` (registration in TerraTorch included), for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def converted_weights(folder: Path) -> Path:
    """A weights folder holding a small file under Prithvi's published name and its current conversion."""
    import torch

    from axs_lib.weights.conversion import convert_to_safetensors

    model = folder / "Prithvi-EO-2.0-600M"
    model.mkdir(parents=True)
    torch.save({"encoder.weight": torch.zeros(256, 256)}, model / "Prithvi_EO_V2_600M.pt")
    convert_to_safetensors(model / "Prithvi_EO_V2_600M.pt")
    return folder


def commands(empty: Path, converted: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    setup = [sys.executable, str(ROOT / "axs_lib" / "setup.py")]
    offline_hub = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "0"}
    return {
        "import terratorch": ([sys.executable, "-c", "import terratorch"], {"LIGHTLY_DID_VERSION_CHECK": "True"}),
        "axs-setup --help": ([*setup, "--help"], {}),
        "axs-setup --convert-only (nothing there)": ([*setup, "--convert-only", "--weights-dir", str(empty)], {}),
        "axs-setup --convert-only (up to date)": (
            [*setup, "--convert-only", "--models", "Prithvi-EO-2.0-600M", "--weights-dir", str(converted)], {}
        ),
        "axs-setup, failed download": ([*setup, "--models", "Prithvi-EO-2.0-600M", "--weights-dir", str(empty)], offline_hub),
        "import axs_lib.models": ([sys.executable, "-c", "import axs_lib.models"], {}),
    }


def timed(command: list[str], environment: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env={**os.environ, **environment}, cwd=ROOT, capture_output=True, check=False)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the raw times here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as empty, tempfile.TemporaryDirectory() as weights:
        runs = commands(Path(empty), converted_weights(Path(weights)))
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, (command, environment) in runs.items():
                times[name].append(timed(command, environment))

    reference = statistics.median(times["import terratorch"])
    print(f"| command | median s (of {args.rounds}) | ÷ import terratorch |")
    print("|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {median / reference:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(times, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
