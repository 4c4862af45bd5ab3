"""What TerraTorch's own tests check for ``terramind_v1_*``, checked on every ``axs_terramind_*`` name.

The behaviours (written anew, not copied): a backbone returns one token map per encoder layer, merged as
``merge_method`` says; ``bands`` keeps the pretrained patch-embedding weights of the bands it names; TiM
generates its modalities before encoding; generation from S1GRD gives S2L2A, DEM, LULC and NDVI.

Each size's tiny file holds TerraTorch's ``terramind_v1_tiny`` architecture (``tiny_weights.config_for``), so
the stock model to compare with is ``terramind_v1_tiny*`` loaded from the same file: backbones through
TerraTorch's ``ckpt_path=``; TiM and generation models through TerraTorch's own checkpoint filter, since their
``ckpt_path`` loads no weights of the published layout (DESIGN.md, pitfall 1). The tokenizers TerraTorch
builds are given the tiny architecture and the same files through its own ``ckpt_path``.
"""

from __future__ import annotations

import logging
import random
import warnings
from functools import partial

import pytest
import torch
from terratorch.registry import BACKBONE_REGISTRY, FULL_MODEL_REGISTRY

from axs_lib.errors import CheckpointMismatchError, InvalidArgumentError
from axs_lib.models.registration import TERRAMIND_NAMES
from axs_lib.weights.catalog import KNOWN_MODELS, TERRAMIND_MODALITIES, terramind_model
from axs_lib.demo.tiny_weights import TINY_TERRAMIND, config_for

BACKBONES = [e.name for e in TERRAMIND_NAMES if e.registry == "backbone" and not e.name.endswith("_tim")]
TIM_BACKBONES = [e.name for e in TERRAMIND_NAMES if e.name.endswith("_tim")]
GENERATORS = [e.name for e in TERRAMIND_NAMES if e.name.endswith("_generate")]
GENERATED = ["S2L2A", "DEM", "LULC", "NDVI"]
SIDE = 32


def size_of(name: str) -> str:
    return name.removeprefix("axs_terramind_v1_").split("_")[0]


def weights_file(root, name: str) -> str:
    spec = KNOWN_MODELS[terramind_model(size_of(name))]
    return str(root / spec.name / spec.filename)


def images(*modalities: str) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {name: torch.randn(1, len(TERRAMIND_MODALITIES[name].bands), SIDE, SIDE, generator=generator) for name in modalities}


def seeded_run(model, inputs):
    """TerraTorch draws generation seeds from Python's ``random`` and torch: both are seeded for each run. The
    inputs are passed as a copy, since TerraTorch's TiM and generation models add entries to the dict."""
    random.seed(0)
    torch.manual_seed(0)
    with torch.no_grad():
        return model(dict(inputs))


@pytest.fixture(scope="session")
def stock_tokenizers(tiny_weights):
    """TerraTorch's tokenizer table builds the tiny tokenizers and loads them from the tiny files itself."""
    from terratorch.models.backbones.terramind.model.terramind_register import tokenizer_dict

    table = tokenizer_dict["v1"]
    with pytest.MonkeyPatch.context() as patch:
        for modality in TERRAMIND_MODALITIES.values():
            if modality.tokenizer:
                spec = KNOWN_MODELS[modality.tokenizer]
                builder = partial(
                    table[modality.token_key], **config_for(spec.name)["pretrained_cfg"],
                    ckpt_path=str(tiny_weights / spec.name / spec.filename),
                )
                patch.setitem(table, modality.token_key, builder)
        yield


TIM_ARGUMENTS = {"modalities": ["S1GRD"], "tim_modalities": ["LULC"]}
GENERATE_ARGUMENTS = {"modalities": ["S1GRD"], "output_modalities": GENERATED, "timesteps": 2, "standardize": True}


@pytest.fixture(scope="session")
def stock_tim(stock_tokenizers):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "TerraMind TiM model not pre-trained")  # the test loads it
        return BACKBONE_REGISTRY.build(f"{TINY_TERRAMIND}_tim", **TIM_ARGUMENTS)


@pytest.fixture(scope="session")
def stock_generator(stock_tokenizers):
    return FULL_MODEL_REGISTRY.build(f"{TINY_TERRAMIND}_generate", **GENERATE_ARGUMENTS)


def stock_loaded(model, file: str, filter_name: str):
    """``model`` with ``file`` loaded strictly through TerraTorch's ``filter_name`` filter."""
    from terratorch.models.backbones.terramind.model import terramind_register

    state = torch.load(file, map_location="cpu", weights_only=True)
    model.load_state_dict(getattr(terramind_register, filter_name)(state, model), strict=True)
    return model.eval()


def assert_same_outputs(ours, stock):
    if isinstance(ours, dict):
        assert ours.keys() == stock.keys()
        for key in ours:
            assert_same_outputs(ours[key], stock[key])
    elif isinstance(ours, list):
        assert len(ours) == len(stock)
        for mine, theirs in zip(ours, stock):
            assert_same_outputs(mine, theirs)
    else:
        assert ours.shape == stock.shape
        assert torch.equal(ours, stock)


