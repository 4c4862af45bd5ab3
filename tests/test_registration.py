"""TerraTorch sees this library's models under their registered names, and builds them from local files."""

from __future__ import annotations

import pytest
import torch
from terratorch.registry import (
    BACKBONE_REGISTRY,
    FULL_MODEL_REGISTRY,
    TERRATORCH_BACKBONE_REGISTRY,
    TERRATORCH_FULL_MODEL_REGISTRY,
)

from axs_lib.models import (
    REGISTERED_NAMES,
    BackboneBuildError,
    CheckpointNotFoundError,
    InvalidArgumentError,
    PrithviSegmentation,
    UnsupportedModelError,
    build_prithvi_600_backbone,
    register_all_models,
)
from axs_lib.models import registration
from axs_lib.weights.catalog import PRITHVI_MODELS
from helpers import eval_modules_in_training_forwards, fit_two_steps

REGISTRIES = {"backbone": BACKBONE_REGISTRY, "full_model": FULL_MODEL_REGISTRY}


@pytest.fixture
def weights(tiny_weights, use_weights):
    return use_weights(tiny_weights)


def test_importing_the_package_registered_every_name():
    for entry in REGISTERED_NAMES:
        assert entry.name in REGISTRIES[entry.registry]["terratorch"], entry.name


def test_the_registered_names_are_the_documented_ones():
    terramind = {
        (f"axs_terramind_v1_{size}{suffix}", registry, None)
        for size in ("tiny", "small", "base", "large")
        for suffix, registry in (("", "backbone"), ("_tim", "backbone"), ("_generate", "full_model"), ("_encdec", "full_model"))
    }
    assert {(e.name, e.registry, e.alias_of) for e in REGISTERED_NAMES} == terramind | {
        *{(f"axs_{spec.builder}", "backbone", None) for spec in PRITHVI_MODELS},
        ("axs_prithvi_eo_v2_600_segmentation", "full_model", None),
        ("terramind_backbone", "backbone", "axs_terramind_v1_large"),
        ("prithvi_600M", "backbone", "axs_prithvi_eo_v2_600"),
        ("terramind_generator", "full_model", "axs_terramind_v1_large_generate"),
    }


def test_registering_again_is_harmless_and_reports_what_was_found(weights):
    before = len(TERRATORCH_BACKBONE_REGISTRY), len(TERRATORCH_FULL_MODEL_REGISTRY)
    report = register_all_models()
    assert (len(TERRATORCH_BACKBONE_REGISTRY), len(TERRATORCH_FULL_MODEL_REGISTRY)) == before
    assert report.found["Prithvi-EO-2.0-600M"].path == weights / "Prithvi-EO-2.0-600M" / "Prithvi_EO_V2_600M.pt"
    assert report.missing == []
    assert report.as_dict()["registered"][0] == {"name": "axs_terramind_v1_large", "registry": "backbone", "alias_of": None}


def test_backbones_build_through_terratorch_registries(weights):
    prithvi = BACKBONE_REGISTRY.build("axs_prithvi_eo_v2_600", img_size=56)
    assert len(prithvi(torch.randn(1, 6, 56, 56))) == 4
    terramind = BACKBONE_REGISTRY.build("terratorch_axs_terramind_v1_large", modalities=["S1GRD"])
    assert len(terramind({"S1GRD": torch.randn(1, 2, 224, 224)})) == len(terramind.encoder)


def test_full_models_build_through_terratorch_registries(weights):
    generator = FULL_MODEL_REGISTRY.build("axs_terramind_v1_large_generate", timesteps=6)
    with torch.no_grad():
        assert generator({"S1GRD": torch.randn(1, 2, 64, 64)})["S2L2A"].shape == (1, 12, 64, 64)
    segmentation = FULL_MODEL_REGISTRY.build("axs_prithvi_eo_v2_600_segmentation", num_classes=2, img_size=56)
    assert isinstance(segmentation, PrithviSegmentation)


def test_legacy_names_build_the_same_models(weights):
    prithvi = BACKBONE_REGISTRY.build("prithvi_600M", img_size=56)
    assert type(prithvi) is type(BACKBONE_REGISTRY.build("axs_prithvi_eo_v2_600", img_size=56))
    assert prithvi.out_channels  # what TerraTorch's factories read from a backbone
    assert not any(p.requires_grad for p in BACKBONE_REGISTRY.build("terramind_backbone", freeze=True).parameters())
    assert FULL_MODEL_REGISTRY.build("terramind_generator").output_modalities == ("S2L2A",)


def test_a_terratorch_encoder_decoder_config_can_name_the_backbone(weights):
    from terratorch.models.encoder_decoder_factory import EncoderDecoderFactory

    model = EncoderDecoderFactory().build_model(
        task="segmentation",
        backbone="axs_prithvi_eo_v2_600",
        backbone_pretrained=True,
        backbone_img_size=56,
        necks=[{"name": "SelectIndices", "indices": [1, 3]}, {"name": "ReshapeTokensToImage"}],
        decoder="FCNDecoder",
        num_classes=2,
    )
    assert model(torch.randn(2, 6, 56, 56)).output.shape == (2, 2, 56, 56)


BUILDABLE = [e for e in REGISTERED_NAMES if not e.refused]


