"""Fine-tune, save, reload: PrithviSegmentation.save_pretrained / from_pretrained and the folder they share."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from axs_lib.errors import (
    AxsModelError,
    BaseModelMismatchError,
    InvalidSavedModelError,
    NotASavedModelError,
    SavedModelNotFoundError,
)
from axs_lib.models import (
    CheckpointMismatchError,
    InvalidArgumentError,
    PrithviSegmentation,
    build_prithvi_600,
)
from axs_lib.models.pretrained import MODEL_TYPE, base_fingerprint
from axs_lib.weights.catalog import PRITHVI_600M, TERRAMIND_LARGE
from helpers import eval_modules_in_training_forwards, fit_two_steps, process_environment
from axs_lib.demo.tiny_weights import write_tiny_weights, prithvi_state_dict

TILE = 28

LOAD_IN_FRESH_PROCESS = """
import sys, torch
from transformers import AutoConfig, AutoModel
from axs_lib.models import PrithviSegmentation
folder, images, out = sys.argv[1:4]
images = torch.load(images)
model = PrithviSegmentation.from_pretrained(folder)
auto = AutoModel.from_pretrained(folder)
config = AutoConfig.from_pretrained(folder)
assert not model.training and not auto.training, "from_pretrained must return eval mode"
with torch.no_grad():
    torch.save({"folder": model(images).output, "auto": auto(images).output,
                "config": [type(config).__name__, config.model_type, config.num_classes]}, out)
"""

LOAD_WITH_TRANSFORMERS_ONLY = """
import sys, torch, transformers, peft
folder, images, out = sys.argv[1:4]
assert "axs_lib" not in sys.modules
model = transformers.AutoModel.from_pretrained(folder, trust_remote_code=True)
with torch.no_grad():
    torch.save({"auto": model(torch.load(images)).output, "class": type(model).__name__,
                "base": peft.PeftConfig.from_pretrained(folder).base_model_name_or_path}, out)
