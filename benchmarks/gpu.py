"""GPU benchmark: axs_lib's factories against stock TerraTorch, with random weights of the real shapes.

One part per run, written as JSON (``--json PATH``, else standard output):

- ``generation``: TerraMind 1.0 Large, S1GRD -> S2L2A at 224x224, 6 and 12 diffusion steps:
  ``build_terramind_generator(dtype=...)`` beside TerraTorch's ``terramind_v1_large_generate`` cast with
  ``.to(dtype)`` (which may fail in reduced precision; the row then holds the error).
- ``inference`` and ``training``: Prithvi EO 2.0 600M UperNet segmentation at 384x384, a forward pass, or
  forward, backward and an AdamW step (from batch 2: the UperNet pooling module's BatchNorm cannot train on
  one tile), with LoRA r4/r8 (training also ``freeze_encoder``, ``gradient_checkpointing``, ``low_vram``;
  ``--compile`` adds LoRA r8 with ``compile=True``): ``build_prithvi_600`` beside TerraTorch's
  ``EncoderDecoderFactory`` with the same ``peft_config``.
- ``flops``: the Prithvi encoder's FLOPs per 384x384 tile (``FlopCounterMode`` on ``forward_features``), the
  achieved TFLOP/s of a large matmul, and the encoder's: stock ``PrithviViT`` against
  ``build_prithvi_600_backbone`` in BF16 (``--compile`` adds ``compile=True``) and in FP32 with and without TF32.

Each measurement holds, per batch size of ``--batch-sizes`` (larger ones are skipped after an out-of-memory
error): seconds per call (CUDA events after ``--warmup`` calls, averaged over ``--iters`` calls), tiles per
second, and the peak memory allocated (``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``,
weights included; ``null`` off CUDA). Models are built with ``pretrained=False`` under
``torch.device(--device)``, so TerraTorch's random init runs on the GPU. Run from the repository root:

    python benchmarks/gpu.py --part flops --compile --json flops.json
    python benchmarks/gpu.py --part training --dtypes bf16 --batch-sizes 2,4,8,16 --json training-bf16.json
    python benchmarks/gpu.py --part inference --device cpu --tiny --iters 1   # toy sizes on CPU, seconds

``--tiny`` runs the same code on tiny checkpoints (``axs_lib/demo/tiny_weights.py``, loaded through the real
loading path) at toy sizes: TerraMind at 64x64, Prithvi at 28x28 (2x2 patches), batch sizes 1 and 2, one CPU
thread. The stock models are then their tiny TerraTorch equivalents: Prithvi with the tiny architecture
arguments, and ``terramind_v1_tiny_generate`` built while TerraTorch's tokenizer table points its S2L2A entry
at the tiny tokenizer preset (its full-size tokenizer would take seconds per tile).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from axs_lib.models import build_prithvi_600, build_prithvi_600_backbone, build_terramind_generator  # noqa: E402
from axs_lib.weights.catalog import PRITHVI_600M, TERRAMIND_LARGE  # noqa: E402

PARTS = ("generation", "inference", "training", "flops")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
TIMESTEPS = (6, 12)
S2L2A_TOKENIZER = "TerraMind-1.0-Tokenizer-S2L2A"
S2L2A_TOKEN_KEY = "tok_sen2l2a@224"
PRITHVI_BANDS = 6
REFERENCE_GFLOP_PER_TILE = 1008
"""FLOPs of the 600M encoder's forward on one 384x384 tile (27x27 patches, the border dropped)."""
REFERENCE_STOCK_BF16 = {"tiles_per_s": 445, "tflops": 449, "device": "H100"}
"""The stock encoder's bf16 throughput reported on an H100: what ``compile=True`` aims to beat by 15 %."""


@dataclass(frozen=True)
class Settings:
    """What to run where, derived from the command line."""

    device: torch.device
    tiny: bool
    dtypes: tuple[str, ...]
    iters: int
    warmup: int
    batch_sizes: tuple[int, ...]
    encoder_batch_sizes: tuple[int, ...]
    compile: bool
    terramind_size: int
    prithvi_size: int
    matmul_size: int
    matmul_iters: int

    @property
    def training_batch_sizes(self) -> tuple[int, ...]:
        return tuple(batch for batch in self.batch_sizes if batch > 1) or (2,)


@dataclass
class BatchResult:
    batch: int
    seconds_per_call: float
    peak_memory_bytes: int | None

    @property
    def tiles_per_s(self) -> float:
        return self.batch / self.seconds_per_call


