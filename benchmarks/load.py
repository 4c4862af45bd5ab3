"""Load benchmark: TerraTorch's stock ``pretrained=True, ckpt_path=...`` path against axs_lib's factories.

It writes random-init checkpoints of the real shapes (with ``--tiny``: the test suite's toy sizes) in the
published file names and the plain layout ``<workdir>/<model name>/<published file>``, converts each to
``model.safetensors`` with ``axs_lib.models.convert_to_safetensors``, then loads three models both ways,
every load in a fresh Python process, alternating stock / ours for ``--rounds`` rounds, and prints
markdown tables: load seconds, speed-up, peak RSS, imports, and the time spent writing the checkpoints.

Run from the repository root (full size: about 16 GB free in the work folder, 7 minutes on 2 CPU cores):

    python benchmarks/load.py                              # full size, 3 rounds, temp work folder
    python benchmarks/load.py --tiny --rounds 1            # toy sizes, about a minute
    python benchmarks/load.py --models prithvi --workdir /tmp/axs-bench --keep --json /tmp/axs-bench/results.json

Each load process times ``import torch``, ``import terratorch`` and (ours) ``import axs_lib.models`` one
after the other, reads its resident memory (``VmRSS``) and restarts its peak (``VmHWM``), times the
build-and-load call alone, reads the peak, then times reading one value in every memory page of every weight
(ours returns tensors memory-mapped from the file, so this is when its bytes are read), checks one parameter
per checkpoint file against the file, and prints one JSON line that the parent collects.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported inside functions, so that load processes can time these imports
    import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULT_MARKER = "AXS_BENCH_RESULT "
HUB_CACHE_FOLDER = "hf-cache"
FAKE_REVISION = "0123456789abcdef0123456789abcdef01234567"
FULL_SIZE_FREE_BYTES = 16 * 2**30
RSS_TARGET = 1.2
PAGE_BYTES = 4096
STOCK, OURS = "stock", "ours"

TERRAMIND = "TerraMind-1.0-large"
TOKENIZER_S2L2A = "TerraMind-1.0-Tokenizer-S2L2A"
PRITHVI = "Prithvi-EO-2.0-600M"
BACKBONE_MODALITIES = ["S1GRD", "S2L2A"]

TINY_STOCK_GENERATOR_SKIPPED = (
    "stock terramind_generator skipped in --tiny mode: TerraTorch's generate builder with pretrained=True "
    "builds the full-size S2L2A tokenizer and loads the tiny tokenizer file into it strictly, which fails"
)

TINY_RSS_NOTE = (
    "at toy sizes the peak RSS is that of the imports (about 1 GiB for torch and TerraTorch) and the RSS growth "
    "is mostly not weights, so the RSS ratio means something only at full size"
)


@dataclass(frozen=True)
class Probe:
    """A parameter of the built model and the checkpoint key it must equal.

    ``parameter`` is TerraTorch's name; a model that wraps TerraTorch's module has it under a prefix.
    """

    parameter: str
    key: str


@dataclass(frozen=True)
class Case:
    """One model loaded both ways.

    Attributes:
        name: the name ``--models`` takes.
        checkpoints: catalog names of the files the model is loaded from (ours reads each model folder).
        stock_registry: TerraTorch registry of the stock builder (``backbone`` or ``full_model``).
        stock_builder: the stock builder; ``stock_builder_tiny`` in ``--tiny`` mode.
        stock_kwargs: arguments of the stock builder besides ``pretrained`` and ``ckpt_path``.
        ours_factory: the ``axs_lib.models`` factory.
        ours_kwargs: arguments of the factory besides ``checkpoint_path``.
        probes: one per checkpoint, in the order of ``checkpoints``.
    """

    name: str
    checkpoints: tuple[str, ...]
    stock_registry: str
    stock_builder: str
    stock_builder_tiny: str
    stock_kwargs: dict[str, Any]
    ours_factory: str
    ours_kwargs: dict[str, Any]
    probes: tuple[Probe, ...]


CASES: dict[str, Case] = {
    case.name: case
    for case in (
        Case(
            name="terramind_backbone",
            checkpoints=(TERRAMIND,),
            stock_registry="backbone",
            stock_builder="terramind_v1_large",
            stock_builder_tiny="terramind_v1_tiny",
            stock_kwargs={"modalities": BACKBONE_MODALITIES},
            ours_factory="build_terramind_backbone",
            ours_kwargs={"modalities": BACKBONE_MODALITIES},
            probes=(Probe("encoder.0.attn.qkv.weight", "encoder.0.attn.qkv.weight"),),
        ),
        Case(
            name="terramind_generator",
            checkpoints=(TERRAMIND, TOKENIZER_S2L2A),
            stock_registry="full_model",
            stock_builder="terramind_v1_large_generate",
            stock_builder_tiny="terramind_v1_tiny_generate",
            stock_kwargs={"modalities": ["S1GRD"], "output_modalities": ["S2L2A"]},
            ours_factory="build_terramind_generator",
            ours_kwargs={"input_modalities": ["S1GRD"], "output_modalities": ["S2L2A"], "timesteps": 12},
            probes=(
                Probe("sampler.model.encoder.0.attn.qkv.weight", "encoder.0.attn.qkv.weight"),
                Probe("tokenizer.tok_sen2l2a@224.encoder.proj.weight", "encoder.proj.weight"),
            ),
        ),
        Case(
            name="prithvi",
            checkpoints=(PRITHVI,),
            stock_registry="backbone",
            stock_builder="prithvi_eo_v2_600",
            stock_builder_tiny="prithvi_eo_v2_600",
            stock_kwargs={"num_frames": 1},
            ours_factory="build_prithvi_600_backbone",
            ours_kwargs={"img_size": 224},
            probes=(Probe("blocks.0.attn.qkv.weight", "encoder.blocks.0.attn.qkv.weight"),),
        ),
        *(
            Case(
                name=f"terramind_{size}_backbone",
                checkpoints=(f"TerraMind-1.0-{size}",),
                stock_registry="backbone",
                stock_builder=f"terramind_v1_{size}",
                stock_builder_tiny="terramind_v1_tiny",
                stock_kwargs={"modalities": BACKBONE_MODALITIES},
                ours_factory="build_terramind_backbone",
                ours_kwargs={"modalities": BACKBONE_MODALITIES, "size": size},
                probes=(Probe("encoder.0.attn.qkv.weight", "encoder.0.attn.qkv.weight"),),
            )
            for size in ("tiny", "small", "base")
        ),
        *(
            Case(
                name=f"prithvi_{size}_tl",
                checkpoints=(f"Prithvi-EO-2.0-{size}M-TL",),
                stock_registry="backbone",
                stock_builder=f"prithvi_eo_v2_{size}_tl",
                stock_builder_tiny=f"prithvi_eo_v2_{size}_tl",
                stock_kwargs={"num_frames": 1},
                ours_factory="build_prithvi_backbone",
                ours_kwargs={"variant": f"prithvi_eo_v2_{size}_tl", "img_size": 224},
                probes=(Probe("blocks.0.attn.qkv.weight", "encoder.blocks.0.attn.qkv.weight"),),
            )
            for size in ("100", "300")
        ),
    )
}
"""The three models of the first table (default), then one model per size class of the two families
(``--models size-classes``): TerraMind 1.0 tiny, small and base, Prithvi EO 2.0 100M-TL and 300M-TL."""
DEFAULT_CASES = ("terramind_backbone", "terramind_generator", "prithvi")
SIZE_CLASS_CASES = tuple(name for name in CASES if name not in DEFAULT_CASES)


@dataclass
class WrittenCheckpoint:
    """A checkpoint this run wrote, and what writing and converting it cost."""

    model: str
    pt_path: str
    pt_bytes: int
    write_seconds: float
    safetensors_path: str
    safetensors_bytes: int
    convert_seconds: float


@dataclass
class LoadRun:
    """One load in one fresh process, as its JSON line reported it (``error`` when it failed).

    ``seconds`` is the build-and-load call; ``read_seconds`` reading every weight once right after it (what a
    first forward pass adds: ours returns tensors memory-mapped from the file, paged in on first use).
    Memory, in KiB: ``baseline_rss_kib`` is ``VmRSS`` right before the call; ``load_peak_rss_kib`` the peak
    during the call (``VmHWM`` restarted just before it); ``read_peak_rss_kib`` the peak once every weight
    was read; ``peak_rss_kib`` the process's peak, imports included. ``ru_maxrss_kib`` is recorded but not
    used: Linux carries the peak of the process that called ``execve`` into it (here the parent's).
    """

    case: str
    way: str
    round: int
    seconds: float | None = None
    read_seconds: float | None = None
    baseline_rss_kib: int | None = None
    peak_rss_kib: int | None = None
    load_peak_rss_kib: int | None = None
    read_peak_rss_kib: int | None = None
    ru_maxrss_kib: int | None = None
    imports: dict[str, float] = field(default_factory=dict)
    weights_from_file: bool | None = None
    parameters: int | None = None
    error: str | None = None


# ---------------------------------------------------------------------------------------------- checkpoints


def full_tokenizer_state_dict() -> dict[str, torch.Tensor]:
    """The S2L2A tokenizer (TerraTorch's ``terramind_v1_tokenizer_s2l2a``), real shapes."""
    tiny_weights = _import_tiny_weights()
    return tiny_weights.tokenizer_state_dict(TOKENIZER_S2L2A, enc_type="vit_b_enc", dec_type="unet_patched")


def full_state_dict(model: str) -> dict[str, torch.Tensor]:
    """The published checkpoint's keys of ``model`` (a catalog name), real shapes, random values."""
    from terratorch.models.backbones.prithvi_vit import prithvi_cfgs

    from axs_lib.weights.catalog import KNOWN_MODELS

    if model == TOKENIZER_S2L2A:
        return full_tokenizer_state_dict()
    builder = KNOWN_MODELS[model].builder
    if builder.startswith("terramind_v1_"):
        return _import_tiny_weights().terramind_state_dict(builder)
    architecture = {key: value for key, value in prithvi_cfgs[builder].items() if key.startswith("decoder_")}
    return _import_tiny_weights().prithvi_state_dict(variant=builder, **architecture)


def _import_tiny_weights() -> ModuleType:
    """``axs_lib.demo.tiny_weights``, the writer of tiny checkpoints, imported when first needed."""
    from axs_lib.demo import tiny_weights

    return tiny_weights


def write_checkpoint(root: Path, model: str, tiny: bool) -> tuple[Path, float]:
    """Write ``<root>/<model>/<published file>``; return it and the seconds spent (build, fill, save)."""
    start = time.perf_counter()
    if tiny:
        tiny_weights = _import_tiny_weights()
        tiny_weights.install_tiny_tokenizer_presets()
        path = tiny_weights.write_tiny_model(root, model)
    else:
        import torch

        from axs_lib.weights.catalog import KNOWN_MODELS

        path = root / model / KNOWN_MODELS[model].filename
        path.parent.mkdir(parents=True, exist_ok=True)
        state_dict = full_state_dict(model)
        torch.save(state_dict, path)
        del state_dict
    return path, time.perf_counter() - start


def write_checkpoints(root: Path, models: list[str], tiny: bool) -> list[WrittenCheckpoint]:
    """Write and convert every checkpoint ``models`` need, printing progress."""
    from axs_lib.models import convert_to_safetensors

    written = []
    for model in models:
        path, write_seconds = write_checkpoint(root, model, tiny)
        start = time.perf_counter()
        converted = convert_to_safetensors(path)
        convert_seconds = time.perf_counter() - start
        print(f"wrote {path} ({_size(path.stat().st_size)}) in {write_seconds:.1f} s, converted in {convert_seconds:.1f} s",
              flush=True)
        written.append(
            WrittenCheckpoint(model, str(path), path.stat().st_size, write_seconds, str(converted),
                              converted.stat().st_size, convert_seconds)
        )
    return written


def make_fake_hub_cache(root: Path, tokenizer_file: Path) -> Path:
    """A Hugging Face cache holding only the S2L2A tokenizer, so TerraTorch's ``hf_hub_download`` works offline."""
    from huggingface_hub.file_download import repo_folder_name

    from axs_lib.weights.catalog import KNOWN_MODELS

    cache = root / HUB_CACHE_FOLDER
    repo = cache / repo_folder_name(repo_id=KNOWN_MODELS[TOKENIZER_S2L2A].repo_id, repo_type="model")
    snapshot = repo / "snapshots" / FAKE_REVISION
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(FAKE_REVISION)
    link = snapshot / tokenizer_file.name
    link.unlink(missing_ok=True)
    try:
        os.link(tokenizer_file, link)
    except OSError:
        link.symlink_to(tokenizer_file.resolve())
    return cache


def verify_fake_hub_cache(cache: Path, tokenizer_file: Path) -> None:
    """``hf_hub_download`` without the network resolves the tokenizer to the written file."""
    from huggingface_hub import hf_hub_download

    from axs_lib.weights.catalog import KNOWN_MODELS

    spec = KNOWN_MODELS[TOKENIZER_S2L2A]
    resolved = Path(hf_hub_download(spec.repo_id, spec.filename, cache_dir=cache, local_files_only=True))
    if not resolved.samefile(tokenizer_file):
        raise RuntimeError(f"the fake hub cache resolves {spec.filename} to {resolved}, not {tokenizer_file}")
    print(f"fake HF cache {cache}: hf_hub_download({spec.repo_id!r}, {spec.filename!r}) -> {resolved}", flush=True)


# ---------------------------------------------------------------------------------------------- one load (child)


def _status_kib(field_name: str) -> int:
    """A memory figure of this process from ``/proc/self/status`` (``VmRSS``: now, ``VmHWM``: peak)."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field_name}:\s+(\d+)\s+kB", status, re.MULTILINE).group(1))


def _reset_peak_rss() -> bool:
    """Start ``VmHWM`` afresh from the current RSS (Linux >= 4.0); ``False`` where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _timed_import(name: str, imports: dict[str, float]) -> ModuleType:
    start = time.perf_counter()
    module = importlib.import_module(name)
    imports[name] = time.perf_counter() - start
    return module


def _probe_matches(model: torch.nn.Module, parameter: str, checkpoint: str, key: str) -> bool:
    """Whether ``model``'s ``parameter`` equals tensor ``key`` of the file ``checkpoint`` (read memory-mapped)."""
    import torch

    expected = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)[key]
    named = [(name, value) for name, value in model.named_parameters() if name == parameter or name.endswith(f".{parameter}")]
    if not named:
        raise KeyError(f"{type(model).__name__} has no parameter named like {parameter}")
    _, actual = min(named, key=lambda item: len(item[0]))
    return not actual.is_meta and actual.shape == expected.shape and torch.equal(actual.detach(), expected)


def _read_every_weight(model: torch.nn.Module) -> None:
    """Read one value in every memory page of every parameter and buffer: pages memory-mapped weights in.

    This is the loading part of a first forward pass, without its arithmetic.
    """
    import torch

    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if not tensor.is_meta and tensor.numel():
                step = max(1, PAGE_BYTES // tensor.element_size())
                tensor.detach().reshape(-1)[::step].sum()


def run_child(job: dict[str, Any]) -> None:
    """Build one model in this fresh process and print its figures as one JSON line."""
    imports: dict[str, float] = {}
    _timed_import("torch", imports)
    _timed_import("terratorch", imports)
    if job["way"] == OURS:
        builder = getattr(_timed_import("axs_lib.models", imports), job["builder"])
    else:
        from terratorch import registry

        builder = getattr(registry, f"TERRATORCH_{job['registry'].upper()}_REGISTRY")[job["builder"]]
    if job["tiny"]:
        _import_tiny_weights().install_tiny_tokenizer_presets()

    import_peak = _status_kib("VmHWM")
    baseline = _status_kib("VmRSS")
    peak_was_reset = _reset_peak_rss()
    start = time.perf_counter()
    model = builder(**job["kwargs"])
    seconds = time.perf_counter() - start
    load_peak = _status_kib("VmHWM")
    start = time.perf_counter()
    _read_every_weight(model)
    read_seconds = time.perf_counter() - start
    read_peak = _status_kib("VmHWM")
    result = {
        "seconds": seconds,
        "read_seconds": read_seconds,
        "baseline_rss_kib": baseline,
        "peak_rss_kib": max(import_peak, read_peak),
        "load_peak_rss_kib": load_peak if peak_was_reset else None,
        "read_peak_rss_kib": read_peak if peak_was_reset else None,
        "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "imports": imports,
        "parameters": sum(p.numel() for p in model.parameters()),
        "weights_from_file": all(_probe_matches(model, *probe) for probe in job["probes"]),
    }
    print(RESULT_MARKER + json.dumps(result), flush=True)


# ---------------------------------------------------------------------------------------------- orchestration


def child_job(case: Case, way: str, root: Path, tiny: bool) -> dict[str, Any]:
    """What a load process builds: the callable's name, its arguments, the parameters to check."""
    from axs_lib.weights.catalog import KNOWN_MODELS

    published = {name: str(root / name / KNOWN_MODELS[name].filename) for name in case.checkpoints}
    probes = [(probe.parameter, published[name], probe.key) for name, probe in zip(case.checkpoints, case.probes)]
    if way == OURS:
        kwargs = {**case.ours_kwargs, "checkpoint_path": str(root / case.checkpoints[0])}
        return {"way": way, "tiny": tiny, "builder": case.ours_factory, "kwargs": kwargs, "probes": probes}
    kwargs = {"pretrained": True, "ckpt_path": published[case.checkpoints[0]], **case.stock_kwargs}
    if tiny and case.stock_builder.startswith("prithvi_"):
        kwargs.update(_import_tiny_weights().tiny_prithvi(case.stock_builder))
    builder = case.stock_builder_tiny if tiny else case.stock_builder
    return {"way": way, "tiny": tiny, "registry": case.stock_registry, "builder": builder, "kwargs": kwargs,
            "probes": probes}


def child_environment(hub_cache: Path) -> dict[str, str]:
    environment = dict(os.environ, HF_HUB_CACHE=str(hub_cache), HF_HUB_OFFLINE="1")
    environment.pop("AXS_WEIGHTS_DIR", None)
    return environment


def run_load(case: Case, way: str, round_index: int, job: dict[str, Any], environment: dict[str, str]) -> LoadRun:
    """Run one load in a fresh process and collect its JSON line."""
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--_child", json.dumps(job)],
        cwd=REPO_ROOT, env=environment, capture_output=True, text=True,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_MARKER)]
    run = LoadRun(case.name, way, round_index)
    if completed.returncode != 0 or not lines:
        run.error = f"exit code {completed.returncode}: {completed.stderr[-2000:]}"
        print(f"  {case.name} {way} round {round_index}: FAILED\n{run.error}", flush=True)
        return run
    for key, value in json.loads(lines[-1].removeprefix(RESULT_MARKER)).items():
        setattr(run, key, value)
    print(f"  {case.name} {way} round {round_index}: {run.seconds:.2f} s, peak RSS {_size(run.peak_rss_kib * 1024)}",
          flush=True)
    return run