"""


@pytest.fixture
def weights(tiny_weights, use_weights):
    return use_weights(tiny_weights)


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 6, TILE, TILE, generator=torch.Generator().manual_seed(1))


def fine_tune(model: PrithviSegmentation, steps: int = 3) -> PrithviSegmentation:
    """A plain PyTorch training loop on random tiles and masks; returns the model in eval mode."""
    generator = torch.Generator().manual_seed(2)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(steps):
        images = torch.randn(2, model.in_channels, TILE, TILE, generator=generator)
        masks = torch.randint(0, model.num_classes, (2, TILE, TILE), generator=generator)
        loss = torch.nn.functional.cross_entropy(model(images), masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def logits(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(images[:, : model.in_channels]).output


def load_in_fresh_process(
    folder: Path, images: torch.Tensor, tmp_path: Path, weights: Path | None, script: str = LOAD_IN_FRESH_PROCESS
) -> dict:
    """Load ``folder`` as a user would in a new Python process, by this library and by transformers' AutoModel."""
    torch.save(images, tmp_path / "images.pt")
    env = process_environment(AXS_WEIGHTS_DIR=None, HF_MODULES_CACHE=str(tmp_path / "hf-modules"))  # where transformers copies a folder's remote code
    if weights is not None:
        env["AXS_WEIGHTS_DIR"] = str(weights)
    result = subprocess.run(
        [sys.executable, "-c", script, str(folder), str(tmp_path / "images.pt"), str(tmp_path / "out.pt")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(tmp_path / "out.pt")


class TestRoundTrip:
    def test_a_lora_model_saved_here_gives_the_same_logits_in_a_new_process_and_through_automodel(
        self, weights, images, tmp_path
    ):
        model = fine_tune(build_prithvi_600(num_classes=3, img_size=TILE))
        folder = model.save_pretrained(tmp_path / "my-model")
        loaded = load_in_fresh_process(folder, images, tmp_path, weights)
        expected = logits(model, images)
        assert torch.equal(loaded["folder"], expected), (loaded["folder"] - expected).abs().max()
        assert torch.equal(loaded["auto"], expected), (loaded["auto"] - expected).abs().max()
        assert loaded["config"] == ["AxsPrithviSegmentationConfig", MODEL_TYPE, 3]

    def test_transformers_alone_opens_a_folder_with_trust_remote_code_and_peft_names_its_base(
        self, weights, images, tmp_path
    ):
        model = fine_tune(build_prithvi_600(num_classes=3, img_size=TILE))
        folder = model.save_pretrained(tmp_path / "my-model")
        loaded = load_in_fresh_process(folder, images, tmp_path, weights, LOAD_WITH_TRANSFORMERS_ONLY)
        assert torch.equal(loaded["auto"], logits(model, images))
        assert loaded["class"] == "SegmentationModel"
        fingerprint = base_fingerprint(weights / PRITHVI_600M / "Prithvi_EO_V2_600M.pt")
        assert loaded["base"] == f"{PRITHVI_600M}@{fingerprint}"

    @pytest.mark.parametrize(
        "arguments",
        [
            {"use_lora": False, "freeze_encoder": True, "in_channels": 8},
            {"use_lora": False, "freeze_encoder": False},
            {"use_lora": True, "lora_r": 4, "lora_alpha": 8, "in_channels": 4},
        ],
        ids=["frozen-encoder-8-bands", "trained-encoder", "lora-r4-4-bands"],
    )
    def test_every_way_of_fine_tuning_reloads_exactly(self, weights, images, tmp_path, arguments):
        model = fine_tune(build_prithvi_600(num_classes=2, img_size=TILE, **arguments))
        reloaded = PrithviSegmentation.from_pretrained(model.save_pretrained(tmp_path / "m"))
        extended = torch.cat([images, images[:, :2]], dim=1)
        assert torch.equal(logits(reloaded, extended), logits(model, extended))
        assert reloaded.build_recipe.arguments == model.build_recipe.arguments
        assert not reloaded.training

    def test_dtype_and_device_can_be_chosen_at_load(self, weights, images, tmp_path):
        model = build_prithvi_600(num_classes=2, img_size=TILE).eval()
        reloaded = PrithviSegmentation.from_pretrained(model.save_pretrained(tmp_path / "m"), device="cpu", dtype="bf16")
        assert {p.dtype for p in reloaded.parameters()} == {torch.bfloat16}
        assert torch.allclose(logits(reloaded, images).float(), logits(model, images), atol=0.1)


class TestFolder:
    def test_a_folder_saved_before_the_rename_to_segmentation_model_loads_unchanged(self, weights, images, tmp_path):
        """tests/data/folder_saved_before_rename: the config.json and tensor names a save wrote before the rename."""
        from axs_lib.models import SegmentationModel

        before = Path(__file__).parent / "data" / "folder_saved_before_rename"
        torch.manual_seed(0)
        saved_model = build_prithvi_600(num_classes=2, img_size=56)
        folder = saved_model.save_pretrained(tmp_path / "saved")
        for name, shapes in json.loads((before / "tensor_shapes.json").read_text()).items():
            with safe_open(folder / name, framework="pt") as saved:
                assert {key: list(saved.get_slice(key).get_shape()) for key in saved.keys()} == shapes, name
        old, new = (json.loads(path.read_text()) for path in (before / "config.json", folder / "config.json"))
        for entry in ("model_type", "architectures", "format_version", "build", "base_model", "auto_map"):
            assert new[entry] == old[entry], entry

        (folder / "config.json").write_text((before / "config.json").read_text())
        reloaded = PrithviSegmentation.from_pretrained(folder)
        assert PrithviSegmentation is SegmentationModel and type(reloaded) is SegmentationModel
        assert torch.equal(logits(reloaded, images), logits(saved_model, images))

    def test_hugging_face_layout_with_only_what_fine_tuning_changed(self, weights, tmp_path):
        model = fine_tune(build_prithvi_600(num_classes=3, img_size=TILE))
        folder = model.save_pretrained(tmp_path / "m")
        assert {"config.json", "model.safetensors", "adapter_config.json", "adapter_model.safetensors"} <= {
            path.name for path in folder.iterdir()
        }
        config = json.loads((folder / "config.json").read_text())
        assert config["model_type"] == MODEL_TYPE and config["format_version"] == 1
        assert "pretrained_cfg" not in config, "transformers would route the folder to timm"
        assert config["build"] == {
            "factory": "build_prithvi_600",
            "arguments": {"num_classes": 3, "img_size": TILE, "in_channels": 6, "use_lora": True, "lora_r": 8,
                          "lora_alpha": 16, "freeze_encoder": False},
        }
        base = config["base_model"]
        assert base["name"] == PRITHVI_600M and base["included"] is False and base["frozen_weights_from_base"]
        assert base["fingerprint"] == base_fingerprint(weights / PRITHVI_600M / "Prithvi_EO_V2_600M.pt")
        with safe_open(folder / "model.safetensors", "pt") as handle:
            saved = set(handle.keys())
        encoder = {key for key in saved if key.startswith("model.encoder.")}
        assert encoder and all(".patch_embed." in key for key in encoder), encoder
        assert any(key.startswith("model.decoder.") for key in saved) and any(key.startswith("model.head.") for key in saved)
        adapter = json.loads((folder / "adapter_config.json").read_text())
        assert adapter["peft_type"] == "LORA" and adapter["r"] == 8 and set(adapter["target_modules"]) == {"q_linear", "v_linear"}
        remote_code = runpy.run_path(str(folder / "modeling_axs_lib.py"))
        assert {entry.split(".")[-1] for entry in config["auto_map"].values()} == set(remote_code["__all__"]) <= set(remote_code)

    def test_a_small_folder_is_much_smaller_than_a_self_contained_one(self, weights, tmp_path):
        model = build_prithvi_600(num_classes=2, img_size=TILE)
        small = model.save_pretrained(tmp_path / "small")
        whole = model.save_pretrained(tmp_path / "whole", include_base=True)
        size = lambda folder: sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())  # noqa: E731
        assert (whole / "base" / "Prithvi_EO_V2_600M.safetensors").is_file()
        assert size(small) < size(whole)

    def test_the_fingerprint_is_the_same_for_a_pt_and_its_safetensors_conversion(self, weights_copy):
        from axs_lib.weights.conversion import convert_to_safetensors

        pt = weights_copy / PRITHVI_600M / "Prithvi_EO_V2_600M.pt"
        converted = convert_to_safetensors(pt)
        assert base_fingerprint(converted) == base_fingerprint(pt)

    def test_saving_again_replaces_an_earlier_save_and_a_foreign_folder_is_refused(self, weights, tmp_path):
        model = build_prithvi_600(num_classes=2, img_size=TILE)
        folder = model.save_pretrained(tmp_path / "m")
        model.save_pretrained(folder)
        assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".")) == []
        (tmp_path / "notes").mkdir()
        (tmp_path / "notes" / "todo.txt").write_text("mine")
        with pytest.raises(InvalidArgumentError, match="not empty and is not an earlier save_pretrained folder"):
            model.save_pretrained(tmp_path / "notes")

    def test_a_failed_save_leaves_nothing_behind(self, weights, tmp_path, monkeypatch):
        from axs_lib.models import pretrained

        model = build_prithvi_600(num_classes=2, img_size=TILE)

        def disk_full(*args, **kwargs):
            raise OSError("No space left on device")

        monkeypatch.setattr(pretrained, "save_state_dict", disk_full)
        with pytest.raises(OSError, match="No space left"):
            model.save_pretrained(tmp_path / "m")
        assert list(tmp_path.iterdir()) == [tmp_path / "empty"]


