"""An exclusive lock per scene output, so two runs never write one partial folder at once.

The lock is ``fcntl.flock`` on ``.OUT.tif.lock`` beside the output, which holds the owner's pid and host. The
kernel releases it when its process ends, even by ``SIGKILL``, so a lock is never stale. It is taken
without waiting: a second run of the same output is refused at once, naming the process that holds it.
The file is removed on release; a run that opened it just before is told by its inode and opens it again.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path
from typing import IO

from ..errors import InvalidSceneError, OutputLockedError


class OutputLock:
    """The lock of the output ``path``: :meth:`acquire`, then :meth:`release` (also after a failure)."""

    def __init__(self, path: Path):
        self.output = path
        self.path = path.with_name(f".{path.name}.lock")
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`OutputLockedError` naming its holder; never waits."""
        while self._file is None:
            try:
                handle = open(self.path, "a+")
            except OSError as error:
                raise InvalidSceneError(
                    f"cannot write in the output folder {self.path.parent} ({error.strerror}): choose a writable folder"
                ) from error
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "a process that is starting"
                handle.close()
                raise OutputLockedError(
                    f"{self.output} is being written by another run ({holder}): wait for it to end, or write to another file"
                ) from None
            if _is_file_at(handle, self.path):
                self._file = handle
            else:
                handle.close()
        self._file.truncate(0)
        self._file.write(f"pid {os.getpid()} on {socket.gethostname()}")
        self._file.flush()

    def release(self) -> None:
        """Remove the lock file and let the lock go; nothing when not held."""
        if self._file is not None:
            self.path.unlink(missing_ok=True)
            self._file.close()
            self._file = None


def _is_file_at(handle: IO[str], path: Path) -> bool:
    """Whether the open ``handle`` is still the file at ``path`` (its holder may have removed it meanwhile)."""
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
    except FileNotFoundError:
        return False
