"""Make the bundled half-size CamVid (240 x 180) from a full 480 x 360 copy.

    python scripts/make_camvid_bundle.py /path/to/CamVid data/camvid

The source is SegNet's 11-class CamVid at 480 x 360 (folders ``train/``, ``trainannot/``, ``val/``,
``valannot/``, ``test/``, ``testannot/``), as ``data/camvid/README.md`` describes.

Images: area-averaged, JPEG quality 95 (4:4:4). Masks: nearest neighbour, lossless PNG.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

SPLITS = ("train", "val", "test")


def main() -> None:
    """Write the half-size copy."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--scale", type=float, default=0.5)
    args = parser.parse_args()
    for split in SPLITS:
        (args.dst / split).mkdir(parents=True, exist_ok=True)
        (args.dst / f"{split}annot").mkdir(parents=True, exist_ok=True)
        images = sorted(p for p in (args.src / split).iterdir() if p.suffix.lower() in (".jpg", ".png"))
        for image_path in images:
            mask_path = args.src / f"{split}annot" / f"{image_path.stem}.png"
            with Image.open(image_path) as image, Image.open(mask_path) as mask:
                size = (round(image.width * args.scale), round(image.height * args.scale))
                image.convert("RGB").resize(size, Image.Resampling.BOX).save(
                    args.dst / split / f"{image_path.stem}.jpg", quality=95, subsampling=0
                )
                mask.resize(size, Image.Resampling.NEAREST).save(args.dst / f"{split}annot" / f"{image_path.stem}.png")
        print(f"{split}: {len(images)} images")


if __name__ == "__main__":
    main()