class TestRefusals:
    def test_a_different_base_under_the_same_name_is_an_error_naming_both(self, weights, tmp_path, use_weights):
        model = build_prithvi_600(num_classes=2, img_size=TILE)
        folder = model.save_pretrained(tmp_path / "m")
        other = tmp_path / "other-weights"
        write_tiny_weights(other, names=[PRITHVI_600M])
        torch.save(prithvi_state_dict(seed=1), other / PRITHVI_600M / "Prithvi_EO_V2_600M.pt")
        use_weights(other)
        with pytest.raises(BaseModelMismatchError, match="fingerprint") as error:
            PrithviSegmentation.from_pretrained(folder)
        assert str(other / PRITHVI_600M) in str(error.value) and str(folder) in str(error.value)
        assert isinstance(error.value, ValueError)

    def test_a_self_contained_folder_loads_with_no_base_on_the_machine(self, weights, images, tmp_path, monkeypatch):
        model = fine_tune(build_prithvi_600(num_classes=2, img_size=TILE))
        folder = model.save_pretrained(tmp_path / "m", include_base=True)
        monkeypatch.delenv("AXS_WEIGHTS_DIR")
        assert torch.equal(logits(PrithviSegmentation.from_pretrained(folder), images), logits(model, images))

    def test_a_missing_weight_is_an_error_not_a_random_model(self, weights, tmp_path):
        from safetensors.torch import load_file, save_file

        folder = build_prithvi_600(num_classes=2, img_size=TILE).save_pretrained(tmp_path / "m")
        saved = load_file(folder / "model.safetensors")
        dropped = next(key for key in saved if key.startswith("model.head."))
        save_file({key: value for key, value in saved.items() if key != dropped}, folder / "model.safetensors")
        with pytest.raises(CheckpointMismatchError, match="1 key missing from the checkpoint") as error:
            PrithviSegmentation.from_pretrained(folder)
        assert dropped in str(error.value)
        (folder / "adapter_model.safetensors").unlink()
        save_file(saved, folder / "model.safetensors")
        with pytest.raises(CheckpointMismatchError, match="lora_A"):
            PrithviSegmentation.from_pretrained(folder)

    @pytest.mark.parametrize(
        ("damage", "error", "message"),
        [
            (lambda config: config.pop("build"), InvalidSavedModelError,
             "config.json: it has no 'build' entry (how to rebuild the model), which save_pretrained always writes. "
             "Save the model again with save_pretrained, or copy the whole folder again from where it was saved."),
            (lambda config: config.pop("dtype"), InvalidSavedModelError,
             "config.json: it has no 'dtype' entry (the weights' dtype), which save_pretrained always writes."),
            (lambda config: config["base_model"].pop("fingerprint"), InvalidSavedModelError,
             "config.json: it has no 'base_model.fingerprint' entry (the base weights' fingerprint), which"),
            (lambda config: config["build"]["arguments"].update(lora_rank=8), InvalidArgumentError,
             "config.json: its 'build' entry is refused: build_prithvi_600 got unknown argument 'lora_rank' (did you "
             "mean 'lora_r'?)"),
            (lambda config: config.pop("format_version"), InvalidSavedModelError,
             "config.json: it has no format_version, which save_pretrained always writes."),
            (lambda config: config.update(format_version="1"), InvalidSavedModelError,
             "config.json: its format_version must be a whole number of at least 1 (this axs_lib writes 1), not '1'."),
            (None, InvalidSavedModelError, "adapter_model.safetensors: truncated: its header lists"),
        ],
        ids=["no-build", "no-dtype", "no-fingerprint", "unknown-build-argument", "no-format-version",
             "format-version-a-string", "truncated-adapter"],
    )
    def test_a_damaged_or_hand_edited_folder_gets_one_error_naming_the_file_and_the_problem(
        self, weights, tmp_path, damage, error, message
    ):
        folder = build_prithvi_600(num_classes=2, img_size=TILE).save_pretrained(tmp_path / "m")
        if damage is None:
            adapter = folder / "adapter_model.safetensors"
            adapter.write_bytes(adapter.read_bytes()[:-64])
        else:
            config = json.loads((folder / "config.json").read_text())
            damage(config)
            (folder / "config.json").write_text(json.dumps(config))
        with pytest.raises(error) as raised:
            PrithviSegmentation.from_pretrained(folder)
        assert f"Cannot load the saved model file {folder}/{message}" in str(raised.value)

    @pytest.mark.parametrize("kind", ["terramind-weights", "empty", "published-prithvi"])
    def test_folders_that_are_not_saved_models_get_one_clear_error(self, tiny_weights, tmp_path, kind):
        folder = {
            "terramind-weights": tiny_weights / TERRAMIND_LARGE,
            "empty": tmp_path / "nothing",
            "published-prithvi": tiny_weights / PRITHVI_600M,
        }[kind]
        folder.mkdir(exist_ok=True)
        with pytest.raises(NotASavedModelError, match="is not a saved axs_lib model") as error:
            PrithviSegmentation.from_pretrained(folder)
        assert isinstance(error.value, AxsModelError) and isinstance(error.value, ValueError)

    def test_a_path_that_does_not_exist_is_file_not_found(self, tmp_path):
        with pytest.raises(SavedModelNotFoundError) as error:
            PrithviSegmentation.from_pretrained(tmp_path / "typo")
        assert isinstance(error.value, FileNotFoundError)

    def test_a_file_that_is_not_a_lightning_checkpoint_is_refused(self, tiny_weights, tmp_path):
        state_only = tmp_path / "run_state_dict.ckpt"
        torch.save({"model.head.weight": torch.zeros(1)}, state_only)
        with pytest.raises(NotASavedModelError, match="not a Lightning checkpoint"):
            PrithviSegmentation.from_pretrained(state_only)
        with pytest.raises(NotASavedModelError, match="not a readable torch checkpoint"):
            PrithviSegmentation.from_pretrained(tiny_weights / PRITHVI_600M / "config.json")


