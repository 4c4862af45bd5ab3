"""The public factories: what they return, what trains, and how bad arguments are refused."""

from __future__ import annotations

import copy

import pytest
import torch

from axs_lib.models import (
    CheckpointNotFoundError,
    InvalidArgumentError,
    PrithviSegmentation,
    build_prithvi_600,
    build_prithvi_600_backbone,
    build_prithvi_backbone,
    build_terramind_backbone,
    build_terramind_generator,
)
from axs_lib.weights.catalog import PRITHVI_600M, TERRAMIND_LARGE
from axs_lib.models.terramind import GENERATOR_OUTPUTS
from helpers import trainable
from axs_lib.demo.tiny_weights import TINY_PRITHVI


@pytest.fixture
def weights(tiny_weights, use_weights):
    return use_weights(tiny_weights)


@pytest.fixture(scope="module")
def sar():
    return torch.randn(1, 2, 224, 224) * 5 - 15


class TestTerraMindGenerator:
    def test_sar_to_optical_returns_a_twelve_band_image(self, weights, sar):
        model = build_terramind_generator(timesteps=6)
        with torch.no_grad():
            out = model({"S1GRD": sar})
        assert set(out) == {"S2L2A"}
        assert out["S2L2A"].shape == (1, 12, 224, 224)
        assert torch.isfinite(out["S2L2A"]).all()
        assert not model.training

    def test_several_outputs_each_come_back_at_input_size(self, weights):
        model = build_terramind_generator(input_modalities=("S2L2A",), output_modalities=("S1GRD", "DEM"), timesteps=6)
        with torch.no_grad():
            out = model({"S2L2A": torch.rand(2, 12, 64, 64) * 3000})
        assert {name: tuple(t.shape) for name, t in out.items()} == {"S1GRD": (2, 2, 64, 64), "DEM": (2, 1, 64, 64)}

    @pytest.mark.parametrize(
        ("inputs", "complaint"),
        [
            ({"S2L2A": torch.zeros(1, 12, 64, 64)}, "unexpected input modality 'S2L2A'; this generator was built for S1GRD"),
            ({"S1GRD": torch.zeros(1, 3, 64, 64)}, r"S1GRD must have shape \[B, 2, H, W\] with 2 bands \(VV, VH, in this order\); got \[1, 3, 64, 64\]"),
            ({"S1GRD": torch.zeros(1, 2, 60, 64)}, "60x64 pixels; TerraMind needs multiples of 16"),
            ({}, "pass a dict of input images"),
        ],
    )
    def test_bad_inputs_are_refused_before_generation(self, weights, inputs, complaint):
        model = build_terramind_generator()
        with pytest.raises(InvalidArgumentError, match=complaint):
            model(inputs)

    def test_reduced_precision_weights_still_generate_float32_images(self, weights, sar):
        model = build_terramind_generator(dtype="bf16", timesteps=6)
        assert {p.dtype for p in model.model.sampler.parameters()} == {torch.bfloat16}
        with torch.no_grad():
            out = model({"S1GRD": sar[..., :64, :64]}, timesteps=6)["S2L2A"]
        assert out.dtype == torch.float32 and torch.isfinite(out).all()

    def test_only_the_tokenizers_it_needs_must_be_on_disk(self, weights_copy, use_weights):
        import shutil

        shutil.rmtree(weights_copy / "TerraMind-1.0-Tokenizer-S1GRD")
        use_weights(weights_copy)
        build_terramind_generator(("S1GRD",), ("S2L2A",))
        with pytest.raises(CheckpointNotFoundError, match="TerraMind-1.0-Tokenizer-S1GRD"):
            build_terramind_generator(("S2L2A",), ("S1GRD",))

    @pytest.mark.parametrize("timesteps", [0, 1001, 12.5, "12"])
    def test_timesteps_outside_terratorchs_1_to_1000_are_refused(self, timesteps):
        with pytest.raises(InvalidArgumentError, match="timesteps"):
            build_terramind_generator(timesteps=timesteps)

    @pytest.mark.parametrize(
        ("inputs", "outputs", "complaint"),
        [
            (("S1GRD",), ("S2",), "output_modalities has unknown modality 'S2'; valid choices are S2L2A, S1GRD"),
            (("SAR",), ("S2L2A",), "input_modalities has unknown modality 'SAR'"),
            ((), ("S2L2A",), "input_modalities is empty; choose one or more of S2L2A"),
            (("S1GRD",), (), "output_modalities is empty"),
            (("S1GRD",), ("RGB",), "unknown modality 'RGB'"),
            (("S1GRD", "S1GRD"), ("S2L2A",), "names a modality twice"),
        ],
    )
    def test_bad_modalities_are_refused_listing_valid_ones(self, inputs, outputs, complaint):
        with pytest.raises(InvalidArgumentError) as raised:
            build_terramind_generator(inputs, outputs)
        assert complaint in str(raised.value)
        assert isinstance(raised.value, ValueError)

    def test_every_generatable_output_is_valid(self):
        assert GENERATOR_OUTPUTS == ("S2L2A", "S1GRD", "S1RTC", "DEM", "LULC", "NDVI")