@dataclass
class Measurement:
    """One model and configuration, swept over batch sizes until the first out-of-memory error."""

    batches: list[BatchResult] = field(default_factory=list)
    oom_batch: int | None = None
    """The batch size that ran out of memory (0: building the model did)."""
    error: str | None = None
    """Any other exception, as ``"Type: first line"``; the model failed."""
    info: dict[str, float] = field(default_factory=dict)
    """Per-model figures: trainable parameters, GFLOP per tile, CUDA memory after building."""

    @property
    def smallest(self) -> BatchResult | None:
        return self.batches[0] if self.batches else None

    @property
    def best(self) -> BatchResult | None:
        return max(self.batches, key=lambda result: result.tiles_per_s, default=None)


@dataclass
class Case:
    """A built model: ``call_for(batch)`` makes its inputs and returns one benchmark iteration."""

    call_for: Callable[[int], Callable[[], object]]
    info: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PrithviVariant:
    label: str
    options: dict[str, Any]
    stock_rank: int | None


INFERENCE_VARIANTS = (
    PrithviVariant("LoRA r4", {"lora_r": 4, "lora_alpha": 8}, 4),
    PrithviVariant("LoRA r8", {"lora_r": 8, "lora_alpha": 16}, 8),
)
TRAINING_VARIANTS = (
    *INFERENCE_VARIANTS,
    PrithviVariant("LoRA r4, freeze_encoder", {"lora_r": 4, "lora_alpha": 8, "freeze_encoder": True}, 4),
    PrithviVariant("LoRA r8, freeze_encoder", {"lora_r": 8, "lora_alpha": 16, "freeze_encoder": True}, 8),
    PrithviVariant("LoRA r8, gradient_checkpointing", {"lora_r": 8, "lora_alpha": 16, "gradient_checkpointing": True}, None),
    PrithviVariant("low_vram (LoRA r4, frozen, checkpointing)", {"low_vram": True}, None),
)
COMPILED_VARIANT = PrithviVariant("LoRA r8, compile", {"lora_r": 8, "lora_alpha": 16, "compile": True}, 8)


# ---- timing and memory -------------------------------------------------------------------------------


def seconds_per_call(call: Callable[[], object], settings: Settings, iters: int | None = None) -> float:
    """Mean seconds of ``call`` over ``iters`` calls after ``settings.warmup`` warm-up calls."""
    iters = iters or settings.iters
    for _ in range(settings.warmup):
        call()
    if settings.device.type != "cuda":
        start = time.perf_counter()
        for _ in range(iters):
            call()
        return (time.perf_counter() - start) / iters
    torch.cuda.synchronize(settings.device)
    start_event, end_event = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start_event.record()
    for _ in range(iters):
        call()
    end_event.record()
    end_event.synchronize()
    return start_event.elapsed_time(end_event) / 1000 / iters


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> int | None:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def release_memory(device: torch.device) -> None:
    """Return freed CUDA memory to the driver so the next measurement starts clean (no-op elsewhere)."""
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()


def describe(error: BaseException) -> str:
    message = str(error).strip().splitlines()
    return f"{type(error).__name__}: {message[0][:300]}" if message else type(error).__name__


def run_batch(case: Case, batch: int, settings: Settings) -> BatchResult:
    call = case.call_for(batch)
    reset_peak_memory(settings.device)
    seconds = seconds_per_call(call, settings)
    return BatchResult(batch, seconds, peak_memory(settings.device))


def measure(build: Callable[[], Case], batch_sizes: Sequence[int], settings: Settings) -> Measurement:
    """Build on the device, then time each batch size in turn; errors are recorded, never raised."""
    measurement = Measurement()
    try:
        sweep(build, batch_sizes, settings, measurement)
    except torch.OutOfMemoryError:
        measurement.oom_batch = 0
    except Exception as error:  # noqa: BLE001 - a failing model is a result to report, not a crash
        measurement.error = describe(error)
    release_memory(settings.device)  # the model is gone with sweep's frame; nothing leaks into the next peak
    return measurement


def sweep(build: Callable[[], Case], batch_sizes: Sequence[int], settings: Settings, measurement: Measurement) -> None:
    with torch.device(settings.device):
        case = build()
    measurement.info = dict(case.info)
    if settings.device.type == "cuda":
        measurement.info["memory_after_build_bytes"] = torch.cuda.memory_allocated(settings.device)
    for batch in batch_sizes:
        try:
            measurement.batches.append(run_batch(case, batch, settings))
        except torch.OutOfMemoryError:
            measurement.oom_batch = batch
            return
        finally:
            release_memory(settings.device)


