"""Public factories for TerraMind 1.0: any-to-any generation and feature extraction."""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from functools import partial

import torch
from torch import nn

from . import _validation
from ._terratorch import registry, terratorch_module
from .architecture import builder_arguments, builder_name
from ..weights.catalog import (
    KNOWN_MODELS,
    TERRAMIND_MODALITIES,
    TERRAMIND_PATCH_SIZE,
    TERRAMIND_SIZES,
    ModelSpec,
    terramind_model,
)
from ..weights.discovery import CheckpointFile, find_checkpoint
from ..errors import InvalidArgumentError
from .loading import CheckpointPart, StateDict, build_and_load, place

logger = logging.getLogger(__name__)

TIMESTEPS_RANGE = (1, 1000)
"""Diffusion steps of the tokenizer decoder: TerraTorch's DDIM scheduler takes at most the 1000 steps the decoders
were trained with (``num_train_timesteps``); 50 is TerraTorch's default, 6 the low-memory setting."""

SIZES = TERRAMIND_SIZES
"""The TerraMind 1.0 sizes every factory builds (``size=``); ``"large"`` by default."""

GENERATOR_INPUTS = tuple(TERRAMIND_MODALITIES)
GENERATOR_OUTPUTS = tuple(name for name, modality in TERRAMIND_MODALITIES.items() if modality.generatable)
BACKBONE_MODALITIES = tuple(TERRAMIND_MODALITIES)
"""Raw image modalities, and the tokenized ones (LULC, NDVI), whose tokenizer then encodes the input."""
TIM_MODALITIES = GENERATOR_OUTPUTS
MERGE_METHODS = ("mean", "max", "concat", "dict", None)
"""TerraTorch's ways to merge the modalities' tokens in the backbone output (``None`` keeps them concatenated)."""

REFUSED_MODALITIES = {
    "coords": "its tokenizer needs a vocabulary file from ibm-esa-geospatial/TerraMind-1.0-Tokenizer-Coords that "
    "TerraTorch only downloads from the Hub, and this library loads models offline",
    "caption": "TerraMind 1.0 has no caption tokenizer (TerraTorch's v1 tokenizer table has none)",
}
"""Modalities TerraTorch names that these factories refuse, and why."""


class TerraMindGenerator(nn.Module):
    """TerraTorch's ``TerraMindGeneration`` with checked inputs and reduced-precision support.

    Call it with ``{"S1GRD": tensor[B, 2, H, W]}``; it returns ``{"S2L2A": tensor[B, 12, H, W]}`` in float32.
    When the weights are float16/bfloat16 the forward pass runs under ``torch.autocast`` in that dtype.

    Attributes:
        model: the TerraTorch ``TerraMindGeneration`` module.
        input_modalities, output_modalities: as built.
    """

    def __init__(self, model: nn.Module, input_modalities: Sequence[str], output_modalities: Sequence[str]):
        super().__init__()
        for module in model.modules():
            if isinstance(module, nn.GroupNorm):
                module.float()  # the tokenizers' UNet normalises in float32 (TerraTorch's GroupNorm32)
        self.model = model
        self.input_modalities = tuple(input_modalities)
        self.output_modalities = tuple(output_modalities)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.sampler.parameters()).dtype

    def forward(self, inputs: Mapping[str, torch.Tensor], timesteps: int | None = None) -> dict[str, torch.Tensor]:
        """Generate the output modalities from ``inputs`` (any non-empty subset of the input modalities).

        Args:
            timesteps: diffusion steps for this call, within ``TIMESTEPS_RANGE`` (default: as built).
        """
        self._check(inputs)
        if timesteps is not None:
            timesteps = _checked_timesteps(timesteps)
        dtype, device = self.dtype, next(self.model.sampler.parameters()).device
        batch = {name: tensor.to(device=device, dtype=dtype) for name, tensor in inputs.items()}
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            outputs = self.model(batch, timesteps=timesteps)
        return {name: tensor.float() for name, tensor in outputs.items()}

    def _check(self, inputs: Mapping[str, torch.Tensor]) -> None:
        if not isinstance(inputs, Mapping) or not inputs:
            raise InvalidArgumentError(
                f"pass a dict of input images, e.g. {{'{self.input_modalities[0]}': tensor[B, C, H, W]}}"
            )
        for name, tensor in inputs.items():
            if name not in self.input_modalities:
                raise InvalidArgumentError(
                    f"unexpected input modality {name!r}; this generator was built for {', '.join(self.input_modalities)}"
                )
            check_image(name, tensor)
            shape = list(tensor.shape)
            if shape[-1] % TERRAMIND_PATCH_SIZE or shape[-2] % TERRAMIND_PATCH_SIZE:
                raise InvalidArgumentError(
                    f"{name} is {shape[-2]}x{shape[-1]} pixels; TerraMind needs multiples of {TERRAMIND_PATCH_SIZE} "
                    "(tile or crop the scene, e.g. to 224x224)"
                )


