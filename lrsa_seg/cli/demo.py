"""``lrsa-seg demo``: a Gradio app to segment uploaded images in the browser (the ``[demo]`` extra)."""

from __future__ import annotations

import os
from pathlib import Path

from datamodules.camvid import BUNDLED_ROOT
from datamodules.files import IMAGE_SUFFIXES

from ..errors import DatasetError
from ..inference import Segmenter
from .common import ToolParser, fail, positive_int

BUNDLED_EXAMPLES = BUNDLED_ROOT / "test"
"""The bundled CamVid test images, offered as examples by default."""

INSTALL_HINT = "lrsa-seg demo needs Gradio, the optional extra: pip install -e '.[demo]' (from the repository)"


def example_images(folder: Path | None, count: int) -> list[Path]:
    """``count`` images of ``folder`` spread over its sorted files; none without a folder."""
    from ..demo import spread

    if folder is None:
        return []
    if not folder.is_dir():
        raise DatasetError(f"--examples: {folder} is not a folder")
    images = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return spread(images, count)


def main(argv: list[str] | None = None) -> int:
    """``lrsa-seg demo --weights SRC [--model NAME] [--port P] [--host 127.0.0.1]``: serve until stopped."""
    parser = ToolParser(
        "demo",
        "Serve a web page where you upload an image (or click an example) and see its segmentation: the overlay "
        "with a legend, the area of each class, the inference time, and the label map as a PNG. Runs the fused "
        "model on the CPU.",
    )
    parser.add_argument("--weights", required=True, help="a saved model, Hub repository, weights file or URL")
    parser.add_argument("--model", default=None, help="variant, only where the file does not say (e.g. lrformer_t)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=positive_int, default=7860, help="port to listen on")
    parser.add_argument(
        "--examples",
        type=Path,
        default=BUNDLED_EXAMPLES if BUNDLED_EXAMPLES.is_dir() else None,
        help="folder of example images (default: the bundled CamVid test split)",
    )
    parser.add_argument("--num-examples", type=positive_int, default=4, help="examples shown, spread over the folder")
    parser.add_argument("--allow-pickle", action="store_true", help="allow arbitrary unpickling (trusted files only)")
    args = parser.parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home, as W&B stays offline
    try:
        import gradio  # noqa: F401
    except ImportError:
        return fail(INSTALL_HINT)
    from ..demo import build_app, theme

    examples = example_images(args.examples, args.num_examples)
    segmenter = Segmenter.from_pretrained(args.weights, args.model, "cpu", allow_pickle=args.allow_pickle)
    app = build_app(segmenter, examples)
    app.launch(
        server_name=args.host,
        server_port=args.port,
        share=False,
        inbrowser=False,
        show_error=True,
        allowed_paths=[str(args.examples.resolve())] if examples else None,
        theme=theme(),
        footer_links=["api"],
    )
    return 0
