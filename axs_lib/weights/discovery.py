"""Which checkpoint file on this machine belongs to a known model.

Search order: an explicit ``checkpoint_path`` (file or folder); the folder named by ``AXS_WEIGHTS_DIR``;
the default weights folder (:data:`DEFAULT_WEIGHTS_DIR`: the checkout's ``weights/hf/`` when the package runs
from a source checkout, else a per-user data folder, never inside site-packages); the Hugging Face cache
(``HF_HUB_CACHE``). Under each folder a model may be
in the plain layout (``<root>/<model name>/<file>``) or a hub snapshot
(``<root>/models--<org>--<name>/snapshots/<revision>/<file>``). A set ``AXS_WEIGHTS_DIR`` must exist: it
is never skipped in silence.

In a model folder the preferred file is a current ``model.safetensors`` conversion, then
``<published stem>.safetensors``, then the published ``.pt``. A damaged ``model.safetensors`` is an error
(:class:`~axs_lib.errors.CorruptCheckpointError`), never skipped in silence; so is a model file or folder
that is a symbolic link to nothing (:class:`~axs_lib.errors.DanglingLinkError`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants as hf_constants
from huggingface_hub.file_download import repo_folder_name

from .catalog import CONVERTED_FILENAME, KNOWN_MODELS, ModelSpec
from .provenance import converted_from, is_current
from ..errors import CheckpointNotFoundError, DanglingLinkError, InvalidWeightsDirError, WeightsDirNotFoundError

logger = logging.getLogger(__name__)

WEIGHTS_DIR_ENV = "AXS_WEIGHTS_DIR"


def _default_weights_dir() -> Path:
    """The checkout's ``weights/hf/`` when this package is a source checkout's (a ``pyproject.toml`` beside the
    ``axs_lib`` folder: ``pip install -e .``, or run from the checkout); otherwise, as for an install into
    site-packages or from a wheel, ``$XDG_DATA_HOME/axs_lib/weights/hf`` (``~/.local/share/axs_lib/weights/hf``)."""
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "axs_lib" / "__init__.py").is_file():
        return checkout / "weights" / "hf"
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "axs_lib" / "weights" / "hf"


DEFAULT_WEIGHTS_DIR = _default_weights_dir()
"""Where ``axs-setup`` downloads to and the search looks after ``AXS_WEIGHTS_DIR`` (see :func:`_default_weights_dir`)."""


@dataclass(frozen=True)
class CheckpointFile:
    """A checkpoint found on disk.

    Attributes:
        spec: the catalog entry it belongs to.
        path: the file to load.
        origin: where it was found (``"checkpoint_path"``, ``"AXS_WEIGHTS_DIR"``, ``"weights/hf"``, ``"HF cache"``).
    """

    spec: ModelSpec
    path: Path
    origin: str

    @property
    def format(self) -> str:
        return "safetensors" if self.path.suffix == ".safetensors" else "pt"

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


def setup_command(*, model: str | None = None, weights_dir: Path | None = None, convert_only: bool = False) -> str:
    """The ``axs-setup`` command line that downloads (or converts) ``model`` into ``weights_dir``."""
    words = ["axs-setup"]
    if model is not None:
        words += ["--models", model]
    if weights_dir is not None and Path(weights_dir).resolve() != DEFAULT_WEIGHTS_DIR.resolve():
        words += ["--weights-dir", str(weights_dir)]
    if convert_only:
        words.append("--convert-only")
    return " ".join(words)


def search_roots() -> list[tuple[str, Path]]:
    """The weights folders searched when no ``checkpoint_path`` is given, in order, labelled.

    Raises:
        WeightsDirNotFoundError: ``AXS_WEIGHTS_DIR`` is set to a path that does not exist or a dangling link.
        InvalidWeightsDirError: ``AXS_WEIGHTS_DIR`` names a file.
    """
    roots = []
    if os.environ.get(WEIGHTS_DIR_ENV):
        weights_dir = Path(os.environ[WEIGHTS_DIR_ENV]).expanduser()
        if not weights_dir.exists():
            raise WeightsDirNotFoundError(weights_dir, _dangling_target(weights_dir))
        if not weights_dir.is_dir():
            raise InvalidWeightsDirError(weights_dir)
        roots.append((WEIGHTS_DIR_ENV, weights_dir))
    roots.append(("weights/hf", DEFAULT_WEIGHTS_DIR))
    roots.append(("HF cache", Path(os.environ.get("HF_HUB_CACHE") or hf_constants.HF_HUB_CACHE).expanduser()))
    return roots


def find_checkpoint(
    spec: ModelSpec, checkpoint_path: str | os.PathLike | None = None, *, near: str | os.PathLike | None = None
) -> CheckpointFile:
    """Locate the checkpoint of ``spec``.

    Args:
        checkpoint_path: a file, a model folder, or a weights folder; when given, nothing else is searched.
        near: another model's checkpoint path; its folder and that folder's parent are searched first
            (how a generator finds the tokenizers stored beside TerraMind).

    Raises:
        CheckpointNotFoundError: listing every place that was looked at.
        DanglingLinkError: the file or folder where the model would be is a symbolic link to nothing.
    """
    if checkpoint_path is not None:
        explicit = Path(checkpoint_path).expanduser()
        _refuse_dangling(spec, explicit)
        if explicit.is_file():
            return CheckpointFile(spec, explicit, "checkpoint_path")
        found = (_find_in_folder(spec, explicit) or _find_under_root(spec, explicit)) if explicit.is_dir() else None
        if found is None:
            raise CheckpointNotFoundError(spec.name, [explicit], setup_command(model=spec.name))
        return CheckpointFile(spec, found, "checkpoint_path")

    roots = _near_roots(Path(near).expanduser()) if near is not None else []
    roots += search_roots()
    for origin, root in roots:
        found = _find_in_folder(spec, root) or _find_under_root(spec, root)
        if found is not None:
            return CheckpointFile(spec, found, origin)
    raise CheckpointNotFoundError(spec.name, [root for _, root in roots], setup_command(model=spec.name))


def find_all() -> dict[str, CheckpointFile]:
    """Every known model that has a checkpoint in the default search locations.

    A model whose file is a symbolic link to nothing is left out with a warning naming the link.
    """
    found = {}
    for name, spec in KNOWN_MODELS.items():
        try:
            found[name] = find_checkpoint(spec)
        except CheckpointNotFoundError:
            logger.debug("no checkpoint for %s", name)
        except DanglingLinkError as error:
            logger.warning("%s", error)
    return found


def _near_roots(anchor: Path) -> list[tuple[str, Path]]:
    """The anchor's folder and its parent; for a hub snapshot, the cache root holding ``models--*`` too."""
    folder = anchor.parent if anchor.is_file() else anchor
    roots = [folder, folder.parent]
    if folder.parent.name == "snapshots":
        roots.append(folder.parent.parent.parent)
    return [("checkpoint_path", root) for root in roots]