def check_image(name: str, image: torch.Tensor, bands: Sequence[str] | None = None) -> None:
    """``image`` is ``[B, C, H, W]`` with ``bands`` (default: those TerraMind was pretrained on for ``name``)."""
    bands = TERRAMIND_MODALITIES[name].bands if bands is None else tuple(bands)
    shape = list(image.shape)
    if image.ndim != 4 or (bands and shape[1] != len(bands)):
        expected = f"{len(bands)} bands ({', '.join(bands)}, in this order)" if bands else "its channels"
        raise InvalidArgumentError(f"{name} must have shape [B, {len(bands) or 'C'}, H, W] with {expected}; got {shape}")


def _input_check(bands: Mapping[str, Sequence[str]]):
    """A forward pre-hook refusing images with other bands than the backbone was built for, before TerraTorch
    fails on a matrix product; tokenized and new modalities are left to TerraTorch."""

    def check(backbone: nn.Module, args: tuple, kwargs: dict) -> None:
        images = args[0] if args else None
        named = dict(images) if isinstance(images, Mapping) else {} if images is None else {backbone.modalities[0]: images}
        named.update(kwargs)
        for name, image in named.items():
            if name in bands and isinstance(image, torch.Tensor):
                check_image(name, image, bands[name])

    return check


@_validation.checked_factory(renamed={"variant": "size"})
def build_terramind_generator(
    input_modalities: Sequence[str] = ("S1GRD",),
    output_modalities: Sequence[str] = ("S2L2A",),
    timesteps: int = 12,
    standardize: bool = True,
    pretrained: bool = True,
    checkpoint_path: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
    size: str = "large",
    top_p: float = 0.8,
    top_k: int = 0,
    temps: float = 1.0,
    decoding_steps: int = 1,
) -> TerraMindGenerator:
    """TerraMind 1.0 any-to-any generation, e.g. Sentinel-1 GRD to Sentinel-2 L2A.

    The model is called with ``{"S1GRD": tensor[B, 2, H, W]}`` (H, W multiples of 16) and returns
    ``{"S2L2A": tensor[B, 12, H, W]}`` (see :class:`TerraMindGenerator`). With ``standardize=True`` inputs and outputs are in physical units
    (dB for SAR, reflectance x 10000 for optical) and TerraMind's pretraining statistics are applied inside.

    Args:
        input_modalities: any of ``GENERATOR_INPUTS``.
        output_modalities: any of ``GENERATOR_OUTPUTS``; each needs its tokenizer checkpoint on disk.
        timesteps: diffusion steps of the tokenizer decoder, within ``TIMESTEPS_RANGE`` (fewer is faster).
        standardize: apply the pretraining mean/std to inputs and undo it on outputs.
        pretrained: load TerraMind and the tokenizers from local files; ``False`` gives random weights
            without touching the disk or the network.
        checkpoint_path: TerraMind's file or folder; tokenizers are looked for beside it first.
        device: where the weights are loaded (default CPU).
        dtype: ``torch.float32`` (default: as stored), ``torch.float16``, ``torch.bfloat16`` or a name such
            as ``"bf16"``.
        size: the TerraMind 1.0 size, one of ``SIZES`` (``"tiny"``, ``"small"``, ``"base"``, ``"large"``); the old
            name ``variant=`` is still accepted, with a ``FutureWarning``.
        top_p, top_k: nucleus and top-k sampling of the generated tokens (0 switches either off), as TerraTorch.
        temps: sampling temperature (> 0), one value for every output, as TerraTorch 1.2 applies it.
        decoding_steps: token decoding steps per image output; only TerraTorch's default 1 works (see
            ``_checked_decoding_steps``).

    Raises:
        InvalidArgumentError: unknown or empty modalities, a value out of range.
        CheckpointNotFoundError, CorruptCheckpointError, CheckpointMismatchError: see ``axs_lib.errors``.
    """
    spec = _spec(size)
    inputs = _validation.modality_names(_supported(input_modalities), "input_modalities", GENERATOR_INPUTS)
    outputs = _validation.modality_names(_supported(output_modalities), "output_modalities", GENERATOR_OUTPUTS)
    sampling = {
        "timesteps": _checked_timesteps(timesteps),
        "top_p": _validation.real_number(top_p, "top_p", minimum=0.0, maximum=1.0),
        "top_k": _validation.whole_number(top_k, "top_k", minimum=0),
        "temps": _positive(temps, "temps"),
        "decoding_steps": _checked_decoding_steps(decoding_steps),
    }
    device, dtype = _validation.torch_device(device), _validation.floating_dtype(dtype)
    builders = registry().TERRATORCH_FULL_MODEL_REGISTRY

    def build(variant_builder: str) -> nn.Module:
        return builders[f"{variant_builder}_generate"](
            pretrained=False, modalities=list(inputs), output_modalities=list(outputs), standardize=standardize,
            **sampling,
        )

    if not pretrained:
        with device:
            return TerraMindGenerator(place(build(spec.builder), device, dtype), inputs, outputs).eval()

    checkpoint = find_checkpoint(spec, checkpoint_path)
    tokenized = outputs + tuple(name for name in inputs if TERRAMIND_MODALITIES[name].channels is None)
    tokenizers = _tokenizer_files(tokenized, checkpoint)
    parts = [CheckpointPart(checkpoint.path, _register().checkpoint_filter_fn_generate, spec.family)]
    logger.info("loading TerraMind generator from %s (+ %d tokenizers)", checkpoint.path, len(tokenizers))
    model = build_and_load(
        lambda: _with_tokenizers(lambda: build(builder_name(spec, checkpoint.path)), tokenizers),
        parts + _tokenizer_parts(tokenizers),
        model_name=f"{spec.name} generator",
        device=device,
        dtype=dtype,
    )
    return TerraMindGenerator(model, inputs, outputs).eval()


