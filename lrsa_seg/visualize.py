"""Pictures of label maps: palettes, colour overlays with a legend of the classes present, palette PNGs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .constants import IGNORE_INDEX

Palette = Sequence[tuple[int, int, int]]


def default_palette(num_colors: int = 256) -> list[tuple[int, int, int]]:
    """The PASCAL VOC colour map: distinct colours for any number of classes."""
    palette = []
    for index in range(num_colors):
        rgb, c = [0, 0, 0], index
        for shift in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((c >> channel) & 1) << shift
            c >>= 3
        palette.append((rgb[0], rgb[1], rgb[2]))
    return palette


def full_palette(palette: Palette | None) -> list[tuple[int, int, int]]:
    """``palette`` extended to 256 entries with :func:`default_palette` (every uint8 label has a colour)."""
    given = [tuple(int(v) for v in rgb) for rgb in (palette or ())][:256]
    return given + default_palette()[len(given) :]  # type: ignore[return-value]


def colorize(labels: np.ndarray, palette: Palette | None = None) -> np.ndarray:
    """``(H, W)`` integer labels -> ``(H, W, 3)`` uint8 colours (ignore value 255 black)."""
    colours = np.array(full_palette(palette), dtype=np.uint8)
    colours[IGNORE_INDEX] = 0
    return colours[np.asarray(labels).astype(np.int64).clip(0, 255)]


def save_label_png(labels: np.ndarray, path: str | Path, palette: Palette | None = None) -> None:
    """Write ``(H, W)`` labels as a palette PNG (values stay the class indices, colours show them)."""
    image = Image.fromarray(np.asarray(labels).astype(np.uint8), mode="P")
    image.putpalette([c for rgb in full_palette(palette) for c in rgb])
    image.save(path)


def overlay(
    image: np.ndarray,
    labels: np.ndarray,
    palette: Palette | None = None,
    class_names: Sequence[str] | None = None,
    alpha: float = 0.5,
    legend: bool = True,
) -> np.ndarray:
    """Class colours over an image, with a legend of the classes present to the right.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        labels: ``(H, W)`` integer class indices (255: unlabelled, left uncoloured).
        palette: one RGB colour per class (missing ones from :func:`default_palette`).
        class_names: names for the legend (None: the indices).
        alpha: weight of the class colours.
        legend: add the legend panel.

    Returns:
        ``(H, W + legend width, 3)`` uint8 RGB (``(H, W, 3)`` without legend).
    """
    image = np.asarray(image)
    labels = np.asarray(labels)
    if image.shape[:2] != labels.shape:
        raise ValueError(f"image {image.shape[:2]} and labels {labels.shape} differ in size")
    rgb = image.astype(np.float32)
    coloured = colorize(labels, palette).astype(np.float32)
    labelled = (labels != IGNORE_INDEX)[..., None]
    mixed = np.where(labelled, (1 - alpha) * rgb + alpha * coloured, rgb)
    picture = mixed.round().clip(0, 255).astype(np.uint8)
    if not legend:
        return picture
    present = [int(v) for v in np.unique(labels) if v != IGNORE_INDEX]
    return _with_legend(picture, present, full_palette(palette), class_names)


def _with_legend(
    picture: np.ndarray, present: list[int], palette: list[tuple[int, int, int]], class_names: Sequence[str] | None
) -> np.ndarray:
    """``picture`` with a white panel listing a colour swatch and name per class in ``present``."""
    font = ImageFont.load_default()
    names = [class_names[i] if class_names is not None and i < len(class_names) else str(i) for i in present]
    height = picture.shape[0]
    row, swatch, pad = 14, 10, 4
    columns = max(1, -(-len(present) * row // max(row, height - 2 * pad)))
    per_column = -(-len(present) // columns) if present else 0
    text_width = max((int(font.getlength(n)) for n in names), default=0)
    column_width = pad + swatch + pad + text_width + pad
    panel = Image.new("RGB", (columns * column_width + pad, height), "white")
    draw = ImageDraw.Draw(panel)
    for k, (index, name) in enumerate(zip(present, names)):
        x = pad + (k // per_column) * column_width
        y = pad + (k % per_column) * row
        draw.rectangle([x, y + 1, x + swatch, y + 1 + swatch], fill=palette[index], outline=(0, 0, 0))
        draw.text((x + swatch + pad, y), name, fill=(0, 0, 0), font=font)
    return np.concatenate([picture, np.asarray(panel)], axis=1)