def _find_under_root(spec: ModelSpec, root: Path) -> Path | None:
    for folder in (root / spec.name, *_snapshot_folders(spec, root)):
        found = _find_in_folder(spec, folder)
        if found is not None:
            return found
    return None


def _snapshot_folders(spec: ModelSpec, root: Path) -> list[Path]:
    """Snapshots of ``spec.repo_id`` under a hub-cache-style root, the one ``refs/main`` names first."""
    repo_folder = root / repo_folder_name(repo_id=spec.repo_id, repo_type="model")
    snapshots = repo_folder / "snapshots"
    if not snapshots.is_dir():
        return []
    folders = sorted((p for p in snapshots.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    main_ref = repo_folder / "refs" / "main"
    if main_ref.is_file():
        main = snapshots / main_ref.read_text().strip()
        folders = [main] + [folder for folder in folders if folder != main]
    return folders


def _dangling_target(path: Path) -> str | None:
    """Where ``path`` points when it is a symbolic link whose target does not exist; ``None`` otherwise."""
    return os.readlink(path) if path.is_symlink() and not path.exists() else None


def _refuse_dangling(spec: ModelSpec, *paths: Path) -> None:
    for path in paths:
        target = _dangling_target(path)
        if target is not None:
            raise DanglingLinkError(path, target, setup_command(model=spec.name))


def _find_in_folder(spec: ModelSpec, folder: Path) -> Path | None:
    _refuse_dangling(spec, folder)
    if not folder.is_dir():
        return None
    published = folder / spec.filename
    converted = folder / CONVERTED_FILENAME
    _refuse_dangling(spec, published, converted, folder / f"{spec.stem}.safetensors")
    if converted.is_file() and converted_from(converted) == spec.filename:
        if not published.is_file() or is_current(converted, published):
            return converted
        logger.warning(
            "%s is older than %s; loading the .pt instead. Refresh it with: %s",
            converted,
            published,
            setup_command(model=spec.name, weights_dir=folder.parent, convert_only=True),
        )
    for candidate in (folder / f"{spec.stem}.safetensors", published):
        if candidate.is_file():
            return candidate
    return None
