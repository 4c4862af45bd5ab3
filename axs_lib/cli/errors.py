"""How every command-line tool reports a failure: one line, ``error: <message>``, on stderr, and an exit code.

Exit code 2 means the input was wrong (a library error that is also a ``ValueError``, ``FileNotFoundError``,
``FileExistsError``, ``NotADirectoryError`` or ``IsADirectoryError``: fix the command line or the files it
names); 1 means something failed while running (a full disk, a download, a damaged file found on the way).
"""

from __future__ import annotations

import sys

BAD_INPUT = 2
FAILED = 1
_BAD_INPUT_TYPES = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError)


def fail(message: object, error: BaseException | None = None, code: int | None = None) -> int:
    """Print ``message`` as one ``error:`` line on stderr and return the exit code: ``code`` when given, else
    :data:`BAD_INPUT` or :data:`FAILED` by the kind of ``error`` (:data:`FAILED` without one)."""
    text = " ".join(line.strip() for line in str(message).splitlines() if line.strip())
    print(f"error: {text}", file=sys.stderr)
    if code is not None:
        return code
    return BAD_INPUT if isinstance(error, _BAD_INPUT_TYPES) else FAILED