class TestTerraMindBackbone:
    def test_features_per_layer_for_each_token(self, weights):
        model = build_terramind_backbone()
        with torch.no_grad():
            features = model({"S1GRD": torch.randn(2, 2, 224, 224), "S2L2A": torch.randn(2, 12, 224, 224)})
        assert len(features) == len(model.encoder)
        assert features[-1].shape == (2, 196, model.encoder[0].attn.qkv.in_features)

    def test_frozen_means_no_gradients_and_eval_mode(self, weights):
        model = build_terramind_backbone(freeze_encoder=True)
        assert not trainable(model)
        assert not model.training

    def test_unfrozen_trains_everything_and_still_comes_back_in_eval_mode(self, weights):
        model = build_terramind_backbone(modalities=("S1GRD",), freeze_encoder=False)
        assert set(trainable(model)) == {name for name, _ in model.named_parameters()}
        assert not model.training

    @pytest.mark.parametrize("call", ["dict", "tensor", "keyword"])
    def test_an_image_with_the_wrong_bands_is_refused_naming_the_expected_bands(self, weights, call):
        model = build_terramind_backbone(modalities=("S2L2A", "S1GRD"))
        six_bands = torch.randn(1, 6, 224, 224)
        with pytest.raises(InvalidArgumentError, match=r"S2L2A must have shape \[B, 12, H, W\] with 12 bands "
                           r"\(COASTAL_AEROSOL, BLUE, .*, SWIR_1, SWIR_2, in this order\); got \[1, 6, 224, 224\]"):
            if call == "dict":
                model({"S2L2A": six_bands})
            elif call == "tensor":
                model(six_bands)
            else:
                model(S2L2A=six_bands)

    @pytest.mark.parametrize("dtype", [torch.bfloat16, "fp16"])
    def test_reduced_precision_features_stay_close_to_float32(self, weights, dtype):
        inputs = {"S1GRD": torch.randn(1, 2, 64, 64)}
        reference = build_terramind_backbone(modalities=("S1GRD",))
        reduced = build_terramind_backbone(modalities=("S1GRD",), dtype=dtype)
        low = next(reduced.parameters()).dtype
        assert low in (torch.bfloat16, torch.float16)
        with torch.no_grad():
            expected = reference(inputs)[-1]
            actual = reduced({"S1GRD": inputs["S1GRD"].to(low)})[-1].float()
        assert (actual - expected).norm() / expected.norm() < 0.05

    def test_a_tokenized_modality_needs_its_tokenizer_on_disk(self, weights_copy, use_weights):
        import shutil

        shutil.rmtree(weights_copy / "TerraMind-1.0-Tokenizer-LULC")
        use_weights(weights_copy)
        with pytest.raises(CheckpointNotFoundError, match="TerraMind-1.0-Tokenizer-LULC"):
            build_terramind_backbone(modalities=("S1GRD", "LULC"))


