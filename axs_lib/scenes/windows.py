"""Window planning: the scene is cut into non-overlapping *cores*; each core is read with context around it.

A window is ``tile`` x ``tile`` pixels. Its core, the part kept in the output, is ``tile - overlap`` pixels
wide and sits inside the window with at least ``overlap // 2`` pixels of context on every side that is not
a scene edge; the rest of the window is trimmed (TerraTorch's ``delta``). Cores partition the scene, so every
output pixel comes from exactly one window: a model whose receptive field reaches no further than
``overlap // 2`` pixels gives the whole-scene result, and finished cores can be written as they come.
Windows that reach past the scene are shifted back inside it where the scene is large enough, and padded
by reflection where it is not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidSceneError


@dataclass(frozen=True)
class Window:
    """One model input and the core of its output, in scene pixel coordinates.

    Attributes:
        row, col: top-left of the ``tile`` x ``tile`` model input; negative or past the scene where padded.
        core_row, core_col, core_height, core_width: the output pixels this window produces.
    """

    row: int
    col: int
    core_row: int
    core_col: int
    core_height: int
    core_width: int

    @property
    def name(self) -> str:
        """A stable name from the core's position, e.g. ``r000192_c000384``."""
        return f"r{self.core_row:06d}_c{self.core_col:06d}"

    def seed(self, seed: int) -> int:
        """A 63-bit seed derived from ``seed`` and the core's position only."""
        state = np.random.SeedSequence([seed & 0xFFFFFFFF, seed >> 32 & 0xFFFFFFFF, self.core_row, self.core_col])
        return int(state.generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))

    def core_in_tile(self) -> tuple[slice, slice]:
        """Where the core lies inside the model's ``tile`` x ``tile`` output."""
        top, left = self.core_row - self.row, self.core_col - self.col
        return slice(top, top + self.core_height), slice(left, left + self.core_width)


@dataclass(frozen=True)
class WindowPlan:
    """All windows of a ``height`` x ``width`` scene, row by row."""

    height: int
    width: int
    tile: int
    overlap: int
    windows: tuple[Window, ...]

    def __len__(self) -> int:
        return len(self.windows)

    def cores_overlapping(self, top: int, left: int, height: int, width: int) -> list[Window]:
        """The windows whose cores overlap the ``height`` x ``width`` rectangle at (``top``, ``left``), row by row.

        Cores start every ``tile - overlap`` pixels along each axis, so this is arithmetic, not a search.
        """
        step = self.tile - self.overlap
        columns = -(-self.width // step)
        return [
            self.windows[row * columns + column]
            for row in range(top // step, (top + height - 1) // step + 1)
            for column in range(left // step, (left + width - 1) // step + 1)
        ]


def check_tiling(tile: int, overlap: int, multiple_of: int = 1) -> None:
    """Refuse a tile that is not a positive multiple of ``multiple_of`` or an overlap of half the tile or more."""
    if tile <= 0 or tile % multiple_of:
        raise InvalidSceneError(f"`tile` must be a positive multiple of the model's patch size {multiple_of}, got {tile}")
    if not 0 <= 2 * overlap < tile:
        raise InvalidSceneError(f"`overlap` must be at least 0 and less than half of `tile` ({tile}), got {overlap}")


def plan_windows(height: int, width: int, tile: int, overlap: int) -> WindowPlan:
    """The windows covering a ``height`` x ``width`` scene (see the module docstring)."""
    check_tiling(tile, overlap)
    rows = _axis(height, tile, overlap)
    cols = _axis(width, tile, overlap)
    windows = tuple(
        Window(start_r, start_c, core_r, core_c, size_r, size_c)
        for start_r, core_r, size_r in rows
        for start_c, core_c, size_c in cols
    )
    return WindowPlan(height, width, tile, overlap, windows)


def _axis(size: int, tile: int, overlap: int) -> list[tuple[int, int, int]]:
    """(window start, core start, core size) along one axis."""
    core, margin = tile - overlap, overlap // 2
    spans = []
    for core_start in range(0, size, core):
        core_size = min(core, size - core_start)
        start = max(min(core_start - margin, size - tile), -margin)
        spans.append((start, core_start, core_size))
    return spans