@_validation.checked_factory(renamed={"variant": "size", "freeze": "freeze_encoder"})
def build_terramind_backbone(
    modalities: Sequence[str | Mapping[str, int]] = ("S1GRD", "S2L2A"),
    pretrained: bool = True,
    freeze_encoder: bool = True,
    checkpoint_path: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
    size: str = "large",
    bands: Mapping[str, Sequence[str]] | None = None,
    merge_method: str | None = "mean",
    img_size: int = 224,
    modality_drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    tim_modalities: Sequence[str] | None = None,
) -> nn.Module:
    """TerraMind 1.0 encoder for feature extraction, or its Thinking-in-Modalities (TiM) form.

    The model is called with ``{"S1GRD": tensor[B, 2, H, W], ...}`` and returns a list with one
    ``[B, tokens, dim]`` tensor per encoder layer (TerraTorch's backbone interface; dim 192 tiny, 384 small,
    768 base, 1024 large). An image with other bands than the model was built for raises
    :class:`InvalidArgumentError` naming them.

    Args:
        modalities: modalities among ``BACKBONE_MODALITIES`` (LULC and NDVI go through their tokenizer, whose
            checkpoint must be on disk), and new ones as ``{"NAME": channels}``: their patch embedding is new,
            randomly initialised, and listed in one INFO log line.
        pretrained: load the local TerraMind checkpoint; ``False`` gives random weights.
        freeze_encoder: no parameter requires grad (old name ``freeze=``, deprecated). Either way the model is
            returned in eval mode; call
            ``model.train()`` before fine-tuning it, in a plain loop and before Lightning's ``fit`` alike.
        checkpoint_path: TerraMind's file or folder, instead of searching the default locations.
        device: where the weights are loaded (default CPU).
        dtype: ``torch.float32`` (default: as stored), ``torch.float16``, ``torch.bfloat16`` or a name such
            as ``"bf16"``; inputs must be given in the same dtype.
        size: the TerraMind 1.0 size, one of ``SIZES`` (old name ``variant=``, deprecated).
        bands: per raw modality, the bands the input has, in order (``{"S2L2A": ["RED", "GREEN", "BLUE"]}``):
            pretrained bands keep their weights, others are new, as TerraTorch's ``bands`` does.
        merge_method: how the modalities' tokens are merged, one of ``MERGE_METHODS`` (``"concat"`` adds a
            new learned token for missing modalities).
        img_size: the image size the position embeddings are built for (other sizes are interpolated).
        modality_drop_rate: probability of dropping input modalities while training (0..1).
        drop_path_rate: stochastic depth rate (0..1).
        tim_modalities: build TerraTorch's TiM backbone, which first generates these modalities (among
            ``TIM_MODALITIES``; their tokenizer checkpoints must be on disk) and encodes them with the inputs.
    """
    spec = _spec(size)
    names, new_modalities = _backbone_modalities(modalities)
    tim = None if tim_modalities is None else _validation.modality_names(tim_modalities, "tim_modalities", TIM_MODALITIES)
    input_bands = _checked_bands(bands, names, tim)
    if merge_method not in MERGE_METHODS:
        raise InvalidArgumentError(f"merge_method must be one of {', '.join(map(repr, MERGE_METHODS))}, got {merge_method!r}.")
    if tim is not None and new_modalities:
        raise InvalidArgumentError(
            f"new modalities ({', '.join(new_modalities)}) cannot be used with tim_modalities: TerraTorch's TiM "
            "generates from pretrained modalities only."
        )
    arguments = {
        "modalities": [*names, *({name: channels} for name, channels in new_modalities.items())],
        "merge_method": merge_method,
        "img_size": _validation.whole_number(img_size, "img_size", minimum=TERRAMIND_PATCH_SIZE),
        "modality_drop_rate": _validation.real_number(modality_drop_rate, "modality_drop_rate", minimum=0.0, maximum=1.0),
        "drop_path_rate": _validation.real_number(drop_path_rate, "drop_path_rate", minimum=0.0, maximum=1.0),
        **({"tim_modalities": list(tim)} if tim is not None else {}),
    }
    device, dtype = _validation.torch_device(device), _validation.floating_dtype(dtype)
    builders = registry().TERRATORCH_BACKBONE_REGISTRY
    suffix = "_tim" if tim is not None else ""

    def build(variant_builder: str) -> nn.Module:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "TerraMind TiM model not pre-trained")  # weights are loaded after
            return builders[variant_builder + suffix](pretrained=False, **arguments)

    if pretrained:
        checkpoint = find_checkpoint(spec, checkpoint_path)
        tokenized = tuple(name for name in (*names, *(tim or ())) if TERRAMIND_MODALITIES[name].channels is None)
        tokenizers = _tokenizer_files(tokenized, checkpoint)
        register = _register()
        vit_filter = register.checkpoint_filter_fn_tim if tim is not None else register.checkpoint_filter_fn
        new_weights = [f"encoder_embeddings.{name}" for name in new_modalities]
        new_weights += ["missing_mod_token"] if merge_method == "concat" else []
        logger.info("loading TerraMind %sbackbone from %s", "TiM " if tim is not None else "", checkpoint.path)
        model = build_and_load(
            lambda: _with_tokenizers(lambda: build(builder_name(spec, checkpoint.path)), tokenizers),
            [CheckpointPart(checkpoint.path, vit_filter, spec.family), *_tokenizer_parts(tokenizers)],
            model_name=f"{spec.name} {'TiM ' if tim is not None else ''}backbone",
            device=device,
            dtype=dtype,
            new_weights=new_weights,
        )
    else:
        with device:
            model = place(build(spec.builder), device, dtype)
    if bands:
        model = place(_adapt_bands(model, bands), device, dtype)
    model.register_forward_pre_hook(_input_check(input_bands), with_kwargs=True)
    if freeze_encoder:
        model.requires_grad_(False)
    return model.eval()


