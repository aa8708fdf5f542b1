"""The released LRFormer models, one record each, and what inference needs besides the weights.

One :class:`PretrainedCfg` per released weight set (as timm keeps one per weight set): variant,
dataset, classes, palette, preprocessing, test-time resize, the authors' stated mIoU, the Hub
repository and the licence as stated. Converting an official file, :class:`~lrsa_seg.Segmenter`,
the model cards (docs/pretrained.md) and the paper configs (``configs/lrformer_<v>_<dataset>.yaml``, checked
by a test) take these values from here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..constants import IMAGE_MEAN, IMAGE_STD
from ..labels import (
    ADE20K_CLASSES,
    ADE20K_PALETTE,
    CITYSCAPES_CLASSES,
    CITYSCAPES_PALETTE,
    COCO_STUFF_CLASSES,
    COCO_STUFF_PALETTE,
)

VALUE_SCALE = 255.0
"""Input pixel values run from 0 to this; ``mean`` and ``std`` are on that scale."""

OFFICIAL_REPO = "yuhuan-wu/LRFormer-Models"
"""The authors' Hugging Face repository of the released LRFormer weights."""

LICENSE_AS_STATED = "not stated (the official README and repository name no licence for the weights)"


def inference_metadata(
    num_classes: int,
    class_names: Sequence[str] | None = None,
    palette: Sequence[Sequence[int]] | None = None,
    dataset: str | None = None,
    base_size: Sequence[int] | None = None,
    size_multiple: int | None = None,
    mean: Sequence[float] = IMAGE_MEAN,
    std: Sequence[float] = IMAGE_STD,
    value_scale: float = VALUE_SCALE,
) -> dict[str, Any]:
    """What inference needs besides the weights, as saved models, converted files and task checkpoints store it.

    Args:
        num_classes: output classes.
        class_names: one name per class (None: the indices).
        palette: one RGB colour per class (None: the default palette).
        dataset: the training dataset's name, if known.
        base_size: test-time resize ``(long, short)`` keeping the aspect ratio (None: native size).
        size_multiple: round test-time sizes to multiples of this (None: any size).
        mean: per RGB channel, on the ``0..value_scale`` scale.
        std: per RGB channel, on the ``0..value_scale`` scale.
        value_scale: the largest input pixel value.

    Returns:
        ``{"num_classes", "class_names", "palette", "dataset", "mean", "std", "value_scale",
        "base_size", "size_multiple"}``: plain lists and numbers (JSON as it is).
    """
    return {
        "num_classes": int(num_classes),
        "class_names": [str(n) for n in class_names] if class_names is not None else None,
        "palette": [[int(c) for c in rgb] for rgb in palette] if palette is not None else None,
        "dataset": dataset,
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "value_scale": float(value_scale),
        "base_size": [int(v) for v in base_size] if base_size is not None else None,
        "size_multiple": size_multiple,
    }


@dataclass(frozen=True)
class PretrainedCfg:
    """One released weight set.

    Attributes:
        variant: registered model name (``lrformer_t`` ...).
        dataset: training dataset, as the datamodules name it (``ADE20K``, ``COCOStuff``, ``Cityscapes``).
        class_names: one per output class, in the model's order.
        palette: one RGB colour per class.
        base_size: test-time resize ``(long, short)`` keeping the aspect ratio.
        size_multiple: test-time sizes rounded up to a multiple of this (mmseg's AlignResize), or None.
        crop_size: training (and sliding-window) crop ``(h, w)``.
        miou: the authors' stated single-scale validation mIoU (%).
        hub_repo: the Hugging Face repository of the weights.
        license: the weights' licence as stated.
        mean: per RGB channel, 0-255.
        std: per RGB channel, 0-255.
    """

    variant: str
    dataset: str
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    base_size: tuple[int, int]
    size_multiple: int | None
    crop_size: tuple[int, int]
    miou: float
    hub_repo: str = OFFICIAL_REPO
    license: str = LICENSE_AS_STATED
    mean: tuple[float, float, float] = IMAGE_MEAN
    std: tuple[float, float, float] = IMAGE_STD

    @property
    def name(self) -> str:
        """``<variant>.<dataset>``, e.g. ``lrformer_t.ade20k``."""
        return f"{self.variant}.{self.dataset.lower()}"

    @property
    def num_classes(self) -> int:
        """Output classes."""
        return len(self.class_names)

    def metadata(self) -> dict[str, Any]:
        """:func:`inference_metadata` of this weight set."""
        return inference_metadata(
            self.num_classes,
            self.class_names,
            self.palette,
            self.dataset,
            self.base_size,
            self.size_multiple,
            self.mean,
            self.std,
        )


