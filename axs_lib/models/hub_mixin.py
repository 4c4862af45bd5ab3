"""``save_pretrained`` / ``from_pretrained`` for any fine-tunable model, in the manner of huggingface_hub's
``PyTorchModelHubMixin``: the mixin owns what every model shares (the folder written atomically, an earlier
save replaced, a missing path refused, eval mode on load); a model class implements two hooks:

- ``_save_pretrained(self, folder, **options)`` writes the model's files into ``folder``, a new empty folder;
- ``_from_pretrained(cls, path, **options)`` builds the model from what ``path`` holds;

and may say, with ``_replaceable(cls, folder)``, which non-empty folders a save may replace.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..errors import InvalidArgumentError, SavedModelNotFoundError

logger = logging.getLogger(__name__)

Model = TypeVar("Model", bound="SavedModelMixin")


class SavedModelMixin:
    """Adds :meth:`save_pretrained` and :meth:`from_pretrained` to an ``nn.Module`` implementing the hooks."""

    def save_pretrained(self, folder: str | os.PathLike, **options: Any) -> Path:
        """Write the model to ``folder`` (``options`` are the model's own, e.g. ``include_base``) and return it.

        The folder is written under a temporary name and renamed into place, so it is either complete or
        absent; an earlier save in the same folder is replaced. A non-empty folder that is not an earlier
        save is refused.
        """
        folder = Path(folder).expanduser()
        if folder.exists() and not folder.is_dir():
            raise InvalidArgumentError(f"{folder} is a file; save_pretrained writes a folder")
        if folder.is_dir() and any(folder.iterdir()) and not self._replaceable(folder):
            raise InvalidArgumentError(
                f"{folder} is not empty and is not an earlier save_pretrained folder; choose a new or empty folder"
            )
        write_atomically(folder, lambda target: self._save_pretrained(target, **options))
        logger.info("saved %s to %s", type(self).__name__, folder)
        return folder

    @classmethod
    def from_pretrained(cls: type[Model], path: str | os.PathLike, **options: Any) -> Model:
        """The model saved in ``path`` (``options`` are the model's own, e.g. ``device``), in eval mode.

        Raises:
            SavedModelNotFoundError: ``path`` does not exist.
        """
        path = Path(path).expanduser()
        if not path.exists():
            raise SavedModelNotFoundError(path)
        return cls._from_pretrained(path, **options).eval()

    def _save_pretrained(self, folder: Path, **options: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not implement _save_pretrained")

    @classmethod
    def _from_pretrained(cls: type[Model], path: Path, **options: Any) -> Model:
        raise NotImplementedError(f"{cls.__name__} does not implement _from_pretrained")

    @classmethod
    def _replaceable(cls, folder: Path) -> bool:
        """Whether the non-empty ``folder`` is an earlier save that a new one may replace (default: never)."""
        return False


def write_atomically(folder: Path, write: Callable[[Path], None]) -> None:
    """Run ``write`` on a temporary sibling folder, then rename it to ``folder`` (replacing an earlier save)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    try:
        write(partial)
        partial.chmod(0o755)
        if folder.exists():
            previous = folder.with_name(f".{folder.name}.replaced-{uuid.uuid4().hex[:8]}")
            folder.rename(previous)
            partial.rename(folder)
            shutil.rmtree(previous)
        else:
            partial.rename(folder)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