class TestPrithvi:
    def test_segmentation_logits_have_one_channel_per_class(self, weights):
        model = build_prithvi_600(num_classes=3, img_size=112)
        assert isinstance(model, PrithviSegmentation)
        assert model(torch.randn(2, 6, 112, 112)).shape == (2, 3, 112, 112)

    def test_one_class_keeps_its_channel_dimension(self, weights):
        model = build_prithvi_600(img_size=56, use_lora=False)
        assert model(torch.randn(2, 6, 56, 56)).shape == (2, 1, 56, 56)

    def test_a_size_that_is_not_a_whole_number_of_patches_is_padded_and_cropped(self, weights):
        model = build_prithvi_600(img_size=60)
        assert model(torch.randn(2, 6, 60, 60)).shape == (2, 1, 60, 60)

    def test_lora_trains_only_adapters_in_the_encoder(self, weights):
        rank = 4
        model = build_prithvi_600(lora_r=rank, lora_alpha=8, freeze_encoder=True)
        encoder = {name: count for name, count in trainable(model).items() if name.startswith("model.encoder.")}
        dim, depth = TINY_PRITHVI["embed_dim"], TINY_PRITHVI["depth"]
        assert all("lora_" in name for name in encoder)
        assert sum(encoder.values()) == depth * 2 * (rank * dim + dim * rank)  # A and B of q and v per block
        assert any(name.startswith("model.decoder.") for name in trainable(model))
        assert any(name.startswith("model.head.") for name in trainable(model))

    def test_lora_rank_and_alpha_reach_peft(self, weights):
        model = build_prithvi_600(lora_r=2, lora_alpha=6)
        config = model.model.encoder.peft_config["default"]
        assert (config.r, config.lora_alpha) == (2, 6)
        assert sorted(config.target_modules) == ["q_linear", "v_linear"]

    def test_frozen_encoder_without_lora_trains_decoder_and_head_only(self, weights):
        model = build_prithvi_600(use_lora=False, freeze_encoder=True)
        names = trainable(model)
        assert names and not any(name.startswith("model.encoder.") for name in names)

    def test_no_lora_and_no_freezing_trains_everything(self, weights):
        model = build_prithvi_600(use_lora=False)
        assert len(trainable(model)) == len(list(model.parameters()))

    def test_other_band_counts_rebuild_the_patch_embedding(self, weights):
        model = build_prithvi_600(in_channels=4, img_size=56)
        assert model(torch.randn(2, 4, 56, 56)).shape == (2, 1, 56, 56)

    def test_input_with_the_wrong_band_count_is_refused_clearly(self, weights):
        model = build_prithvi_600(img_size=56)
        with pytest.raises(InvalidArgumentError, match=r"expected images of shape \[B, 6, H, W\] or \[B, 6, T, H, W\], got \[1, 3, 56, 56\]"):
            model(torch.randn(1, 3, 56, 56))

    def test_reduced_precision_logits_stay_close_to_float32(self, weights):
        images = torch.randn(2, 6, 56, 56)
        reference = build_prithvi_600(img_size=56, use_lora=False).eval()
        reduced = build_prithvi_600(img_size=56, use_lora=False, dtype=torch.bfloat16).eval()
        reduced.load_state_dict(reference.state_dict())
        assert {p.dtype for p in reduced.parameters()} == {torch.bfloat16}
        with torch.no_grad():
            expected, actual = reference(images), reduced(images).float()
        assert (actual - expected).norm() / expected.norm() < 0.05

    @pytest.mark.parametrize(
        ("arguments", "complaint"),
        [
            ({"dtype": "int8"}, "dtype must be torch.float32, torch.float16 or torch.bfloat16"),
            ({"device": "tpu9"}, "device 'tpu9' is not a torch device"),
            ({"lora_r": 0}, "lora_r must be at least 1, got 0"),
            ({"lora_r": -2}, "lora_r must be at least 1"),
            ({"lora_alpha": 0}, "lora_alpha must be at least 1"),
            ({"in_channels": 0}, "in_channels must be at least 1"),
            ({"num_classes": 0}, "num_classes must be at least 1"),
            ({"img_size": 10}, "img_size must be at least one 14-pixel patch"),
            ({"img_size": "384"}, "img_size must be a whole number"),
        ],
    )
    def test_bad_arguments_are_refused(self, weights, arguments, complaint):
        with pytest.raises(InvalidArgumentError, match=complaint):
            build_prithvi_600(**arguments)


class TestPrithviFamily:
    def test_a_tl_encoder_built_in_python_uses_time_and_location(self, weights):
        encoder = build_prithvi_backbone("Prithvi-EO-2.0-300M-TL", img_size=64)
        images, when = torch.randn(1, 6, 64, 64), torch.tensor([[[2021.0, 150.0]]])
        with torch.no_grad():
            here = encoder(images, temporal_coords=when, location_coords=torch.tensor([[45.5, 9.2]]))[-1]
            there = encoder(images, temporal_coords=when, location_coords=torch.tensor([[-33.9, 151.2]]))[-1]
            unplaced = encoder(images)[-1]
        assert here.shape == unplaced.shape == (1, 17, TINY_PRITHVI["embed_dim"])
        assert not torch.equal(here, there) and not torch.equal(here, unplaced)

    def test_in_chans_is_terratorchs_name_for_in_channels(self, weights):
        encoder = build_prithvi_backbone("prithvi_eo_v2_300", in_chans=4, img_size=64)
        assert encoder.patch_embed.proj.in_channels == 4

    @pytest.mark.parametrize(
        ("arguments", "complaint"),
        [
            ({"variant": "prithvi_eo_v3"}, "unknown Prithvi variant 'prithvi_eo_v3'; choose one of prithvi_eo_v1_100"),
            ({"vit_adapter": True}, "vit_adapter is not supported here: the ViT-Adapter adds layers"),
            ({"encoder_only": False}, "encoder_only is not supported here"),
            ({"pretrained_bands": ["RED"]}, "pretrained_bands is not supported here: the checkpoint's bands are fixed"),
            ({"bands": ["RED"], "model_bands": ["BLUE"]}, "bands and model_bands name different bands"),
            ({"in_channels": 4, "in_chans": 5}, "in_channels=4 and in_chans=5 differ"),
            ({"in_channels": 4, "bands": ["RED"]}, "in_channels=4, but bands lists 1 bands"),
            ({"patch_size": [1, 16]}, "patch_size must be an int or \\[frames, height, width\\]"),
        ],
    )
    def test_terratorch_arguments_that_cannot_be_honoured_are_refused_with_the_reason(self, weights, arguments, complaint):
        with pytest.raises(InvalidArgumentError, match=complaint):
            build_prithvi_backbone(**{"variant": "prithvi_eo_v2_300", **arguments})