def _spec(size: object) -> ModelSpec:
    if size not in SIZES:
        raise InvalidArgumentError(f"size must be one of {', '.join(map(repr, SIZES))}, got {size!r}.")
    return KNOWN_MODELS[terramind_model(size)]


def _backbone_modalities(modalities: object) -> tuple[tuple[str, ...], dict[str, int]]:
    """Pretrained modality names, and new modalities with their channel counts, from TerraTorch's ``modalities``."""
    items = [modalities] if isinstance(modalities, (str, Mapping)) else list(modalities)
    new: dict[str, int] = {}
    for item in items:
        if isinstance(item, Mapping):
            for name, channels in item.items():
                if name in TERRAMIND_MODALITIES or name in REFUSED_MODALITIES:
                    raise InvalidArgumentError(
                        f"modalities: {name!r} is a pretrained TerraMind modality; pass it by name, and its bands "
                        "with bands={...}, or give the new modality another name."
                    )
                new[str(name)] = _validation.whole_number(channels, f"channels of new modality {name!r}", minimum=1)
    named = _supported([item for item in items if not isinstance(item, Mapping)])
    names = _validation.modality_names(named, "modalities", BACKBONE_MODALITIES) if named or not new else ()
    return names, new


def _supported(names: Sequence[str] | str) -> Sequence[str] | str:
    """``names``, unless one is a modality of ``REFUSED_MODALITIES``: then the reason is raised."""
    for name in [names] if isinstance(names, str) else names:
        if isinstance(name, str) and name.lower() in REFUSED_MODALITIES:
            raise InvalidArgumentError(f"modality {name!r} is not supported: {REFUSED_MODALITIES[name.lower()]}.")
    return names


