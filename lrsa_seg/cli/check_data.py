"""``lrsa-seg check-data``: read every image/mask pair of a dataset and report what is wrong.

Finds unreadable, corrupt or wrong-format files (e.g. an RGB mask), images without masks,
masks without images, image/mask size mismatches and label values outside the classes and the
ignore value, naming each file; then prints the pixel count of every class per split. Exits 1
when anything is wrong.

    lrsa-seg check-data --config configs/lrformer_t_ade20k.yaml [--data.init_args.root DIR]
    lrsa-seg check-data --data.class_path datamodules.CityscapesDataModule --data.init_args.root DIR
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from jsonargparse import ArgumentParser, DefaultHelpFormatter
from torch.utils.data import DataLoader, Dataset

from datamodules import SegmentationDataModule, SegmentationDataset
from datamodules.files import check_same_size, read_image, read_mask

from ..constants import IGNORE_INDEX
from ..errors import ConfigError, DatasetError
from .common import fail

# Kinds of problem, in the order they are reported.
UNREADABLE = "unreadable, corrupt or wrong-format file"
NO_MASK = "image without mask"
NO_IMAGE = "mask without image"
SIZE = "image/mask size mismatch"
LABELS = "label values outside the classes and the ignore value"
MISSING = "missing or empty split"
KINDS = (MISSING, UNREADABLE, NO_MASK, NO_IMAGE, SIZE, LABELS)


@dataclass
class SplitReport:
    """What one split holds and what is wrong with it.

    Attributes:
        split: split name.
        pairs: number of image/mask pairs.
        problems: ``(kind, message naming the file)``.
        counts: pixels per train id ``(256,)``, 255 being the ignored pixels.
        note: why the split was skipped (an optional split that is not there).
        folders: ``(images, masks)`` folders.
    """

    split: str
    pairs: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)
    counts: np.ndarray = field(default_factory=lambda: np.zeros(256, dtype=np.int64))
    note: str | None = None
    folders: tuple[Path, Path] | None = None


class PairChecks(Dataset):
    """``[i]`` -> ``(problems, pixel counts (256,))`` of pair ``i`` of ``dataset``; never raises."""

    def __init__(self, dataset: SegmentationDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset.samples)

    def __getitem__(self, index: int) -> tuple[list[tuple[str, str]], np.ndarray]:
        image_path, mask_path = self.dataset.samples[index]
        problems: list[tuple[str, str]] = []
        counts = np.zeros(256, dtype=np.int64)
        image = raw = None
        try:
            image = read_image(image_path)
        except DatasetError as err:
            problems.append((UNREADABLE, str(err)))
        try:
            raw = read_mask(mask_path)
        except DatasetError as err:
            problems.append((UNREADABLE, str(err)))
        if image is not None and raw is not None:
            try:
                check_same_size(image, raw, image_path, mask_path)
            except DatasetError as err:
                problems.append((SIZE, str(err)))
        if raw is not None:
            try:
                counts = np.bincount(self.dataset.map_mask(raw, mask_path).ravel(), minlength=256)
            except DatasetError as err:
                problems.append((LABELS, str(err)))
        return problems, counts


def _as_is(sample: Any) -> Any:
    return sample


def scan_split(datamodule: SegmentationDataModule, split: str, required: bool, workers: int = 0) -> SplitReport:
    """Check every pair of ``split``; a split that is not there is a problem only if ``required``."""
    report = SplitReport(split)
    try:
        dataset = datamodule.make_dataset(split, require_masks=False)
    except (DatasetError, ValueError) as err:
        if required:
            report.problems.append((MISSING, str(err)))
        else:
            report.note = f"skipped, not used for training or evaluation and not found ({err})"
        return report
    report.folders = (dataset.image_dir, dataset.mask_dir)
    pairing = dataset.pairing
    report.pairs = len(pairing.pairs)
    report.problems += [(NO_MASK, f"{image} (expected {mask})") for image, mask in pairing.images_without_masks]
    report.problems += [(NO_IMAGE, str(mask)) for mask in pairing.masks_without_images]
    if not pairing.pairs and not pairing.images_without_masks:
        report.problems.append((MISSING, f"no images in {dataset.image_dir}"))
    loader = DataLoader(PairChecks(dataset), batch_size=None, num_workers=workers, collate_fn=_as_is)
    for problems, counts in loader:
        report.problems += problems
        report.counts += np.asarray(counts, dtype=np.int64)
    return report


def format_report(datamodule: SegmentationDataModule, reports: Sequence[SplitReport], max_listed: int = 20) -> str:
    """The report as text: splits, pixels per class, then the problems (``max_listed`` per kind)."""
    classes = datamodule.classes
    lines = [f"{type(datamodule).__name__}: {len(classes)} classes, ignore value {IGNORE_INDEX}"]
    for r in reports:
        where = f"images {r.folders[0]}, masks {r.folders[1]}" if r.folders else ""
        lines.append(f"  {r.split}: {r.note}" if r.note else f"  {r.split}: {r.pairs} pairs ({where})")
    scanned = [r for r in reports if r.folders is not None]
    if scanned:
        width = max(len(name) for name in [*classes, "(ignored)"])
        lines += ["", "Pixels per class (after the label mapping):"]
        lines.append(f"  {'id':>3}  {'class':<{width}}" + "".join(f"  {r.split:>14}" for r in scanned))
        rows = [(str(i), name, i) for i, name in enumerate(classes)] + [(str(IGNORE_INDEX), "(ignored)", IGNORE_INDEX)]
        for label, name, index in rows:
            cells = "".join(f"  {int(r.counts[index]):>14,}" for r in scanned)
            lines.append(f"  {label:>3}  {name:<{width}}{cells}")
        for r in scanned:
            absent = [name for i, name in enumerate(classes) if r.pairs and r.counts[i] == 0]
            if absent:
                shown = ", ".join(absent[:10]) + (", ..." if len(absent) > 10 else "")
                lines.append(f"  note: {len(absent)} class(es) have no pixels in {r.split}: {shown}")
    problems = [(kind, r.split, message) for r in reports for kind, message in r.problems]
    if not problems:
        lines += ["", f"OK: {sum(r.pairs for r in reports)} pairs checked, no problems."]
        return "\n".join(lines)
    lines += ["", f"PROBLEMS: {len(problems)}"]
    for kind in KINDS:
        of_kind = [(split, message) for k, split, message in problems if k == kind]
        if of_kind:
            lines.append(f"  {kind} ({len(of_kind)}):")
            lines += [f"    [{split}] {message}" for split, message in of_kind[:max_listed]]
            if len(of_kind) > max_listed:
                lines.append(f"    ... and {len(of_kind) - max_listed} more (--max_listed)")
    return "\n".join(lines)


def _with_config_data(argv: list[str]) -> list[str]:
    """Replace ``--config FILE`` by ``--data <its data: section>``; the rest of a config is not needed here."""
    import yaml

    out, args = [], iter(argv)
    for arg in args:
        if arg == "--config" or arg.startswith("--config="):
            path = arg.split("=", 1)[1] if "=" in arg else next(args, "")
            try:
                config = yaml.safe_load(Path(path).read_text())
            except (OSError, yaml.YAMLError) as err:
                raise ConfigError(f"--config {path}: cannot read it ({err})") from err
            if not isinstance(config, dict) or "data" not in config:
                raise ConfigError(f"--config {path} has no data: section")
            out += ["--data", json.dumps(config["data"])]
        else:
            out.append(arg)
    return out


class _Parser(ArgumentParser):
    """jsonargparse's parser with the tools' error convention: one ``error:`` line, exit 2."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        """One line naming the problem, then exit 2."""
        first = " ".join(str(message).split("\n")[0].split())
        sys.exit(fail(f"{first} (see lrsa-seg check-data --help)"))


def main(argv: list[str] | None = None) -> int:
    """``lrsa-seg check-data``; returns 1 when anything is wrong, else 0."""
    import datamodules  # noqa: F401 (so configs can name datamodules by class name)

    parser = _Parser(
        prog="lrsa-seg check-data",
        description="Read every image/mask pair of every split; report bad files by name and pixels per class.",
        formatter_class=DefaultHelpFormatter,
    )
    parser.add_argument("--config", type=str | None, default=None, help="an lrsa-seg config (its data: section)")
    parser.add_subclass_arguments(SegmentationDataModule, "data", required=True)
    parser.add_argument("--splits", type=list[str] | None, default=None, help="only these splits (default: all)")
    parser.add_argument(
        "--workers", type=int | None, default=None, help="reader processes (default: the data's num_workers)"
    )
    parser.add_argument("--max_listed", type=int, default=20, help="files listed per kind of problem")
    cfg = parser.parse_args(_with_config_data(list(sys.argv[1:] if argv is None else argv)))
    datamodule = parser.instantiate_classes(cfg).data
    splits = datamodule.scan_splits()
    if cfg.splits:
        unknown = sorted(set(cfg.splits) - set(splits))
        if unknown:
            parser.error(f"unknown split(s) {unknown}; {type(datamodule).__name__} has {sorted(splits)}")
        splits = {s: required for s, required in splits.items() if s in cfg.splits}
    workers = datamodule.num_workers if cfg.workers is None else cfg.workers
    reports = [scan_split(datamodule, split, required, workers) for split, required in splits.items()]
    print(format_report(datamodule, reports, cfg.max_listed))
    return 1 if any(r.problems for r in reports) else 0