# The authors' validation mIoU (official README), by variant: ADE20K, COCO-Stuff, Cityscapes.
_STATED_MIOU = {
    "lrformer_t": (46.7, 43.9, 80.7),
    "lrformer_s": (50.0, 46.4, 81.9),
    "lrformer_b": (51.0, 47.2, 83.0),
    "lrformer_l": (52.6, 47.9, 83.2),
}
# (dataset, classes, palette, test resize, size multiple, crop): the official configs (docs/recipes.md).
_DATASETS = (
    ("ADE20K", ADE20K_CLASSES, ADE20K_PALETTE, (2048, 512), 32, (512, 512)),
    ("COCOStuff", COCO_STUFF_CLASSES, COCO_STUFF_PALETTE, (2048, 512), 32, (512, 512)),
    ("Cityscapes", CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, (2048, 1024), None, (1024, 1024)),
)
# LRFormer-L trains and tests ADE20K at 640 (2560 x 640).
_OVERRIDES: dict[tuple[str, str], dict[str, Any]] = {
    ("lrformer_l", "ADE20K"): {"base_size": (2560, 640), "crop_size": (640, 640)},
}

PRETRAINED: dict[str, PretrainedCfg] = {
    cfg.name: cfg
    for cfg in (
        PretrainedCfg(
            variant,
            dataset,
            classes,
            palette,
            **{
                "base_size": base_size,
                "size_multiple": multiple,
                "crop_size": crop,
                **_OVERRIDES.get((variant, dataset), {}),
            },
            miou=miou[column],
        )
        for variant, miou in _STATED_MIOU.items()
        for column, (dataset, classes, palette, base_size, multiple, crop) in enumerate(_DATASETS)
    )
}
"""Every released segmentation weight set, by :attr:`PretrainedCfg.name`."""


def find_pretrained(variant: str | None, num_classes: int) -> PretrainedCfg | None:
    """The released weight set of ``variant`` with ``num_classes`` classes (the datasets' counts differ), if any."""
    return next((c for c in PRETRAINED.values() if c.variant == variant and c.num_classes == num_classes), None)


def official_metadata(meta: Any, num_classes: int, variant: str | None) -> dict[str, Any]:
    """Inference metadata of an official checkpoint: class names and palette from its ``meta``, else its record.

    ``meta`` is the mmseg checkpoint's: ``CLASSES``/``PALETTE`` (mmseg 0.x) or ``dataset_meta``
    (1.x). The dataset is recognised by the number of classes (150 ADE20K, 171 COCO-Stuff, 19
    Cityscapes); the test-time resize is the record's (:data:`PRETRAINED`).
    """
    record = find_pretrained(variant, num_classes) or next(
        (c for c in PRETRAINED.values() if c.num_classes == num_classes), None
    )
    meta = meta if isinstance(meta, Mapping) else {}
    dataset_meta = meta.get("dataset_meta") if isinstance(meta.get("dataset_meta"), Mapping) else {}
    names = dataset_meta.get("classes") or meta.get("CLASSES") or (record.class_names if record else None)
    palette = dataset_meta.get("palette") or meta.get("PALETTE") or (record.palette if record else None)
    names = names if names is not None and len(names) == num_classes else None
    palette = palette if palette is not None and len(palette) >= num_classes else None
    if record is None:
        return inference_metadata(num_classes, names, palette)
    if record.variant != variant:  # another variant's record: its dataset, not its (variant's) test resize
        record = next(c for c in PRETRAINED.values() if c.dataset == record.dataset and c.variant == "lrformer_t")
    return inference_metadata(
        num_classes, names, palette, record.dataset, record.base_size, record.size_multiple, record.mean, record.std
    )