def _checked_bands(
    bands: Mapping[str, Sequence[str]] | None, names: Sequence[str], tim: Sequence[str] | None
) -> dict[str, tuple[str, ...]]:
    """The bands each raw input modality has: ``bands`` where given, the pretrained ones otherwise."""
    expected = {name: TERRAMIND_MODALITIES[name].bands for name in names if TERRAMIND_MODALITIES[name].channels}
    if not bands:
        return expected
    if tim is not None:
        raise InvalidArgumentError("bands cannot be used with tim_modalities: TerraTorch's TiM takes the pretrained bands only.")
    if not isinstance(bands, Mapping):
        raise InvalidArgumentError(f"bands must map a modality to its band names, e.g. {{'S2L2A': ['RED', 'GREEN', 'BLUE']}}; got {bands!r}.")
    for name, given in bands.items():
        if name not in expected:
            raise InvalidArgumentError(
                f"bands names {name!r}, which is not a raw image modality of this backbone ({', '.join(expected)})."
            )
        if isinstance(given, str) or not given or not all(isinstance(band, str) for band in given):
            raise InvalidArgumentError(f"bands[{name!r}] must be a non-empty list of band names, got {given!r}.")
        expected[name] = tuple(given)
    return expected


def _adapt_bands(model: nn.Module, bands: Mapping[str, Sequence[str]]) -> nn.Module:
    """TerraTorch's own band selection: pretrained bands keep their patch-embedding weights, new ones are new."""
    register = _register()
    for name, given in bands.items():
        new = [band for band in given if band not in TERRAMIND_MODALITIES[name].bands]
        if new:
            logger.info("%s: new bands %s, their patch-embedding weights newly initialised", name, ", ".join(new))
    return register.select_modality_patch_embed_weights(model, {k: list(v) for k, v in bands.items()}, register.PRETRAINED_BANDS)


