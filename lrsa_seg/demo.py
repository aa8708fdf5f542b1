"""The live demo: drop an image, see its segmentation (``lrsa-seg demo``, a Gradio app).

The app shows the overlay with a legend of the classes present (:meth:`Segmenter.overlay`), the
share of the image's pixels per class, the inference time, and offers the label map as a PNG
(class indices, palette colours) that the API returns too, so a client can compare pixels.
Gradio is an optional extra (``pip install -e '.[demo]'``); only :func:`build_app` imports it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import USER_ERRORS
from .inference import Segmenter
from .visualize import save_label_png

API_NAME = "segment"
"""The endpoint that segments one image: ``client.predict(handle_file(PATH), api_name="/segment")``."""

AREA_HEADERS = ["class", "pixels", "area (%)"]

# System fonts only: the page loads nothing from the network (the default theme asks Google Fonts).
_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]
_MONO_FONTS = ["ui-monospace", "monospace"]


def spread(paths: Sequence[Path], count: int) -> list[Path]:
    """``count`` of ``paths`` (sorted) spread evenly from the first to the last; all if there are fewer."""
    ordered = sorted(paths)
    if len(ordered) <= count:
        return ordered
    picks = np.linspace(0, len(ordered) - 1, count).round().astype(int)
    return [ordered[i] for i in picks]


def class_areas(labels: torch.Tensor | np.ndarray, class_names: Sequence[str]) -> list[list[Any]]:
    """Rows ``[class, pixels, % of the image]`` for the classes present, largest first (percent to 0.01)."""
    values = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    counts = np.bincount(values.ravel().astype(np.int64), minlength=len(class_names))
    total = max(int(values.size), 1)
    present = [int(k) for k in np.argsort(-counts, kind="stable") if counts[k] > 0]
    return [[class_names[k], int(counts[k]), round(100.0 * counts[k] / total, 2)] for k in present]


class DemoSegmenter:
    """What one request of the app computes, without Gradio: the app wraps :meth:`__call__`.

    Args:
        segmenter: the model with its classes and palette (runs its fused copy).
        output_dir: where the label maps are written (one file per request; Gradio copies them to its cache).
    """

    def __init__(self, segmenter: Segmenter, output_dir: str | os.PathLike[str]) -> None:
        self.segmenter = segmenter
        self.output_dir = Path(output_dir)

    def __call__(self, image_path: str | None) -> tuple[np.ndarray, list[list[Any]], str, str]:
        """Segment the image file: ``(overlay, area rows, timing text, label map PNG path)``.

        Raises ``ValueError`` when there is no image and a :data:`~lrsa_seg.errors.USER_ERRORS` error
        naming the file when it cannot be read.
        """
        if not image_path:
            raise ValueError("no image: upload one or click an example")
        image = Path(image_path)
        start = time.perf_counter()
        labels = self.segmenter(image)  # reads it upright (EXIF) as `lrsa-seg segment` does
        seconds = time.perf_counter() - start
        assert isinstance(labels, torch.Tensor)
        height, width = labels.shape
        label_png = self.output_dir / uuid.uuid4().hex / f"{image.stem}_labels.png"  # one folder per request
        label_png.parent.mkdir(parents=True)
        save_label_png(labels.numpy(), label_png, self.segmenter.palette)
        device = self.segmenter.device.type.upper()
        timing = f"Inference: **{seconds * 1000:.0f} ms** for {height} x {width} pixels (fused model, {device})"
        rows = class_areas(labels, self.segmenter.class_names)
        return self.segmenter.overlay(image, labels), rows, timing, str(label_png)


def describe(segmenter: Segmenter) -> str:
    """One line about the model: its name, number of classes and dataset."""
    config = getattr(segmenter.source_model, "config", {}) or {}
    name = config.get("model", type(segmenter.source_model).__name__)
    dataset = segmenter.metadata.get("dataset")
    parts = [f"`{name}`", f"{segmenter.num_classes} classes" + (f" ({dataset})" if dataset else "")]
    return " · ".join(parts)


def build_app(
    segmenter: Segmenter,
    examples: Sequence[str | os.PathLike[str]] = (),
    title: str = "LRFormer: semantic segmentation with Low-Resolution Self-Attention",
    note: str | None = None,
) -> Any:
    """The Gradio app (``gradio.Blocks``): an image upload, ``examples``, and the outputs of :class:`DemoSegmenter`.

    Args:
        segmenter: the model to run.
        examples: image files offered as one-click examples.
        title: the page's heading.
        note: a line shown under the heading (e.g. that the weights are untrained).

    Returns:
        The unlaunched app; its endpoint :data:`API_NAME` takes an image file and returns the overlay,
        the class areas (``{"headers", "data"}``), the timing text and the label map PNG.
    """
    import gradio as gr

    label_maps = tempfile.mkdtemp(prefix="lrsa-seg-demo-")
    run = DemoSegmenter(segmenter, label_maps)

    def segment(image_path: str | None) -> tuple[np.ndarray, list[list[Any]], str, str]:
        try:
            return run(image_path)
        except (ValueError, *USER_ERRORS) as err:
            raise gr.Error(str(err)) from err

    with gr.Blocks(title="lrsa-seg demo") as app:
        gr.Markdown(f"# {title}\n{describe(segmenter)}" + (f"\n\n{note}" if note else ""))
        with gr.Row():
            with gr.Column():
                image = gr.Image(
                    type="filepath", label="Image", sources=["upload", "clipboard"], height=360, elem_id="image"
                )
                button = gr.Button("Segment", variant="primary", elem_id="segment")
                examples_row = gr.Column()
            with gr.Column():
                overlay = gr.Image(label="Segmentation", format="png", interactive=False, height=360, elem_id="overlay")
                timing = gr.Markdown(elem_id="timing")
                areas = gr.Dataframe(
                    headers=AREA_HEADERS,
                    datatype=["str", "number", "number"],
                    label="Class areas (% of the image's pixels)",
                    interactive=False,
                    elem_id="areas",
                )
                label_map = gr.File(label="Label map (PNG: class index per pixel)", interactive=False, elem_id="labels")
        outputs = [overlay, areas, timing, label_map]
        button.click(segment, inputs=[image], outputs=outputs, api_name=API_NAME)
        image.upload(segment, inputs=[image], outputs=outputs, api_visibility="private")
        if examples:
            with examples_row:
                gr.Examples(
                    examples=[[str(path)] for path in examples],
                    inputs=[image],
                    outputs=outputs,
                    fn=segment,
                    run_on_click=True,
                    cache_examples=False,
                    examples_per_page=len(examples),
                    label="Examples: click one",
                )
    weakref.finalize(app, shutil.rmtree, label_maps, True)  # Gradio keeps its own copies of what it served
    return app


def theme() -> Any:
    """Gradio's default theme with system fonts (nothing fetched from the network)."""
    import gradio as gr

    return gr.themes.Default(font=_FONTS, font_mono=_MONO_FONTS)