@pytest.mark.parametrize("name", BACKBONES)
def test_a_backbone_gives_one_token_map_per_layer_as_terratorchs_from_the_same_file(tiny_weights, name):
    file = weights_file(tiny_weights, name)
    ours = BACKBONE_REGISTRY.build(name, ckpt_path=file, modalities=["S2L2A", "S1GRD"]).eval()
    stock = BACKBONE_REGISTRY.build(TINY_TERRAMIND, ckpt_path=file, modalities=["S2L2A", "S1GRD"]).eval()
    inputs = images("S2L2A", "S1GRD")
    with torch.no_grad():
        features = ours(inputs)
        assert_same_outputs(features, stock(inputs))
    assert len(features) == len(ours.encoder)
    assert features[-1].shape == (1, (SIDE // 16) ** 2, ours.out_channels[-1])


@pytest.mark.parametrize(
    ("merge_method", "shape"),
    [("mean", (1, 4, 192)), ("max", (1, 4, 192)), ("concat", (1, 4, 384)), (None, (1, 8, 192)), ("dict", None)],
)
def test_merge_method_merges_the_modalities_tokens_as_terratorch_does(tiny_weights, merge_method, shape):
    file = weights_file(tiny_weights, "axs_terramind_v1_small")
    arguments = {"modalities": ["S2L2A", "S1GRD"], "merge_method": merge_method}
    ours = BACKBONE_REGISTRY.build("axs_terramind_v1_small", ckpt_path=file, **arguments).eval()
    stock = BACKBONE_REGISTRY.build(TINY_TERRAMIND, ckpt_path=file, **arguments).eval()
    inputs = images("S2L2A", "S1GRD")
    with torch.no_grad():
        last = ours(inputs)[-1]
        assert_same_outputs(last, stock(inputs)[-1])
    if merge_method == "dict":
        assert {key: value.shape for key, value in last.items()} == {"S2L2A": (1, 4, 192), "S1GRD": (1, 4, 192)}
    else:
        assert last.shape == shape


def test_bands_keep_the_pretrained_weights_of_the_bands_they_name_as_terratorch_does(tiny_weights):
    file = weights_file(tiny_weights, "axs_terramind_v1_base")
    arguments = {"modalities": ["S2L2A"], "bands": {"S2L2A": ["RED", "GREEN", "BLUE", "NIR_NARROW"]}}
    ours = BACKBONE_REGISTRY.build("axs_terramind_v1_base", ckpt_path=file, **arguments).eval()
    stock = BACKBONE_REGISTRY.build(TINY_TERRAMIND, ckpt_path=file, **arguments).eval()
    image = torch.randn(1, 4, SIDE, SIDE)
    with torch.no_grad():
        assert_same_outputs(ours({"S2L2A": image}), stock({"S2L2A": image}))
    with pytest.raises(InvalidArgumentError, match=r"S2L2A must have shape \[B, 4, H, W\]"):
        ours({"S2L2A": torch.randn(1, 12, SIDE, SIDE)})


def test_a_tokenized_input_goes_through_its_tokenizer_as_in_terratorch(tiny_weights, stock_tokenizers):
    file = weights_file(tiny_weights, "axs_terramind_v1_base")
    ours = BACKBONE_REGISTRY.build("axs_terramind_v1_base", ckpt_path=file, modalities=["S1GRD", "LULC"]).eval()
    stock = BACKBONE_REGISTRY.build(TINY_TERRAMIND, ckpt_path=file, modalities=["S1GRD", "LULC"]).eval()
    inputs = {**images("S1GRD"), "LULC": torch.randn(1, 10, SIDE, SIDE).softmax(dim=1)}
    with torch.no_grad():
        assert_same_outputs(ours(inputs), stock(inputs))


def test_a_new_modality_is_new_weights_listed_in_one_info_line(tiny_weights, caplog):
    file = weights_file(tiny_weights, "axs_terramind_v1_large")
    with caplog.at_level(logging.INFO, logger="axs_lib"):
        model = BACKBONE_REGISTRY.build("axs_terramind_v1_large", ckpt_path=file, modalities=["S1GRD", {"HEIGHT": 1}])
    lines = [record.getMessage() for record in caplog.records if "newly initialised" in record.getMessage()]
    assert len(lines) == 1
    assert "encoder_embeddings.HEIGHT.proj.weight" in lines[0] and "S1GRD" not in lines[0]
    with torch.no_grad():
        features = model.eval()({"S1GRD": torch.randn(1, 2, SIDE, SIDE), "HEIGHT": torch.randn(1, 1, SIDE, SIDE)})
    assert features[-1].shape == (1, 4, 192)


def test_a_new_modality_does_not_hide_a_weight_missing_from_the_file(weights_copy):
    file = weights_file(weights_copy, "axs_terramind_v1_tiny")
    state = torch.load(file, weights_only=True)
    del state["encoder.0.mlp.fc1.weight"]
    torch.save(state, file)
    with pytest.raises(CheckpointMismatchError, match="encoder.0.mlp.fc1.weight"):
        BACKBONE_REGISTRY.build("axs_terramind_v1_tiny", ckpt_path=file, modalities=["S1GRD", {"HEIGHT": 1}])


def sampled_as_stock(registry, name: str, arguments: dict, stock, filter_name: str, root):
    """Our model's output for an S1GRD image, once it equals the stock model's from the same file and seeds."""
    file = weights_file(root, name)
    ours = registry.build(name, ckpt_path=file, **arguments).eval()
    inputs = images("S1GRD")
    output = seeded_run(ours, inputs)
    assert_same_outputs(output, seeded_run(stock_loaded(stock, file, filter_name), inputs))
    return output


@pytest.mark.parametrize("name", TIM_BACKBONES)
def test_tim_thinks_in_lulc_before_encoding_as_terratorchs_from_the_same_file(tiny_weights, stock_tim, name):
    features = sampled_as_stock(BACKBONE_REGISTRY, name, TIM_ARGUMENTS, stock_tim, "checkpoint_filter_fn_tim", tiny_weights)
    assert len(features) == len(stock_tim.encoder) and features[-1].shape == (1, 4, 192)


@pytest.mark.parametrize("name", GENERATORS)
def test_generation_from_s1grd_gives_s2l2a_dem_lulc_and_ndvi_as_terratorchs_from_the_same_file(
    tiny_weights, stock_generator, name
):
    generated = sampled_as_stock(
        FULL_MODEL_REGISTRY, name, GENERATE_ARGUMENTS, stock_generator, "checkpoint_filter_fn_generate", tiny_weights
    )
    assert list(generated) == GENERATED
    assert generated["S2L2A"].shape == (1, 12, SIDE, SIDE)
    assert all(image.shape[0] == 1 and image.shape[-2:] == (SIDE, SIDE) for image in generated.values())


def test_the_generators_sampling_arguments_reach_terratorchs_sampler(tiny_weights):
    arguments = {"top_p": 0.5, "top_k": 3, "temps": 0.7, "decoding_steps": 1, "timesteps": 51}
    model = FULL_MODEL_REGISTRY.build("axs_terramind_v1_tiny_generate", ckpt_path=weights_file(tiny_weights, "tiny"), **arguments)
    assert {key: getattr(model.model, key) for key in arguments} == arguments
    assert seeded_run(model.eval(), images("S1GRD"))["S2L2A"].isfinite().all()


@pytest.mark.parametrize(
    ("registry", "arguments", "reason"),
    [
        (FULL_MODEL_REGISTRY, {"decoding_steps": 2}, "decoding_steps=2 is not supported: TerraTorch 1.2's generation"),
        (FULL_MODEL_REGISTRY, {"timesteps": 1001}, "timesteps must be between 1 and 1000"),
        (BACKBONE_REGISTRY, {"modalities": ["S1GRD", "coords"]}, "modality 'coords' is not supported: its tokenizer"),
        (FULL_MODEL_REGISTRY, {"output_modalities": ["coords"]}, "modality 'coords' is not supported: its tokenizer"),
        (BACKBONE_REGISTRY, {"bands": {"S1GRD": ["VV"]}, "tim_modalities": ["LULC"]}, "bands cannot be used with tim"),
        (BACKBONE_REGISTRY, {"merge_method": "sum"}, "merge_method must be one of"),
        (BACKBONE_REGISTRY, {"modality_drop_rate": 1.5}, "modality_drop_rate must be between 0.0 and 1.0"),
    ],
)
def test_what_terratorch_cannot_honour_is_refused_by_name_with_the_reason(tiny_weights, registry, arguments, reason):
    name = "axs_terramind_v1_tiny_generate" if registry is FULL_MODEL_REGISTRY else "axs_terramind_v1_tiny"
    with pytest.raises(InvalidArgumentError, match=reason):
        registry.build(name, ckpt_path=weights_file(tiny_weights, name), **arguments)


def test_a_segmentation_model_is_built_around_a_terramind_size_as_in_ibms_sen1floods11_config(tiny_weights):
    from terratorch.models.encoder_decoder_factory import EncoderDecoderFactory

    model = EncoderDecoderFactory().build_model(
        task="segmentation",
        backbone="axs_terramind_v1_small",
        backbone_pretrained=True,
        backbone_ckpt_path=weights_file(tiny_weights, "small"),
        backbone_modalities=["S2L1C", "S1GRD"],
        backbone_merge_method="mean",
        necks=[
            {"name": "SelectIndices", "indices": [2, 5, 8, 11]},
            {"name": "ReshapeTokensToImage", "remove_cls_token": False},
            {"name": "LearnedInterpolateToPyramidal"},
        ],
        decoder="UNetDecoder",
        decoder_channels=[64, 32, 16, 8],
        num_classes=2,
    )
    inputs = {"S2L1C": torch.randn(1, 13, 64, 64), "S1GRD": torch.randn(1, 2, 64, 64)}
    assert model(inputs).output.shape == (1, 2, 64, 64)