class TestTrainingInterfaces:
    def test_logits_are_a_tensor_that_terratorch_reads_as_model_output(self, weights, images):
        model = build_prithvi_600(num_classes=3, img_size=TILE)
        out = model(images)
        assert isinstance(out, torch.Tensor) and out.shape == (2, 3, TILE, TILE)
        assert type(out.output) is torch.Tensor and torch.equal(out.output, out) and not out.auxiliary_heads
        assert type(out.softmax(1)) is torch.Tensor and type(out + 1) is torch.Tensor
        out.output.sum().backward()
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)

    def test_logits_round_trip_through_torch_save_and_load_as_an_ordinary_tensor(self, weights, images, tmp_path):
        with torch.no_grad():
            out = build_prithvi_600(num_classes=3, img_size=TILE)(images)
        torch.save({"logits": out}, tmp_path / "logits.pt")
        loaded = torch.load(tmp_path / "logits.pt")["logits"]  # weights_only, torch's default
        assert type(loaded) is torch.Tensor and torch.equal(loaded, out.output)

    def test_a_terratorch_task_trains_the_model_in_training_mode_and_it_saves_like_any_other(self, weights, images, tmp_path):
        from terratorch.tasks import SemanticSegmentationTask

        model = build_prithvi_600(num_classes=2, img_size=TILE).train()  # Lightning keeps the mode it is given
        head_before = model.model.head.head[-1].weight.detach().clone()
        task = SemanticSegmentationTask(model=model, model_args={"num_classes": 2}, loss="ce", ignore_index=-1, lr=1e-2)
        in_eval = eval_modules_in_training_forwards(model)
        fit_two_steps(task, [{"image": image, "mask": torch.randint(0, 2, (TILE, TILE))} for image in torch.cat([images, images])])
        assert in_eval == [[], []], "every module trains in training mode"
        assert not torch.equal(model.model.head.head[-1].weight, head_before)
        model.eval()
        reloaded = PrithviSegmentation.from_pretrained(model.save_pretrained(tmp_path / "m"))
        assert torch.equal(logits(reloaded, images), logits(model, images))
