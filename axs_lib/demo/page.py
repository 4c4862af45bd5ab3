"""The demo's one page: its images side by side, each with the command that made it, and the scores.

``index.html`` shows the PNGs where they lie (relative links); ``index.png`` is the same panels and scores as
one image, for a terminal user or a report.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

PANEL_SIDE = 256
MARGIN = 12
TEXT_ROWS = 4
LINE_HEIGHT = 14


@dataclass(frozen=True)
class Panel:
    """One image on the page: a title, the PNG, and how it was made (a command line, or a sentence)."""

    title: str
    image: Path
    made_by: str


def write_page(folder: Path, title: str, panels: Sequence[Panel], scores: Sequence[str], notes: Sequence[str] = ()) -> tuple[Path, Path]:
    """Write ``folder/index.html`` and ``folder/index.png``; returns both paths."""
    folder.mkdir(parents=True, exist_ok=True)
    page = folder / "index.html"
    _atomic_text(page, _html(folder, title, panels, scores, notes))
    picture = folder / "index.png"
    _composite(panels, [title, *scores]).save(_partial(picture), format="PNG")
    os.replace(_partial(picture), picture)
    return page, picture


def _html(folder: Path, title: str, panels: Sequence[Panel], scores: Sequence[str], notes: Sequence[str]) -> str:
    figures = "\n".join(
        f'<figure><img src="{html.escape(os.path.relpath(panel.image, folder))}" alt="{html.escape(panel.title)}">'
        f"<figcaption><b>{html.escape(panel.title)}</b><br><code>{html.escape(panel.made_by)}</code></figcaption></figure>"
        for panel in panels
    )
    score_items = "\n".join(f"<li>{html.escape(score)}</li>" for score in scores)
    note_items = "\n".join(f"<p>{html.escape(note)}</p>" for note in notes)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
.panels {{ display: flex; flex-wrap: wrap; gap: 1em; }}
figure {{ margin: 0; width: {PANEL_SIDE}px; }}
img {{ width: {PANEL_SIDE}px; height: {PANEL_SIDE}px; image-rendering: pixelated; border: 1px solid #ccc; }}
figcaption code {{ font-size: 0.75em; word-break: break-all; }}
</style></head>
<body>
<h1>{html.escape(title)}</h1>
<div class="panels">
{figures}
</div>
<h2>Scores</h2>
<ul>
{score_items}
</ul>
{note_items}
</body></html>
"""


def _composite(panels: Sequence[Panel], lines: Sequence[str]) -> Image.Image:
    font = ImageFont.load_default()
    width = MARGIN + len(panels) * (PANEL_SIDE + MARGIN)
    panel_top = MARGIN + LINE_HEIGHT * (len(lines) + 1)
    height = panel_top + PANEL_SIDE + MARGIN + LINE_HEIGHT * TEXT_ROWS
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for row, line in enumerate(lines):
        draw.text((MARGIN, MARGIN + row * LINE_HEIGHT), line, fill="black", font=font)
    for index, panel in enumerate(panels):
        left = MARGIN + index * (PANEL_SIDE + MARGIN)
        with Image.open(panel.image) as image:
            canvas.paste(image.convert("RGB").resize((PANEL_SIDE, PANEL_SIDE), Image.NEAREST), (left, panel_top))
        draw.text((left, panel_top + PANEL_SIDE + 4), panel.title, fill="black", font=font)
        draw.text((left, panel_top + PANEL_SIDE + 4 + LINE_HEIGHT), panel.image.name, fill="dimgray", font=font)
    return canvas


def _atomic_text(path: Path, text: str) -> None:
    _partial(path).write_text(text, encoding="utf-8")
    os.replace(_partial(path), path)


def _partial(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial")
