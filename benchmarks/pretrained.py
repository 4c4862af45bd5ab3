"""Save/reload benchmark: the size of a fine-tuned Prithvi 600M folder, and its load time against the base alone.

It writes a random-init Prithvi EO 2.0 600M checkpoint of the real shapes (``--tiny``: the test suite's toy
size) in the published layout and converts it to ``model.safetensors``, as ``axs-setup`` leaves it. Then, each
step in a fresh Python process with ``AXS_WEIGHTS_DIR`` pointing there:

1. *save*: ``build_prithvi_600(num_classes=2, img_size=224)`` (LoRA r8 on q/v, UperNet), every trainable
   weight moved off its initial value (as training would), ``save_pretrained(folder)`` (adapter-only) and
   ``save_pretrained(folder, include_base=True)``, timed, and the logits of one fixed tile kept;
2. alternating for ``--rounds`` rounds: *base*: ``build_prithvi_600(num_classes=2, img_size=224)`` (the
   untrained model from the base weights), and *folder*: ``PrithviSegmentation.from_pretrained(folder)``,
   whose logits on the same tile are compared with the saved model's.

Run from the repository root (full size: about 8 GB free in the work folder, 4 minutes on 2 CPU cores):

    python benchmarks/pretrained.py
    python benchmarks/pretrained.py --tiny --rounds 1          # toy size, about a minute
    python benchmarks/pretrained.py --workdir /tmp/axs-bench --keep --json results.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BENCHMARKS_DIR = Path(__file__).resolve().parent
RESULT_MARKER = "AXS_BENCH_RESULT "
PRITHVI = "Prithvi-EO-2.0-600M"
SIZE_TARGET = 0.05
"""An adapter-only folder must be at most 5 % of the base checkpoint."""

STEP = r'''
import json, os, re, sys, time
from pathlib import Path
import torch

def peak_kib():
    return int(re.search(r"^VmHWM:\s+(\d+)", Path("/proc/self/status").read_text(), re.M).group(1))

step, workdir, tile = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
import axs_lib.models
from axs_lib.models import PrithviSegmentation, build_prithvi_600
images = torch.randn(1, 6, tile, tile, generator=torch.Generator().manual_seed(0)) * 0.5
result = {"step": step}
if step == "save":
    model = build_prithvi_600(num_classes=2, img_size=tile)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn(parameter.shape, generator=generator).to(parameter.dtype) * 0.01)
    model.eval()
    with torch.no_grad():
        torch.save(model(images).output, workdir / "expected_logits.pt")
    for name, include_base in (("adapter_only", False), ("include_base", True)):
        start = time.perf_counter()
        folder = model.save_pretrained(workdir / name, include_base=include_base)
        result[f"{name}_save_seconds"] = time.perf_counter() - start
        result[f"{name}_bytes"] = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        result[f"{name}_files"] = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    result["trainable_parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
else:
    start = time.perf_counter()
    if step == "base":
        model = build_prithvi_600(num_classes=2, img_size=tile).eval()
    else:
        model = PrithviSegmentation.from_pretrained(workdir / step)
    result["seconds"] = time.perf_counter() - start
    result["load_peak_rss_kib"] = peak_kib()
    if step != "base":
        with torch.no_grad():
            logits = model(images).output
        result["max_logit_difference"] = (logits - torch.load(workdir / "expected_logits.pt")).abs().max().item()
print("AXS_BENCH_RESULT " + json.dumps(result), flush=True)
'''


def _import_load_benchmark():
    """``benchmarks/load.py``: its checkpoint writer is reused here."""
    if str(BENCHMARKS_DIR) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS_DIR))
    import load

    return load


def run_step(step: str, workdir: Path, tile: int) -> dict:
    env = {**os.environ, "AXS_WEIGHTS_DIR": str(workdir / "weights"), "HF_HUB_OFFLINE": "1",
           "LIGHTLY_DID_VERSION_CHECK": "True"}
    completed = subprocess.run(
        [sys.executable, "-c", STEP, step, str(workdir), str(tile)], env=env, capture_output=True, text=True,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_MARKER)]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"step {step} failed:\n{completed.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix(RESULT_MARKER))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="the test suite's toy Prithvi instead of the real size")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, help="default: a temporary folder, deleted afterwards")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="axs-bench-pretrained-"))
    workdir.mkdir(parents=True, exist_ok=True)
    tile = 28 if args.tiny else 224
    try:
        load = _import_load_benchmark()
        written = load.write_checkpoints(workdir / "weights", [PRITHVI], args.tiny)[0]
        saved = run_step("save", workdir, tile)
        runs = []
        for round_index in range(args.rounds):
            for step in ("base", "adapter_only", "include_base"):
                runs.append({"round": round_index, **run_step(step, workdir, tile)})
                print(f"round {round_index + 1}: {step} {runs[-1]['seconds']:.2f} s", flush=True)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    report = {"tiny": args.tiny, "base_pt_bytes": written.pt_bytes, "base_safetensors_bytes": written.safetensors_bytes,
              "save": saved, "runs": runs}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    print_tables(report)
    ratio = saved["adapter_only_bytes"] / written.pt_bytes
    return 0 if args.tiny or ratio <= SIZE_TARGET else 1


def print_tables(report: dict) -> None:
    saved, runs = report["save"], report["runs"]
    base = report["base_pt_bytes"]
    print("\n| folder | files | size | ÷ base .pt | save s |")
    print("|---|---|---|---|---|")
    for name in ("adapter_only", "include_base"):
        size = saved[f"{name}_bytes"]
        print(f"| {name} | {', '.join(saved[f'{name}_files'])} | {size / 1e6:.1f} MB | {100 * size / base:.1f} % "
              f"| {saved[f'{name}_save_seconds']:.2f} |")
    print(f"\nbase checkpoint: {base / 1e9:.2f} GB (.pt); trainable parameters: {saved['trainable_parameters'] / 1e6:.2f} M")
    print("\n| load | median s | peak RSS | max logit difference |")
    print("|---|---|---|---|")
    labels = {"base": "build_prithvi_600 (base alone)", "adapter_only": "from_pretrained(adapter-only folder)",
              "include_base": "from_pretrained(include_base folder)"}
    for step, label in labels.items():
        mine = [run for run in runs if run["step"] == step]
        seconds = statistics.median(run["seconds"] for run in mine)
        peak = max(run["load_peak_rss_kib"] for run in mine) / 2**20
        difference = "n/a" if step == "base" else f"{max(run['max_logit_difference'] for run in mine):.1e}"
        print(f"| {label} | {seconds:.2f} | {peak:.2f} GiB | {difference} |")


if __name__ == "__main__":
    sys.exit(main())