def evict_from_page_cache(folder: Path) -> None:
    """Drop a folder's files from the page cache (``posix_fadvise`` DONTNEED, no root needed)."""
    for path in folder.iterdir():
        if path.is_file():
            descriptor = os.open(path, os.O_RDONLY)
            try:
                os.fsync(descriptor)
                os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(descriptor)


def run_loads(
    cases: list[Case], rounds: int, root: Path, hub_cache: Path, tiny: bool, cold: bool
) -> tuple[list[LoadRun], list[str]]:
    """Every case, ``rounds`` times, stock then ours; returns the runs and the notes on what was skipped.

    With ``cold``, the case's checkpoint folders are dropped from the page cache before each load.
    """
    environment = child_environment(hub_cache)
    runs, skipped = [], []
    for case in cases:
        ways = [STOCK, OURS]
        if tiny and case.name == "terramind_generator":
            ways = [OURS]
            skipped.append(TINY_STOCK_GENERATOR_SKIPPED)
        for round_index in range(1, rounds + 1):
            for way in ways:
                if cold:
                    for name in case.checkpoints:
                        evict_from_page_cache(root / name)
                runs.append(run_load(case, way, round_index, child_job(case, way, root, tiny), environment))
    return runs, skipped


def needed_checkpoints(cases: list[Case]) -> list[str]:
    return list(dict.fromkeys(name for case in cases for name in case.checkpoints))


