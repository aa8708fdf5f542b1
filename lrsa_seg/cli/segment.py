"""``lrsa-seg segment``: label maps and overlays for images with a pretrained model, no config needed."""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from datamodules.files import IMAGE_SUFFIXES

from ..errors import DatasetError
from ..inference import Segmenter, image_array
from ..models.runtime import RUNTIMES
from ..visualize import save_label_png
from .common import ToolParser, positive_int


def list_images(path: Path) -> list[Path]:
    """``path`` itself if it is a file, else the images under it (recursively), sorted."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DatasetError(f"--input: {path} does not exist")
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def main(argv: list[str] | None = None) -> int:
    """``lrsa-seg segment --weights SRC --input FILE_OR_DIR --output DIR``; exit 1 if an image was skipped."""
    parser = ToolParser(
        "segment",
        "Segment images with a pretrained model: <name>.png (palette label map) and <name>_overlay.jpg per image.",
    )
    parser.add_argument("--weights", required=True, help="a path, hf://OWNER/REPO/PATH[@REVISION] or an http(s) URL")
    parser.add_argument("--input", required=True, type=Path, help="an image, or a folder of images (recursive)")
    parser.add_argument("--output", required=True, type=Path, help="folder for the label maps and overlays")
    parser.add_argument("--model", default=None, help="variant, only where the file does not say (e.g. lrformer_t)")
    parser.add_argument("--device", default="cpu", help="e.g. cpu, cuda, cuda:1")
    parser.add_argument("--precision", default="32", choices=["32", "bf16", "16"], help="autocast precision")
    parser.add_argument("--mode", default="whole", choices=["whole", "slide"], help="whole image or sliding windows")
    parser.add_argument("--batch-size", type=positive_int, default=1, help="images per forward pass (same size)")
    parser.add_argument("--allow-pickle", action="store_true", help="allow arbitrary unpickling (trusted files only)")
    parser.add_argument(
        "--runtime", default="torch", choices=list(RUNTIMES), help="run PyTorch, or the exported model (CPU, fp32)"
    )
    parser.add_argument(
        "--exported",
        default=None,
        help="the exported file --runtime runs (.onnx, OpenVINO .xml); default: the one `lrsa-seg export` wrote "
        "into the saved model folder --weights",
    )
    args = parser.parse_args(argv)
    images = list_images(args.input)
    if not images:
        raise DatasetError(f"--input: no images ({', '.join(IMAGE_SUFFIXES)}) in {args.input}")
    segmenter = Segmenter.from_pretrained(
        args.weights,
        args.model,
        args.device,
        args.precision,
        args.mode,
        batch_size=args.batch_size,
        allow_pickle=args.allow_pickle,
        runtime=args.runtime,
        exported=args.exported,
    )
    root = args.input if args.input.is_dir() else args.input.parent
    skipped = []
    with tqdm(total=len(images), desc="segment", unit="image") as progress:
        for start in range(0, len(images), args.batch_size):
            batch = {}
            for path in images[start : start + args.batch_size]:
                try:
                    batch[path] = image_array(path)
                except DatasetError as err:
                    skipped.append(path)
                    tqdm.write(f"warning: skipped {err}")
            if batch:
                for (path, array), labels in zip(batch.items(), segmenter(list(batch.values()))):
                    stem = args.output / path.relative_to(root).with_suffix("")
                    stem.parent.mkdir(parents=True, exist_ok=True)
                    save_label_png(labels.numpy(), stem.with_name(f"{stem.name}.png"), segmenter.palette)
                    picture = segmenter.overlay(array, labels)
                    Image.fromarray(picture).save(stem.with_name(f"{stem.name}_overlay.jpg"), quality=90)
            progress.update(len(images[start : start + args.batch_size]))
    print(f"wrote {len(images) - len(skipped)} label maps and overlays to {args.output}")
    if skipped:
        print(f"error: {len(skipped)} unreadable image(s) skipped: {', '.join(map(str, skipped))}", file=sys.stderr)
        return 1
    return 0
