"""The exceptions this library raises. Each message says what went wrong and what to do about it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class AxsModelError(Exception):
    """Base class of every error raised by ``axs_lib``."""


class CheckpointNotFoundError(AxsModelError, FileNotFoundError):
    """A checkpoint is not on this machine.

    Attributes:
        model: catalog name of the missing model.
        searched: the places that were looked at, in order.
    """

    def __init__(self, model: str, searched: Sequence[Path], download_command: str):
        self.model = model
        self.searched = list(searched)
        places = "\n".join(f"  - {place}" for place in self.searched) or "  (nowhere: no search location exists)"
        super().__init__(
            f"No checkpoint for {model} found. Looked in:\n{places}\n"
            f"Download it with:  {download_command}\n"
            "or pass checkpoint_path=<file or folder>, or set AXS_WEIGHTS_DIR, "
            "or use pretrained=False for a randomly initialised model."
        )


class NoModelsFoundError(AxsModelError, FileNotFoundError):
    """No known checkpoint is on this machine at all."""

    MESSAGE = "No models found. Please download models first."

    def __init__(self, download_command: str = "axs-setup"):
        super().__init__(f"{self.MESSAGE}\nRun:  {download_command}")


class InvalidWeightsDirError(AxsModelError, NotADirectoryError):
    """``AXS_WEIGHTS_DIR`` names something that is not a folder."""

    def __init__(self, path: Path):
        self.path = path
        super().__init__(
            f"AXS_WEIGHTS_DIR must be a folder, but {path} is a file. Point it at the folder that holds the "
            "model folders (e.g. the one axs-setup --weights-dir downloaded into), or unset it."
        )


class CorruptCheckpointError(AxsModelError, ValueError):
    """A checkpoint file exists but cannot be read (truncated download, wrong format, not a state dict)."""

    def __init__(self, path: Path, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(
            f"Cannot read checkpoint {path}: {reason}\n"
            "The file is probably truncated or corrupt: delete it and download it again "
            "(axs-setup --models <name>)."
        )


class CheckpointMismatchError(AxsModelError, ValueError):
    """A checkpoint does not fit the model built for it: wrong model, wrong size, or incomplete."""

    SHOWN = 5

    def __init__(
        self,
        path: Path,
        model: str,
        missing: Sequence[str] = (),
        unexpected: Sequence[str] = (),
        mismatched: Sequence[str] = (),
        looks_like: str | None = None,
    ):
        self.path = path
        self.model = model
        self.looks_like = looks_like
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)
        parts = []
        for label, keys in (
            ("missing from the checkpoint", self.missing),
            ("not expected by the model", self.unexpected),
            ("with the wrong shape", self.mismatched),
        ):
            if keys:
                more = f" (+{len(keys) - self.SHOWN} more)" if len(keys) > self.SHOWN else ""
                noun = "key" if len(keys) == 1 else "keys"
                parts.append(f"  {len(keys)} {noun} {label}: {', '.join(keys[: self.SHOWN])}{more}")
        question = (
            f"The file looks like {looks_like}: pass that model's file instead."
            if looks_like
            else "Is this the right file for this model?"
        )
        super().__init__(
            f"Checkpoint {path} does not match {model}:\n" + "\n".join(parts) + f"\n{question} No weights were loaded."
        )

    def looking_like(self, description: str) -> CheckpointMismatchError:
        """The same error, saying which other model the file looks like."""
        return CheckpointMismatchError(
            self.path, self.model, self.missing, self.unexpected, self.mismatched, looks_like=description
        )


class InvalidArgumentError(AxsModelError, ValueError):
    """An argument of a public factory is out of range or unknown."""


class BackboneBuildError(AxsModelError, RuntimeError):
    """A registered model failed to build; the original exception is chained as ``__cause__``."""

    def __init__(self, name: str, cause: BaseException, kind: str = "backbone"):
        super().__init__(f"Failed to build {kind} {name}: {type(cause).__name__}: {cause}")


class WrongModuleImportError(AxsModelError, ImportError):
    """A public name was imported from the wrong module."""

    def __init__(self, name: str, module: str, right_module: str):
        super().__init__(
            f"cannot import {name!r} from {module!r}: it lives in {right_module!r}. "
            f"Use:  from {right_module} import {name}",
            name=name,
        )


class TerraTorchUnavailableError(AxsModelError, ImportError):
    """TerraTorch (or one of its model dependencies) cannot be imported."""

    def __init__(self, cause: BaseException):
        super().__init__(
            f"TerraTorch is required to build models but could not be imported ({type(cause).__name__}: {cause}). "
            "Install it with:  pip install terratorch"
        )


class InvalidSceneError(AxsModelError, ValueError):
    """A scene, its tiling or its output cannot be used as asked (wrong bands, no CRS, bad tile or overlap)."""


class OutputExistsError(AxsModelError, FileExistsError):
    """The output of a scene run exists already, or a partial output of a different run is in the way."""


class NotASavedModelError(AxsModelError, ValueError):
    """A path given to ``from_pretrained`` is neither a folder written by ``save_pretrained`` nor a Lightning checkpoint."""

    def __init__(self, path: Path, reason: str):
        self.path = path
        super().__init__(
            f"{path} is not a saved axs_lib model: {reason}\n"
            "SegmentationModel.from_pretrained reads a folder written by SegmentationModel.save_pretrained "
            "(config.json with model_type 'axs_prithvi_segmentation') or a TerraTorch Lightning checkpoint (.ckpt) "
            "of a segmentation task whose backbone is an axs_* model. For the published foundation weights use "
            "build_prithvi_600(checkpoint_path=...) or build_terramind_*(checkpoint_path=...)."
        )


class BaseModelMismatchError(AxsModelError, ValueError):
    """The base weights found for a saved fine-tuned model are not the ones it was trained from."""

    def __init__(self, folder: Path, base: Path, expected: str, found: str):
        self.folder, self.base, self.expected, self.found = folder, base, expected, found
        super().__init__(
            f"{folder} was fine-tuned from base weights with fingerprint {expected}, but the base found at {base} "
            f"has fingerprint {found}. Loading it would give a different model. Pass checkpoint_path=<the original "
            "base weights>, or save the model with include_base=True to make the folder self-contained."
        )


class SavedModelNotFoundError(AxsModelError, FileNotFoundError):
    """``from_pretrained`` was given a path that does not exist."""

    def __init__(self, path: Path):
        self.path = path
        super().__init__(
            f"{path} does not exist. Pass a folder written by SegmentationModel.save_pretrained "
            "or a TerraTorch Lightning checkpoint (.ckpt)."
        )


class UnknownTokenizerPresetError(AxsModelError, ValueError):
    """A checkpoint folder's ``config.json`` names a tokenizer encoder or decoder preset nobody defines."""

    def __init__(self, config: Path, argument: str, preset: object, known: Sequence[str]):
        self.config, self.argument, self.preset = config, argument, preset
        super().__init__(
            f"{config} sets {argument} to {preset!r}, a tokenizer preset that neither TerraTorch nor axs_lib defines. "
            f"Use one of: {', '.join(known)}; or delete {config.name} to build the published architecture."
        )