def progress(message: str) -> None:
    print(f"[gpu.py] {message}", file=sys.stderr, flush=True)


# ---- part 1: TerraMind generation ----------------------------------------------------------------------


def sar_images(batch: int, settings: Settings) -> torch.Tensor:
    """Sentinel-1 GRD backscatter in dB, roughly as observed."""
    size = settings.terramind_size
    return torch.randn(batch, 2, size, size, device=settings.device) * 5 - 15


@torch.no_grad()
def generate(model: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    return model({"S1GRD": images})


def ours_generator(settings: Settings, dtype: torch.dtype, timesteps: int) -> Case:
    model = build_terramind_generator(
        ("S1GRD",), ("S2L2A",), timesteps=timesteps, pretrained=settings.tiny, device=settings.device, dtype=dtype
    )
    return Case(lambda batch: partial(generate, model, sar_images(batch, settings)))


def stock_generator(settings: Settings, dtype: torch.dtype, timesteps: int) -> Case:
    from terratorch.registry import TERRATORCH_FULL_MODEL_REGISTRY

    name = "terramind_v1_tiny_generate" if settings.tiny else "terramind_v1_large_generate"
    with stock_tiny_tokenizer() if settings.tiny else nullcontext():
        model = TERRATORCH_FULL_MODEL_REGISTRY[name](
            pretrained=False, modalities=["S1GRD"], output_modalities=["S2L2A"], timesteps=timesteps
        )
    model = model.to(dtype).to(settings.device).eval()  # TerraMindGeneration.to takes one argument
    return Case(lambda batch: partial(generate, model, sar_images(batch, settings).to(dtype)))


@contextmanager
def stock_tiny_tokenizer() -> Iterator[None]:
    """TerraTorch's generators build tokenizers from a fixed table; point its S2L2A entry at the tiny preset."""
    from terratorch.models.backbones.terramind.model import terramind_register
    from axs_lib.demo.tiny_weights import TINY_DECODER, TINY_ENCODER

    table = terramind_register.tokenizer_dict["v1"]
    tiny = partial(table[S2L2A_TOKEN_KEY], enc_type=TINY_ENCODER, dec_type=TINY_DECODER)
    with mock.patch.dict(table, {S2L2A_TOKEN_KEY: tiny}):
        yield


def run_generation(settings: Settings) -> list[dict[str, Any]]:
    rows = []
    for dtype_name in settings.dtypes:
        dtype = DTYPES[dtype_name]
        for timesteps in TIMESTEPS:
            row: dict[str, Any] = {"dtype": dtype_name, "timesteps": timesteps}
            for impl, build in (("ours", ours_generator), ("stock", stock_generator)):
                progress(f"generation {impl} {dtype_name} timesteps={timesteps}")
                row[impl] = measure(partial(build, settings, dtype, timesteps), settings.batch_sizes, settings)
            rows.append(row)
    return rows


# ---- part 2: Prithvi segmentation ----------------------------------------------------------------------


def prithvi_images(batch: int, settings: Settings, dtype: torch.dtype) -> torch.Tensor:
    size = settings.prithvi_size
    return torch.randn(batch, PRITHVI_BANDS, size, size, device=settings.device, dtype=dtype)


def tiny_prithvi_arguments(settings: Settings, prefix: str = "") -> dict[str, Any]:
    if not settings.tiny:
        return {}
    from axs_lib.demo.tiny_weights import TINY_PRITHVI

    return {f"{prefix}{key}": value for key, value in TINY_PRITHVI.items()}


def stock_segmentation(settings: Settings, dtype: torch.dtype, rank: int) -> tuple[nn.Module, Callable]:
    from terratorch.models.encoder_decoder_factory import EncoderDecoderFactory

    tiny = tiny_prithvi_arguments(settings, prefix="backbone_")
    depth = tiny.get("backbone_depth", 32)
    model = EncoderDecoderFactory().build_model(
        task="segmentation",
        backbone="prithvi_eo_v2_600",
        backbone_pretrained=False,
        backbone_img_size=settings.prithvi_size,
        **tiny,
        necks=[
            {"name": "SelectIndices", "indices": [depth // 4 - 1, depth // 2 - 1, 3 * depth // 4 - 1, depth - 1]},
            {"name": "ReshapeTokensToImage"},
            {"name": "LearnedInterpolateToPyramidal"},
        ],
        decoder="UperNetDecoder",
        num_classes=1,
        peft_config={
            "method": "LORA",
            "replace_qkv": "qkv",
            "peft_config_kwargs": {"r": rank, "lora_alpha": 2 * rank, "target_modules": ["q_linear", "v_linear"]},
        },
    )
    model = model.to(device=settings.device, dtype=dtype)
    return model, lambda images: model(images).output


def ours_segmentation(settings: Settings, dtype: torch.dtype, variant: PrithviVariant) -> tuple[nn.Module, Callable]:
    model = build_prithvi_600(
        pretrained=settings.tiny, img_size=settings.prithvi_size, device=settings.device, dtype=dtype, **variant.options
    )
    return model, model


def ours_segmentation_case(settings: Settings, dtype: torch.dtype, variant: PrithviVariant, training: bool) -> Case:
    return segmentation_case(ours_segmentation(settings, dtype, variant), settings, dtype, training)


def stock_segmentation_case(settings: Settings, dtype: torch.dtype, rank: int, training: bool) -> Case:
    return segmentation_case(stock_segmentation(settings, dtype, rank), settings, dtype, training)


@torch.no_grad()
def infer(forward: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    return forward(images)


def train_step(forward: Callable[[torch.Tensor], torch.Tensor], optimizer: torch.optim.Optimizer, images: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss = forward(images).float().square().mean()
    loss.backward()
    optimizer.step()


def segmentation_case(
    built: tuple[nn.Module, Callable], settings: Settings, dtype: torch.dtype, training: bool
) -> Case:
    model, forward = built
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    model.train(training)
    if training:
        step = partial(train_step, forward, torch.optim.AdamW(trainable, lr=1e-4))
    else:
        step = partial(infer, forward)
    return Case(
        lambda batch: partial(step, prithvi_images(batch, settings, dtype)),
        info={"trainable_params": sum(parameter.numel() for parameter in trainable)},
    )


def run_prithvi(settings: Settings, training: bool) -> list[dict[str, Any]]:
    rows = []
    stock_results: dict[tuple[str, int], Measurement] = {}
    compiled = (COMPILED_VARIANT,) if settings.compile else ()
    variants = (TRAINING_VARIANTS if training else INFERENCE_VARIANTS) + compiled
    batch_sizes = settings.training_batch_sizes if training else settings.batch_sizes
    for dtype_name in settings.dtypes:
        dtype = DTYPES[dtype_name]
        for variant in variants:
            progress(f"ours {dtype_name} {variant.label}")
            ours = measure(partial(ours_segmentation_case, settings, dtype, variant, training), batch_sizes, settings)
            stock = None
            if variant.stock_rank is not None:
                key = (dtype_name, variant.stock_rank)
                if key not in stock_results:
                    progress(f"stock {dtype_name} LoRA r{variant.stock_rank}")
                    stock_results[key] = measure(
                        partial(stock_segmentation_case, settings, dtype, variant.stock_rank, training), batch_sizes, settings
                    )
                stock = stock_results[key]
            rows.append({"dtype": dtype_name, "variant": variant.label, "ours": ours, "stock": stock})
    return rows


# ---- part 3: encoder FLOPs and achieved throughput ------------------------------------------------------


@dataclass(frozen=True)
class EncoderRun:
    encoder: str
    dtype: str
    tf32: bool | None = None
    compiled: bool = False

    @property
    def peak_key(self) -> str:
        return "fp32+tf32" if self.tf32 else self.dtype


@contextmanager
def tf32(enabled: bool | None) -> Iterator[None]:
    """TF32 for CUDA matmuls and cuDNN convolutions on or off (``None``: leave PyTorch's defaults)."""
    if enabled is None:
        yield
        return
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    previous = matmul.fp32_precision, conv.fp32_precision
    matmul.fp32_precision = conv.fp32_precision = "tf32" if enabled else "ieee"
    try:
        yield
    finally:
        matmul.fp32_precision, conv.fp32_precision = previous


def matmul_tflops(settings: Settings, dtype: torch.dtype, allow_tf32: bool | None) -> float:
    """Achieved TFLOP/s of one square matmul of ``settings.matmul_size``."""
    size = settings.matmul_size
    left, right = (torch.randn(size, size, device=settings.device, dtype=dtype) for _ in range(2))
    with tf32(allow_tf32):
        seconds = seconds_per_call(lambda: torch.mm(left, right), settings, settings.matmul_iters)
    return 2 * size**3 / seconds / 1e12


def build_encoder(settings: Settings, run: EncoderRun) -> nn.Module:
    dtype = DTYPES[run.dtype]
    if run.encoder == "ours":
        model = build_prithvi_600_backbone(
            pretrained=settings.tiny, img_size=settings.prithvi_size, device=settings.device, dtype=dtype,
            compile=run.compiled,
        )
    else:
        from terratorch.registry import TERRATORCH_BACKBONE_REGISTRY

        model = TERRATORCH_BACKBONE_REGISTRY["prithvi_eo_v2_600"](
            pretrained=False, img_size=settings.prithvi_size, num_frames=1, **tiny_prithvi_arguments(settings)
        ).to(device=settings.device, dtype=dtype)
    return model.eval()


def gflop_per_tile(forward: Callable[[torch.Tensor], object], image: torch.Tensor) -> float:
    """FLOPs of one forward on one tile; attention runs as its math kernel so every device counts it."""
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        forward(image)
    return counter.get_total_flops() / 1e9


def encoder_case(settings: Settings, run: EncoderRun) -> Case:
    model = build_encoder(settings, run)
    dtype = DTYPES[run.dtype]
    gflop = gflop_per_tile(model.forward_features, prithvi_images(1, settings, dtype))
    return Case(
        lambda batch: partial(infer, model.forward_features, prithvi_images(batch, settings, dtype)),
        {"gflop_per_tile": gflop},
    )


def encoder_runs(settings: Settings) -> list[EncoderRun]:
    runs = [EncoderRun("stock", "bf16"), EncoderRun("ours", "bf16")]
    if settings.compile:
        runs.append(EncoderRun("ours", "bf16", compiled=True))
    runs += [EncoderRun(encoder, "fp32", tf32=enabled) for enabled in (False, True) for encoder in ("stock", "ours")]
    return runs


def run_flops(settings: Settings) -> dict[str, Any]:
    progress("flops: matmul peaks")
    peaks = {
        "bf16": matmul_tflops(settings, torch.bfloat16, None),
        "fp32": matmul_tflops(settings, torch.float32, False),
        "fp32+tf32": matmul_tflops(settings, torch.float32, True),
    }
    rows = []
    for run in encoder_runs(settings):
        progress(f"flops: {run}")
        with tf32(run.tf32):
            measurement = measure(partial(encoder_case, settings, run), settings.encoder_batch_sizes, settings)
        gflop, best = measurement.info.get("gflop_per_tile"), measurement.best
        achieved = gflop * best.tiles_per_s / 1000 if best and gflop else None
        rows.append(
            {
                "run": asdict(run),
                "gflop_per_tile": gflop,
                "tflops": achieved,
                "peak": run.peak_key,
                "fraction_of_peak": achieved / peaks[run.peak_key] if achieved else None,
                "measurement": measurement,
            }
        )
    reference = {"gflop_per_tile_384": REFERENCE_GFLOP_PER_TILE, "stock_bf16": REFERENCE_STOCK_BF16}
    return {"matmul_size": settings.matmul_size, "matmul_tflops": peaks, "encoders": rows, "reference": reference}


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "(not installed)"


def environment(settings: Settings) -> dict[str, str]:
    if settings.device.type == "cuda":
        device_name = torch.cuda.get_device_name(settings.device)
    else:
        device_name = platform.processor() or platform.machine()
    return {
        "device": f"{device_name} ({settings.device})",
        "torch": torch.__version__,
        "terratorch": package_version("terratorch"),
        "axs_lib": package_version("axs_lib"),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


# ---- command line ---------------------------------------------------------------------------------------


@contextmanager
def tiny_checkpoints(enabled: bool) -> Iterator[None]:
    """Write the test suite's tiny checkpoints to a temporary ``AXS_WEIGHTS_DIR`` for the run."""
    if not enabled:
        yield
        return
    from axs_lib.demo.tiny_weights import install_tiny_tokenizer_presets, write_tiny_weights

    install_tiny_tokenizer_presets()
    with tempfile.TemporaryDirectory(prefix="axs-gpu-bench-") as root:
        write_tiny_weights(Path(root), names=[TERRAMIND_LARGE, S2L2A_TOKENIZER, PRITHVI_600M])
        with mock.patch.dict(os.environ, {"AXS_WEIGHTS_DIR": root}):
            yield


def batch_list(text: str) -> tuple[int, ...]:
    sizes = tuple(int(part) for part in text.split(",") if part.strip())
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive batch sizes, got {text!r}")
    return tuple(sorted(set(sizes)))


def dtype_list(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(set(names) - set(DTYPES))
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"expected comma-separated dtypes among {', '.join(DTYPES)}, got {text!r}")
    return tuple(name for name in DTYPES if name in names)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="torch device (default: cuda)")
    parser.add_argument(
        "--tiny", action="store_true", help="tiny checkpoints, toy sizes and one CPU thread (for CPU smoke runs)"
    )
    parser.add_argument("--part", required=True, choices=PARTS, help="what to measure in this run")
    parser.add_argument("--iters", type=int, default=10, help="timed calls per measurement (default 10)")
    parser.add_argument("--warmup", type=int, help="warm-up calls per measurement (default 3, tiny 1)")
    parser.add_argument("--batch-sizes", type=batch_list, help="default 1,2,4,8 (tiny 1,2)")
    parser.add_argument("--encoder-batch-sizes", type=batch_list, help="flops part, default 8,16,32 (tiny 1,2)")
    parser.add_argument("--dtypes", type=dtype_list, default=tuple(DTYPES), help="generation, inference and training parts (default fp32,fp16,bf16)")
    parser.add_argument("--compile", action="store_true", help="also time axs_lib's models built with compile=True")
    parser.add_argument("--json", type=Path, help="write the results here (default: standard output)")
    arguments = parser.parse_args(argv)
    if arguments.iters < 1:
        parser.error("--iters must be at least 1")
    return arguments


def settings_from(arguments: argparse.Namespace) -> Settings:
    tiny = arguments.tiny
    return Settings(
        device=torch.device(arguments.device),
        tiny=tiny,
        dtypes=arguments.dtypes,
        iters=arguments.iters,
        warmup=arguments.warmup if arguments.warmup is not None else (1 if tiny else 3),
        batch_sizes=arguments.batch_sizes or ((1, 2) if tiny else (1, 2, 4, 8)),
        encoder_batch_sizes=arguments.encoder_batch_sizes or ((1, 2) if tiny else (8, 16, 32)),
        compile=arguments.compile,
        terramind_size=64 if tiny else 224,
        prithvi_size=28 if tiny else 384,
        matmul_size=256 if tiny else 8192,
        matmul_iters=arguments.iters if tiny else max(arguments.iters, 20),
    )


PART_RUNNERS: dict[str, Callable[[Settings], Any]] = {
    "generation": run_generation,
    "inference": partial(run_prithvi, training=False),
    "training": partial(run_prithvi, training=True),
    "flops": run_flops,
}


def ours_failed(part: str, results: Any) -> list[str]:
    if part == "flops":
        return [row["measurement"].error for row in results["encoders"] if row["run"]["encoder"] == "ours" and row["measurement"].error]
    return [row["ours"].error for row in results if row["ours"].error]


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    settings = settings_from(arguments)
    if settings.device.type == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available here; use --device cpu --tiny for a smoke run.", file=sys.stderr)
        return 2
    if settings.tiny:
        torch.set_num_threads(1)  # toy sizes gain nothing from threads, and threads on a busy CPU stall
    torch.manual_seed(0)
    with tiny_checkpoints(settings.tiny):
        results = PART_RUNNERS[arguments.part](settings)
    record = {
        "part": arguments.part,
        "environment": environment(settings),
        "settings": {**asdict(settings), "device": str(settings.device)},
        "results": results,
    }
    text = json.dumps(record, indent=2, default=json_default)
    if arguments.json:
        partial_file = arguments.json.with_name(arguments.json.name + ".partial")
        partial_file.write_text(text)
        os.replace(partial_file, arguments.json)
    else:
        print(text)
    failures = ours_failed(arguments.part, results)
    for failure in failures:
        print(f"axs_lib failed: {failure}", file=sys.stderr)
    return 1 if failures else 0


def json_default(value: object) -> object:
    if isinstance(value, BatchResult):
        return {**asdict(value), "tiles_per_s": value.tiles_per_s}
    if isinstance(value, Measurement):
        return {
            "batches": value.batches, "oom_batch": value.oom_batch, "error": value.error, "info": value.info,
            "smallest": value.smallest, "best": value.best,
        }
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


if __name__ == "__main__":
    sys.exit(main())