def test_pretrained_false_needs_no_weights_anywhere():
    model = build_terramind_backbone(modalities=("S1GRD",), pretrained=False, freeze_encoder=True)
    assert len(model.encoder) == 24
    assert not any(p.is_meta for p in model.parameters())


@pytest.mark.parametrize("factory, typo, meant", [
    (build_prithvi_600, "num_clases", "num_classes"),
    (build_terramind_generator, "timestep", "timesteps"),
    (build_terramind_backbone, "modality", "modalities"),
    (build_prithvi_backbone, "img_szie", "img_size"),
])
def test_every_factory_refuses_an_unknown_keyword_naming_the_one_meant(factory, typo, meant):
    with pytest.raises(InvalidArgumentError, match=f"got unknown argument '{typo}' \\(did you mean '{meant}'\\?\\)"):
        factory(**{typo: 2})


def test_the_old_names_of_terraminds_size_and_freezing_still_work_with_a_warning():
    with pytest.warns(FutureWarning) as warned:
        model = build_terramind_backbone(modalities=("S1GRD",), pretrained=False, variant="tiny", freeze=False)
    assert sorted(str(warning.message) for warning in warned) == [
        "build_terramind_backbone(freeze=...) is deprecated: use freeze_encoder=...",
        "build_terramind_backbone(variant=...) is deprecated: use size=...",
    ]
    assert model.encoder[0].norm1.normalized_shape == (192,), "TerraMind 1.0 tiny's width"
    assert all(p.requires_grad for p in model.parameters()), "freeze=False honoured"
    with pytest.raises(InvalidArgumentError, match="got both 'variant' and 'size'"):
        build_terramind_backbone(variant="tiny", size="tiny")


def test_pretrained_true_without_weights_says_how_to_get_them():
    with pytest.raises(CheckpointNotFoundError, match=f"axs-setup --models {PRITHVI_600M}"):
        build_prithvi_600()
    with pytest.raises(CheckpointNotFoundError, match=TERRAMIND_LARGE):
        build_terramind_generator()


class TestLowMemoryTraining:
    @staticmethod
    def saved_activation_bytes(model, images) -> int:
        saved = []

        def pack(tensor):
            saved.append(tensor.numel() * tensor.element_size())
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            model(images).mean()
        return sum(saved)

    def test_gradient_checkpointing_keeps_fewer_activations_and_the_same_gradients(self, weights):
        images = torch.randn(2, 6, 56, 56)
        plain = build_prithvi_600(img_size=56, use_lora=False).eval()
        checkpointed = build_prithvi_600(img_size=56, use_lora=False, gradient_checkpointing=True).eval()
        checkpointed.load_state_dict(plain.state_dict())
        assert self.saved_activation_bytes(checkpointed, images) < self.saved_activation_bytes(plain, images)
        for model in (plain, checkpointed):
            model(images).square().mean().backward()
        for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters()):
            assert torch.allclose(a.grad, b.grad, atol=1e-6), name

    def test_low_vram_preset_is_lora_rank_4_frozen_encoder_and_16_bit_weights(self, weights):
        model = build_prithvi_600(low_vram=True, img_size=56)
        config = model.model.encoder.peft_config["default"]
        assert (config.r, config.lora_alpha) == (4, 8)
        assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
        encoder = [name for name in trainable(model) if name.startswith("model.encoder.")]
        assert encoder and all("lora_" in name for name in encoder)
        model(torch.randn(2, 6, 56, 56)).float().mean().backward()

    def test_a_deep_copy_of_a_checkpointed_model_runs_its_own_weights(self, weights):
        model = build_prithvi_600(img_size=56, gradient_checkpointing=True).train()
        average = copy.deepcopy(model)  # as torch.optim.swa_utils.AveragedModel and EMA copies do
        with torch.no_grad():
            for parameter in average.model.encoder.parameters():
                parameter.add_(0.5)
        images = torch.randn(2, 6, 56, 56)
        assert not torch.allclose(model(images), average(images))

    def test_a_checkpointed_model_is_saved_whole_by_torch_save(self, weights, work):
        model = build_prithvi_600(img_size=56, gradient_checkpointing=True).train()
        torch.save(model, work / "model.pt")
        loaded = torch.load(work / "model.pt", weights_only=False)
        images = torch.randn(2, 6, 56, 56)
        assert torch.allclose(loaded(images), model(images))
        assert self.saved_activation_bytes(loaded, images) == self.saved_activation_bytes(model, images)

    def test_explicit_arguments_win_over_the_low_vram_preset(self, weights):
        model = build_prithvi_600(low_vram=True, lora_r=8, img_size=56)
        config = model.model.encoder.peft_config["default"]
        assert (config.r, config.lora_alpha) == (8, 16)
        assert model.build_recipe.arguments["freeze_encoder"] is True
        without_lora = build_prithvi_600(low_vram=True, use_lora=False, dtype=torch.float32, img_size=56)
        assert not any(name.startswith("model.encoder.") for name in trainable(without_lora))
        assert {p.dtype for p in without_lora.parameters()} == {torch.float32}