def bytes_ours_reads(case: Case, root: Path) -> int:
    """Size of the files our factory picks for ``case`` (the ``model.safetensors`` conversions)."""
    from axs_lib.models import KNOWN_MODELS, find_checkpoint

    return sum(find_checkpoint(KNOWN_MODELS[name], root / name).size_bytes for name in case.checkpoints)


# ---------------------------------------------------------------------------------------------- report


def _size(size_bytes: float) -> str:
    if size_bytes >= 2**30:
        return f"{size_bytes / 2**30:.2f} GiB"
    return f"{size_bytes / 2**20:.1f} MiB"


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _growth_bytes(run: LoadRun, peak_kib: int | None) -> int:
    """RSS above the baseline at ``peak_kib`` (the process peak where the peak could not be restarted)."""
    return ((peak_kib or run.peak_rss_kib) - run.baseline_rss_kib) * 1024


def _summarize_way(runs: list[LoadRun]) -> dict[str, Any]:
    done = [run for run in runs if run.error is None]
    return {
        "runs": len(done),
        "failed": len(runs) - len(done),
        "median_seconds": _median([run.seconds for run in done]),
        "median_seconds_with_read": _median([run.seconds + run.read_seconds for run in done]),
        "max_peak_rss_bytes": max((run.peak_rss_kib * 1024 for run in done), default=None),
        "max_load_growth_bytes": max((_growth_bytes(run, run.load_peak_rss_kib) for run in done), default=None),
        "max_read_growth_bytes": max((_growth_bytes(run, run.read_peak_rss_kib) for run in done), default=None),
        "weights_from_file": all(run.weights_from_file for run in done) if done else None,
        "parameters": done[0].parameters if done else None,
    }


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def summarize(case: Case, runs: list[LoadRun], checkpoint_bytes: int) -> dict[str, Any]:
    """Medians of seconds, maxima of RSS, speed-ups, and ours' RSS growth per checkpoint byte, for one case."""
    stock = _summarize_way([run for run in runs if run.case == case.name and run.way == STOCK])
    ours = _summarize_way([run for run in runs if run.case == case.name and run.way == OURS])
    return {
        "case": case.name,
        "checkpoint_bytes": checkpoint_bytes,
        STOCK: stock,
        OURS: ours,
        "speed_up": _ratio(stock["median_seconds"], ours["median_seconds"]),
        "speed_up_with_read": _ratio(stock["median_seconds_with_read"], ours["median_seconds_with_read"]),
        "ours_load_growth_per_checkpoint_byte": _ratio(ours["max_load_growth_bytes"], checkpoint_bytes),
        "ours_read_growth_per_checkpoint_byte": _ratio(ours["max_read_growth_bytes"], checkpoint_bytes),
    }