class DemoStepError(AxsModelError, RuntimeError):
    """A command the demo runs failed; the command printed its own error before."""

    def __init__(self, argv: Sequence[str], code: int):
        self.argv, self.code = list(argv), code
        super().__init__(f"the demo's step `axs-scenes {' '.join(argv)}` failed with exit code {code} (its error is above)")


class WeightsDirNotFoundError(AxsModelError, FileNotFoundError):
    """``AXS_WEIGHTS_DIR`` is set to a folder that does not exist (or to a symbolic link to nothing)."""

    def __init__(self, path: Path, link_target: str | None = None):
        self.path, self.link_target = path, link_target
        what = (
            f"a symbolic link to {link_target}, which does not exist (a volume that is not mounted, or a moved folder?)"
            if link_target is not None
            else "which does not exist"
        )
        super().__init__(
            f"AXS_WEIGHTS_DIR is set to {path}, {what}. Point it at the folder that holds the model folders "
            f"(download into one with: axs-setup --weights-dir {path}), or unset it to search weights/hf and the "
            "Hugging Face cache."
        )


class DanglingLinkError(AxsModelError, FileNotFoundError):
    """A model file or folder is a symbolic link whose target does not exist."""

    def __init__(self, path: Path, link_target: str, download_command: str):
        self.path, self.link_target = path, link_target
        super().__init__(
            f"{path} is a symbolic link to {link_target}, which does not exist (a volume that is not mounted, or a "
            f"Hugging Face cache file that was deleted?). Restore {link_target}, or delete the link and download "
            f"the model again:  {download_command}"
        )


