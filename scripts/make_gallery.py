"""Write the README's gallery: CamVid test images, their ground truth and a model's prediction.

    python scripts/make_gallery.py runs/quickstart/checkpoints/best.ckpt docs/images/quickstart_gallery.png

Rows: image | ground truth | prediction with a legend of the classes present. The images are
spread evenly over the bundled test split (the same four every time).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from datamodules import CamVid
from datamodules.camvid import BUNDLED_ROOT
from lrsa_seg import Segmenter
from lrsa_seg.callbacks.samples import sample_grid


def main() -> None:
    """Predict the chosen test images with the checkpoint and write the grid."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", help="checkpoint or weights file of a CamVid model")
    parser.add_argument("output", help="PNG to write")
    parser.add_argument("--num-images", type=int, default=4, help="rows")
    args = parser.parse_args()
    dataset = CamVid(BUNDLED_ROOT, split="test")
    picks = np.linspace(0, len(dataset) - 1, args.num_images).round().astype(int)
    segmenter = Segmenter.from_pretrained(args.weights)
    rows = []
    for index in picks:
        sample = dataset[int(index)]
        image = sample["image"].permute(1, 2, 0).numpy()
        rows.append((image, sample["mask"].numpy(), segmenter(image).numpy()))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sample_grid(rows, CamVid.palette, list(CamVid.classes))).save(args.output, optimize=True)
    print(f"wrote {args.output}: test images {list(picks)}")


if __name__ == "__main__":
    main()