def _cell(way: dict[str, Any], key: str, format_value: Callable[[float], str]) -> str:
    if way["runs"] == 0:
        return "failed" if way["failed"] else "skipped"
    return format_value(way[key])


def _millions(count: int) -> str:
    return f"{count / 1e6:.1f} M"


def _seconds(value: float) -> str:
    return f"{value:.2f}"


def _times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}×"


def _rss_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}" + ("" if value <= RSS_TARGET else " (over)")


def _yes_no(value: bool | None) -> str:
    return {True: "yes", False: "NO", None: "-"}[value]


def load_table(summaries: list[dict[str, Any]]) -> str:
    header = (
        "| model | checkpoint ours reads | stock s | ours s | speed-up (stock ÷ ours) "
        "| stock s + first read of all weights | ours s + first read | speed-up incl. first read "
        "| stock peak RSS | ours peak RSS "
        f"| ours RSS growth ÷ checkpoint: load / + first read (target ≤ {RSS_TARGET}) | weights from file: stock / ours |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = []
    for summary in summaries:
        stock, ours = summary[STOCK], summary[OURS]
        rows.append(
            f"| {summary['case']} | {_size(summary['checkpoint_bytes'])} "
            f"| {_cell(stock, 'median_seconds', _seconds)} | {_cell(ours, 'median_seconds', _seconds)} "
            f"| {_times(summary['speed_up'])} "
            f"| {_cell(stock, 'median_seconds_with_read', _seconds)} | {_cell(ours, 'median_seconds_with_read', _seconds)} "
            f"| {_times(summary['speed_up_with_read'])} "
            f"| {_cell(stock, 'max_peak_rss_bytes', _size)} | {_cell(ours, 'max_peak_rss_bytes', _size)} "
            f"| {_rss_ratio(summary['ours_load_growth_per_checkpoint_byte'])} "
            f"/ {_rss_ratio(summary['ours_read_growth_per_checkpoint_byte'])} "
            f"| {_yes_no(stock['weights_from_file'])} / {_yes_no(ours['weights_from_file'])} |"
        )
    return "\n".join([header, *rows])


def import_table(runs: list[LoadRun]) -> str:
    rows = ["| import (in a fresh load process, after the rows above it) | median s | processes |", "|---|---|---|"]
    for module in ("torch", "terratorch", "axs_lib.models"):
        seconds = [run.imports[module] for run in runs if module in run.imports]
        if seconds:
            rows.append(f"| `import {module}` | {statistics.median(seconds):.2f} | {len(seconds)} |")
    return "\n".join(rows)


def checkpoint_table(written: list[WrittenCheckpoint]) -> str:
    rows = ["| checkpoint | .pt size | write s (build on meta, random fill, torch.save) | model.safetensors | convert s |",
            "|---|---|---|---|---|"]
    for entry in written:
        rows.append(f"| {Path(entry.pt_path).name} | {_size(entry.pt_bytes)} | {entry.write_seconds:.1f} "
                    f"| {_size(entry.safetensors_bytes)} | {entry.convert_seconds:.1f} |")
    return "\n".join(rows)


def report(summaries: list[dict[str, Any]], runs: list[LoadRun], written: list[WrittenCheckpoint], skipped: list[str],
           tiny: bool, rounds: int, cold: bool) -> str:
    size = "tiny (axs_lib/demo/tiny_weights.py)" if tiny else "full size"
    cache = "checkpoints evicted from the page cache before each load" if cold else "page cache warm"
    notes = [f"- {note}" for note in skipped]
    if tiny:
        notes.append(f"- {TINY_RSS_NOTE}")
    notes += [
        f"- {summary['case']} {way}: the built model's parameters differ from the checkpoint file: the load left "
        "them at their random init"
        for summary in summaries for way in (STOCK, OURS) if summary[way]["weights_from_file"] is False
    ]
    notes += [
        f"- {summary['case']}: the stock model has {_millions(summary[STOCK]['parameters'])} parameters, ours "
        f"{_millions(summary[OURS]['parameters'])} (a parameter shared by two modules counts once)"
        for summary in summaries
        if None not in (summary[STOCK]["parameters"], summary[OURS]["parameters"])
        and summary[STOCK]["parameters"] != summary[OURS]["parameters"]
    ]
    parts = [
        f"## Load: TerraTorch stock vs axs_lib ({size}, {cache}, {rounds} round(s); median seconds, "
        "peak RSS = max over rounds)",
        load_table(summaries),
        *(["", *notes] if notes else []),
        "",
        "## Imports",
        import_table(runs),
        "",
        "## Checkpoints written",
        checkpoint_table(written),
    ]
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------- main


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="loads per model and way (default 3)")
    parser.add_argument("--models", nargs="+", choices=[*CASES, "size-classes"], default=list(DEFAULT_CASES),
                        help="models to load (default: %(default)s; size-classes: one per size class of each family)")
    parser.add_argument("--workdir", type=Path, help="where checkpoints are written (default: a new temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the written checkpoints")
    parser.add_argument("--json", type=Path, help="write every raw figure to this file")
    parser.add_argument("--tiny", action="store_true", help="toy architectures from axs_lib/demo/tiny_weights.py")
    parser.add_argument("--cold", action="store_true", help="drop the checkpoints from the page cache before each load")
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.rounds < 1:
        parser.error("--rounds must be at least 1")
    return arguments