@pytest.mark.parametrize("entry", [e for e in BUILDABLE if e.alias_of is None], ids=lambda entry: entry.name)
def test_registered_names_build_in_training_mode_as_terratorchs_own_builders_do(weights, entry):
    kwargs = {"img_size": 56} if "prithvi" in entry.name else {}
    model = REGISTRIES[entry.registry].build(entry.name, **kwargs)
    assert all(module.training for module in model.modules())


def test_a_task_built_from_a_config_trains_every_module_in_training_mode(weights):
    from terratorch.tasks import SemanticSegmentationTask

    task = SemanticSegmentationTask(
        model_factory="EncoderDecoderFactory",
        model_args={
            "backbone": "axs_prithvi_eo_v2_600", "backbone_pretrained": True, "backbone_img_size": 28,
            "necks": [{"name": "SelectIndices", "indices": [1, 3]}, {"name": "ReshapeTokensToImage"}],
            "decoder": "FCNDecoder", "num_classes": 2,
            "peft_config": {"method": "LORA", "replace_qkv": "qkv", "peft_config_kwargs": {
                "r": 4, "lora_alpha": 8, "lora_dropout": 0.5, "target_modules": ["qkv.q_linear", "qkv.v_linear"]}},
        },
        loss="ce", ignore_index=-1,
    )
    in_eval = eval_modules_in_training_forwards(task.model)
    fit_two_steps(task, [{"image": torch.randn(6, 28, 28), "mask": torch.randint(0, 2, (28, 28))} for _ in range(4)])
    assert in_eval == [[], []], "LoRA dropout and the encoder train in training mode"


def test_missing_weights_surface_as_the_clear_error_not_terratorch_fallbacks():
    with pytest.raises(CheckpointNotFoundError, match="Prithvi-EO-2.0-600M"):
        BACKBONE_REGISTRY.build("axs_prithvi_eo_v2_600")


def test_a_key_error_inside_a_builder_is_not_mistaken_for_an_unknown_model():
    def broken(*args, **kwargs):
        raise KeyError("modality")

    entry = registration.RegisteredName("axs_test_broken", "backbone", broken)
    TERRATORCH_BACKBONE_REGISTRY.register(registration._wrapper_class(entry))
    try:
        with pytest.raises(BackboneBuildError, match="Failed to build backbone axs_test_broken") as raised:
            BACKBONE_REGISTRY.build("axs_test_broken")
        assert isinstance(raised.value.__cause__, KeyError)
    finally:
        del TERRATORCH_BACKBONE_REGISTRY._registry["axs_test_broken"]


@pytest.mark.parametrize("entry", BUILDABLE, ids=lambda entry: entry.name)
def test_a_misspelt_argument_is_refused_by_name_for_every_registered_name(weights, entry):
    with pytest.raises(InvalidArgumentError, match="got unknown argument 'img_szie'"):
        REGISTRIES[entry.registry].build(entry.name, img_szie=512)


@pytest.mark.parametrize("size", ["tiny", "large"])
def test_terramind_encdec_names_refuse_with_terratorchs_reason_and_what_to_use(weights, size):
    with pytest.raises(UnsupportedModelError, match=f"pretrained_bands.*axs_terramind_v1_{size}_generate"):
        FULL_MODEL_REGISTRY.build(f"axs_terramind_v1_{size}_encdec")


def test_a_registered_terramind_size_cannot_be_asked_for_another_variant(weights):
    with pytest.raises(InvalidArgumentError, match="builds TerraMind 1.0 base"):
        BACKBONE_REGISTRY.build("axs_terramind_v1_base", variant="large")


def test_the_prithvi_backbone_suggests_the_argument_that_was_meant(weights):
    with pytest.raises(InvalidArgumentError, match="'img_szie' \\(did you mean 'img_size'\\?\\)"):
        build_prithvi_600_backbone(img_szie=512)
    with pytest.raises(InvalidArgumentError, match="'no_such_argument'"):
        BACKBONE_REGISTRY.build("axs_prithvi_eo_v2_600", no_such_argument=1)


def test_without_terratorch_registration_reports_why_instead_of_failing(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "terratorch.registry", None)
    report = register_all_models()
    assert report.registered == []
    assert "TerraTorch unavailable" in report.error


@pytest.mark.parametrize("name", ["axs_prithvi_eo_v2_600", "axs_terramind_v1_large", "axs_prithvi_eo_v2_600_segmentation"])
def test_terratorchs_ckpt_path_argument_names_the_checkpoint(tiny_weights, name):
    folder = "TerraMind-1.0-large" if "terramind" in name else "Prithvi-EO-2.0-600M"
    registry = FULL_MODEL_REGISTRY if name.endswith("segmentation") else BACKBONE_REGISTRY
    kwargs = {} if "terramind" in name else {"img_size": 56}
    built = []
    for seed in (0, 1):  # random initialisation would differ between seeds; the checkpoint's weights do not
        torch.manual_seed(seed)
        built.append(registry.build(name, ckpt_path=str(tiny_weights / folder), **kwargs).state_dict())
    encoder_weights = [key for key in built[0] if ".encoder." in f".{key}" or key.startswith(("blocks", "patch_embed", "encoder"))]
    encoder_weights = [key for key in encoder_weights if "lora_" not in key]
    assert encoder_weights and all(torch.equal(built[0][key], built[1][key]) for key in encoder_weights)
    with pytest.raises(CheckpointNotFoundError):
        registry.build(name, ckpt_path=str(tiny_weights / "nowhere"), **kwargs)