class TestCompiled:
    def test_compiled_blocks_give_the_eager_logits_gradients_and_state_dict(self, weights, monkeypatch):
        compiled_callables = []
        real_compile = torch.compile

        def recording_compile(model, *args, **kwargs):
            compiled_callables.append(model)
            return real_compile(model, *args, **kwargs)

        monkeypatch.setattr(torch, "compile", recording_compile)
        images = torch.randn(2, 6, 56, 56)
        options = {"img_size": 56, "lora_r": 4, "lora_alpha": 8, "gradient_checkpointing": True}
        eager = build_prithvi_600(**options)
        compiled = build_prithvi_600(**options, compile=True)
        compiled.load_state_dict(eager.state_dict())
        assert compiled.state_dict().keys() == eager.state_dict().keys()

        for model in (eager, compiled):
            model(images).square().mean().backward()
        assert len(compiled_callables) == TINY_PRITHVI["depth"]
        with torch.no_grad():
            assert torch.allclose(compiled.eval()(images), eager.eval()(images), atol=1e-5)
        for (name, a), (_, b) in zip(eager.named_parameters(), compiled.named_parameters()):
            assert (a.grad is None) == (b.grad is None), name
            assert a.grad is None or torch.allclose(a.grad, b.grad, atol=1e-5), name


    def test_compiled_encoder_gives_the_eager_features(self, weights):
        images = torch.randn(2, 6, 56, 56)
        eager = build_prithvi_600_backbone(img_size=56).eval()
        compiled = build_prithvi_600_backbone(img_size=56, compile=True).eval()
        with torch.no_grad():
            for expected, actual in zip(eager.forward_features(images), compiled.forward_features(images), strict=True):
                assert torch.allclose(actual, expected, atol=1e-5)

    def test_all_32_encoder_blocks_share_one_compiled_graph(self, monkeypatch):
        graphs = []
        real_compile = torch.compile

        def counting_backend(graph, example_inputs):
            graphs.append(graph)
            return graph.forward

        monkeypatch.setattr(torch, "compile", lambda model, **_: real_compile(model, backend=counting_backend))
        narrow = {**TINY_PRITHVI, "depth": 32}
        encoder = build_prithvi_600_backbone(pretrained=False, img_size=28, compile=True, **narrow).eval()
        with torch.no_grad():
            encoder.forward_features(torch.randn(1, 6, 28, 28))
        assert len(graphs) == 1  # no block recompiles, so none falls back to eager at Dynamo's recompile limit

def test_without_terratorch_factories_say_how_to_install_it(monkeypatch):
    import sys

    from axs_lib.models import TerraTorchUnavailableError

    monkeypatch.setitem(sys.modules, "terratorch.registry", None)
    with pytest.raises(TerraTorchUnavailableError, match="pip install terratorch"):
        build_terramind_backbone(pretrained=False)


def test_a_generator_call_refuses_timesteps_out_of_range(tiny_weights, use_weights):
    use_weights(tiny_weights)
    generator = build_terramind_generator()
    with pytest.raises(InvalidArgumentError, match="timesteps must be between 1 and 1000, got 0"):
        generator({"S1GRD": torch.zeros(1, 2, 64, 64)}, timesteps=0)