def check_free_space(root: Path) -> None:
    free = shutil.disk_usage(root).free
    if free < FULL_SIZE_FREE_BYTES:
        raise SystemExit(f"{root} has {_size(free)} free; full-size checkpoints need {_size(FULL_SIZE_FREE_BYTES)}. "
                         "Pass --workdir on a larger disk, or --tiny.")


def remove_written(root: Path, models: list[str], created_root: bool) -> None:
    """Delete what this run wrote: the model folders and the fake hub cache (and ``root`` if this run made it)."""
    for folder in [*(root / model for model in models), root / HUB_CACHE_FOLDER]:
        shutil.rmtree(folder, ignore_errors=True)
    if created_root and not any(root.iterdir()):
        root.rmdir()


def benchmark(arguments: argparse.Namespace) -> int:
    names = [name for given in arguments.models for name in (SIZE_CLASS_CASES if given == "size-classes" else (given,))]
    cases = [CASES[name] for name in dict.fromkeys(names)]
    models = needed_checkpoints(cases)
    created_root = arguments.workdir is None or not arguments.workdir.exists()
    root = (arguments.workdir or Path(tempfile.mkdtemp(prefix="axs-bench-"))).resolve()
    root.mkdir(parents=True, exist_ok=True)
    if not arguments.tiny:
        check_free_space(root)
    started = time.perf_counter()
    try:
        written = write_checkpoints(root, models, arguments.tiny)
        hub_cache = root / HUB_CACHE_FOLDER
        if TOKENIZER_S2L2A in models:
            tokenizer = next(Path(entry.pt_path) for entry in written if entry.model == TOKENIZER_S2L2A)
            hub_cache = make_fake_hub_cache(root, tokenizer)
            verify_fake_hub_cache(hub_cache, tokenizer)
        runs, skipped = run_loads(cases, arguments.rounds, root, hub_cache, arguments.tiny, arguments.cold)
        summaries = [summarize(case, runs, bytes_ours_reads(case, root)) for case in cases]
    finally:
        if not arguments.keep:
            remove_written(root, models, created_root)
    print()
    print(report(summaries, runs, written, skipped, arguments.tiny, arguments.rounds, arguments.cold))
    print(f"\ntotal {time.perf_counter() - started:.0f} s; work folder {root}{'' if arguments.keep else ' (removed)'}")
    if arguments.json:
        arguments.json.parent.mkdir(parents=True, exist_ok=True)
        raw = {
            "mode": "tiny" if arguments.tiny else "full",
            "rounds": arguments.rounds,
            "cold": arguments.cold,
            "workdir": str(root),
            "python": sys.version,
            "checkpoints": [asdict(entry) for entry in written],
            "runs": [asdict(run) for run in runs],
            "summaries": summaries,
            "skipped": skipped,
        }
        arguments.json.write_text(json.dumps(raw, indent=2))
        print(f"raw figures: {arguments.json}")
    return 1 if any(run.error for run in runs) else 0


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    if arguments._child:
        run_child(json.loads(arguments._child))
        return 0
    return benchmark(arguments)


if __name__ == "__main__":
    sys.exit(main())