def _checked_decoding_steps(value: object) -> int:
    steps = _validation.whole_number(value, "decoding_steps", minimum=1)
    if steps != 1:
        raise InvalidArgumentError(
            f"decoding_steps={steps} is not supported: TerraTorch 1.2's generation sampler fails for image outputs "
            "with more than one decoding step (stock terramind_v1_*_generate too: 'cannot reshape tensor of 0 "
            "elements'); use decoding_steps=1."
        )
    return steps


def _positive(value: object, argument: str) -> float:
    number = _validation.real_number(value, argument, minimum=0.0)
    if number == 0:
        raise InvalidArgumentError(f"{argument} must be greater than 0, got {value}.")
    return number


def _register():
    return terratorch_module("models.backbones.terramind.model.terramind_register")


def _tokenizer_files(modalities: Sequence[str], checkpoint: CheckpointFile) -> dict[str, CheckpointFile]:
    """TerraTorch's tokenizer key to the tokenizer checkpoint of each modality, looked for beside ``checkpoint``."""
    return {
        TERRAMIND_MODALITIES[name].token_key: find_checkpoint(
            KNOWN_MODELS[TERRAMIND_MODALITIES[name].tokenizer], near=checkpoint.path
        )
        for name in dict.fromkeys(modalities)
    }


def _with_tokenizers(build: Callable[[], nn.Module], tokenizers: Mapping[str, CheckpointFile]) -> nn.Module:
    """``build()`` with TerraTorch building the tokenizers of ``tokenizers`` in their files' architectures."""
    builders = {key: partial(_build_tokenizer, file) for key, file in tokenizers.items()}
    with _tokenizer_builders(_register().tokenizer_dict["v1"], builders):
        model = build()
    if set(model.tokenizer) != set(tokenizers):
        raise RuntimeError(
            f"TerraTorch built tokenizers {sorted(model.tokenizer)}, this library expected {sorted(tokenizers)}"
        )
    return model


def _tokenizer_parts(tokenizers: Mapping[str, CheckpointFile]) -> list[CheckpointPart]:
    return [
        CheckpointPart(file.path, _prefixed(f"tokenizer.{key}."), file.spec.family, f"tokenizer.{key}.")
        for key, file in tokenizers.items()
    ]


def _checked_timesteps(timesteps: object) -> int:
    return _validation.whole_number(timesteps, "timesteps", minimum=TIMESTEPS_RANGE[0], maximum=TIMESTEPS_RANGE[1])


def _build_tokenizer(checkpoint: CheckpointFile, pretrained: bool = False) -> nn.Module:
    """The tokenizer architecture of ``checkpoint``, weights left to the loader (``pretrained`` is ignored)."""
    builder = registry().TERRATORCH_FULL_MODEL_REGISTRY[checkpoint.spec.builder]
    return builder(pretrained=False, **builder_arguments(checkpoint.spec, checkpoint.path))


_TOKENIZER_TABLE_LOCK = threading.Lock()


@contextmanager
def _tokenizer_builders(table: dict[str, Callable[..., nn.Module]], builders: dict[str, Callable[..., nn.Module]]):
    """Let TerraTorch's generation model build its tokenizers with ``builders`` instead of its own table.

    TerraTorch's builder always takes tokenizers from its module-level table (published sizes, weights
    from the Hub); the entries are swapped for the duration of the build and restored after.
    """
    with _TOKENIZER_TABLE_LOCK:
        saved = {key: table[key] for key in builders}
        table.update(builders)
        try:
            yield
        finally:
            table.update(saved)


def _prefixed(prefix: str):
    """TerraTorch loads tokenizer files as they are; inside the generator their keys gain ``prefix``."""

    def checkpoint_filter(state_dict: StateDict, model: nn.Module) -> StateDict:
        return {prefix + key: value for key, value in state_dict.items()}

    return checkpoint_filter