class UnreadableCheckpointError(AxsModelError, PermissionError):
    """A checkpoint file exists but this user may not read it. The file itself may well be intact."""

    def __init__(self, path: Path):
        self.path = path
        super().__init__(
            f"Cannot read checkpoint {path}: permission denied. The file is not known to be damaged, so do not "
            "delete it: give this user read access to it and its folders (e.g. chmod a+r on the file, a+x on the "
            "folders) or run as a user who can read it."
        )


class UnsafeCheckpointError(AxsModelError, ValueError):
    """A pickled checkpoint holds Python objects that ``torch.load(weights_only=True)`` refuses to create."""

    def __init__(self, path: Path, refused: str):
        self.path, self.refused = path, refused
        super().__init__(
            f"Checkpoint {path} holds more than tensors: torch.load(weights_only=True) refuses {refused}, and axs_lib "
            "never runs pickled code. The file is not damaged: it was saved with Python objects (a whole model, "
            "a training checkpoint). If you trust its source, load it once with torch.load(weights_only=False), save "
            "only its state dict (names to tensors) with torch.save or safetensors and pass that file; or use the "
            "published file (axs-setup --models <name>)."
        )


class InvalidSavedModelError(AxsModelError, ValueError):
    """A folder written by ``save_pretrained`` has a damaged or hand-edited file."""

    def __init__(
        self,
        path: Path,
        problem: str,
        fix: str = "Save the model again with save_pretrained, or copy the whole folder again from where it was saved.",
    ):
        self.path = path
        super().__init__(f"Cannot load the saved model file {path}: {problem}. {fix}")


class UnsupportedModelError(AxsModelError, NotImplementedError):
    """A model TerraTorch names that cannot be built; the message says why and what to use instead."""

    def __init__(self, name: str, reason: str, instead: str):
        super().__init__(f"{name} is not supported: {reason}. Use {instead}.")


class OutputLockedError(OutputExistsError):
    """Another run is writing the same scene output now (its lock is held)."""


class SceneInterruptedError(AxsModelError, OSError):
    """A scene run stopped on an operational fault (a full disk, an unreadable input); finished windows are kept.

    Attributes:
        problem: what went wrong; advice: what to do about it first.
        resume: what running again with the same arguments does, e.g. ``continue from window 13 of 40``.
        partial: the folder that keeps the finished windows.
    """

    def __init__(self, problem: str, advice: str, resume: str, partial: Path):
        self.problem, self.advice, self.resume, self.partial = problem, advice, resume, partial
        super().__init__(f"{problem}; {advice}, then call again with the same arguments to {resume} ({partial} is kept)")


class SceneReadError(SceneInterruptedError, ValueError):
    """The input scene cannot be read part-way through (a truncated or corrupt file)."""


class UntrustedItemError(InvalidSceneError):
    """A STAC item, collection or search result asks for something it may not: an asset href of a refused kind,
    a file that is not a raster the library reads, or more data than the limits allow."""


class SourceReadError(InvalidSceneError):
    """A STAC item, collection or search cannot be read: not found, not JSON, not STAC, or a server that fails."""
