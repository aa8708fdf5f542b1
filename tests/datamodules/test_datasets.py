"""ADE20K, Cityscapes, COCO-Stuff and SegmentationFolder on tiny trees in their real layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules import (
    ADE20K,
    ADE20KDataModule,
    CamVid,
    Cityscapes,
    CityscapesDataModule,
    COCOStuff,
    COCOStuffDataModule,
    DatasetError,
    SegmentationFolder,
    SegmentationFolderDataModule,
)
from datamodules.coco_stuff import UNUSED_IDS

from ..conftest import write_ade20k, write_cityscapes, write_coco_stuff, write_pair

ALL_VALUES = np.arange(256, dtype=np.uint8).reshape(16, 16)


def expected_lut(mapping: dict[int, int]) -> list[int]:
    """Raw value -> train id for all 256 values, -1 where the value is an error."""
    return [mapping.get(v, -1) for v in range(256)]


def write_one(image_path: Path, mask_path: Path, mask: np.ndarray) -> None:
    write_pair(image_path, mask_path, mask, np.random.default_rng(0))


def check_sample(sample: dict, num_classes: int) -> None:
    image, mask = sample["image"], sample["mask"]
    assert image.dtype == torch.uint8 and image.ndim == 3 and image.shape[0] == 3
    assert mask.dtype == torch.int64 and mask.shape == image.shape[1:]
    values = set(mask.unique().tolist())
    assert values <= set(range(num_classes)) | {255}


# --- ADE20K ----------------------------------------------------------------------------------
def test_ade20k_splits_pairs_and_samples(ade20k_root: Path) -> None:
    train, val = ADE20K(ade20k_root, "train"), ADE20K(ade20k_root, "val")
    assert (len(train), len(val)) == (4, 2)
    assert len(ADE20K.classes) == 150 == len(ADE20K.palette) == train.num_classes
    assert ADE20K.classes[:3] == ("wall", "building", "sky") and ADE20K.classes[-1] == "flag"
    assert [p.name for p, _ in train.samples] == [f"ADE_train_{i:08d}.jpg" for i in range(1, 5)]
    assert all(m.name == i.with_suffix(".png").name for i, m in train.samples)
    sample = train[1]
    assert sample["name"] == "ADE_train_00000002.jpg" and sample["image"].shape == (3, 80, 64)
    check_sample(sample, 150)
    with pytest.raises(DatasetError, match=r"unknown split 'test'.*\['train', 'val'\]"):
        ADE20K(ade20k_root, "test")


def test_ade20k_root_may_be_the_challenge_folder(ade20k_root: Path) -> None:
    inner = ADE20K(ade20k_root / "ADEChallengeData2016", "val")
    outer = ADE20K(ade20k_root, "val")
    assert inner.samples == outer.samples
    with pytest.raises(DatasetError, match="images/training not found.*ADEChallengeData2016"):
        ADE20K(ade20k_root / "ADEChallengeData2016" / "images", "train")


def test_ade20k_reduce_zero_label_value_by_value(tmp_path: Path) -> None:
    ds_root = tmp_path / "ADEChallengeData2016"
    mask = np.array([*range(151), *[255] * 105], dtype=np.uint8).reshape(16, 16)
    write_one(ds_root / "images/validation/a.jpg", ds_root / "annotations/validation/a.png", mask)
    ds = ADE20K(tmp_path, "val")
    expected = expected_lut({0: 255, **{k: k - 1 for k in range(1, 151)}, 255: 255})
    assert ds.lut.tolist() == expected  # 151-254 are errors
    assert ds[0]["mask"].flatten().tolist() == [expected[v] for v in mask.flatten()]


@pytest.mark.parametrize("bad", [151, 200, 254])
def test_ade20k_value_above_150_names_the_file(ade20k_root: Path, bad: int) -> None:
    mask_path = ade20k_root / "ADEChallengeData2016/annotations/training/ADE_train_00000003.png"
    mask = np.asarray(Image.open(mask_path)).copy()
    mask[0, 0] = bad
    Image.fromarray(mask).save(mask_path)
    ds = ADE20K(ade20k_root, "train")
    ds[0]
    with pytest.raises(DatasetError, match=rf"ADE_train_00000003.png: label values \[{bad}\]"):
        ds[2]


# --- Cityscapes --------------------------------------------------------------------------------
CITYSCAPES_IDS = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip


def test_cityscapes_splits_cities_and_pairing(cityscapes_root: Path) -> None:
    splits = {s: Cityscapes(cityscapes_root, s) for s in ("train", "val", "test")}
    assert {s: len(ds) for s, ds in splits.items()} == {"train": 4, "val": 2, "test": 1}
    train = splits["train"]
    assert len(Cityscapes.classes) == 19 == len(Cityscapes.palette)
    assert Cityscapes.classes[0] == "road" and Cityscapes.classes[-1] == "bicycle"
    assert [str(i.relative_to(train.image_dir)) for i, _ in train.samples] == [
        "aachen/aachen_000000_000019_leftImg8bit.png",
        "aachen/aachen_000002_000019_leftImg8bit.png",
        "bochum/bochum_000001_000019_leftImg8bit.png",
        "bochum/bochum_000003_000019_leftImg8bit.png",
    ]
    for image, mask in train.samples:
        assert mask.parent.name == image.parent.name
        assert mask.name == image.name.replace("_leftImg8bit.png", "_gtFine_labelIds.png")
    # The official side files (color, instanceIds, polygons) are not masks without images.
    assert train.pairing.masks_without_images == []
    assert train[0]["name"] == "aachen/aachen_000000_000019_leftImg8bit.png"
    check_sample(train[0], 19)


def test_cityscapes_label_ids_value_by_value(tmp_path: Path) -> None:
    stem = "aachen_000000_000019"
    write_one(
        tmp_path / f"leftImg8bit/val/aachen/{stem}_leftImg8bit.png",
        tmp_path / f"gtFine/val/aachen/{stem}_gtFine_labelIds.png",
        ALL_VALUES,
    )
    ds = Cityscapes(tmp_path, "val")
    expected = [CITYSCAPES_IDS.get(v, 255) for v in range(256)]  # nothing is an error
    assert ds.lut.tolist() == expected
    assert ds[0]["mask"].flatten().tolist() == expected


def test_cityscapes_train_ids_files(tmp_path: Path) -> None:
    root = write_cityscapes(tmp_path / "cs", {"val": 2}, train_ids=True)
    ds = Cityscapes(root, "val")
    # Both files exist: the official labelIds are used, and they agree with the train ids.
    assert all(m.name.endswith("_gtFine_labelIds.png") for _, m in ds.samples)
    train_ids_file = ds.samples[0][1].with_name(ds.samples[0][1].name.replace("labelIds", "labelTrainIds"))
    assert torch.equal(ds[0]["mask"], torch.from_numpy(np.asarray(Image.open(train_ids_file)).astype(np.int64)))
    # Without labelIds the labelTrainIds file is used: 0-18 and 255 as they are, the rest errors.
    for _, mask in ds.samples:
        mask.unlink()
    trainids = np.array([*range(19), *[255] * 237], dtype=np.uint8).reshape(16, 16)
    image = ds.samples[0][0]
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)
    Image.fromarray(trainids).save(train_ids_file)
    ds = Cityscapes(root, "val")
    assert ds.samples[0][1] == train_ids_file
    assert ds.lut_for(train_ids_file).tolist() == expected_lut({**{k: k for k in range(19)}, 255: 255})
    assert ds[0]["mask"].flatten().tolist() == trainids.flatten().tolist()
    trainids[3, 3] = 19
    Image.fromarray(trainids).save(train_ids_file)
    with pytest.raises(DatasetError, match=r"frankfurt_000000_000019_gtFine_labelTrainIds.png: label values \[19\]"):
        ds[0]


# --- COCO-Stuff --------------------------------------------------------------------------------
def test_coco_stuff_splits_and_samples(coco_stuff_root: Path) -> None:
    train, val = COCOStuff(coco_stuff_root, "train"), COCOStuff(coco_stuff_root, "val")
    assert (len(train), len(val)) == (4, 2)
    assert len(COCOStuff.classes) == 171 == len(COCOStuff.palette)
    assert COCOStuff.classes[0] == "person" and COCOStuff.classes[80] == "banner" and COCOStuff.classes[-1] == "wood"
    assert [i.name for i, _ in val.samples] == ["000000000139.jpg", "000000000140.jpg"]
    check_sample(train[0], 171)


def test_coco_stuff_mapping_value_by_value(tmp_path: Path) -> None:
    write_one(tmp_path / "images/val2017/1.jpg", tmp_path / "annotations/val2017/1.png", ALL_VALUES)
    ds = COCOStuff(tmp_path, "val")
    assert UNUSED_IDS == {11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90}
    used = [v for v in range(182) if v not in UNUSED_IDS]
    assert len(used) == 171
    expected = [used.index(v) if v in used else 255 for v in range(256)]  # nothing is an error
    assert ds.lut.tolist() == expected
    spot = {
        0: 0,
        10: 10,
        11: 255,
        12: 11,
        24: 23,
        25: 255,
        26: 24,
        89: 79,
        90: 255,
        91: 80,
        181: 170,
        182: 255,
        255: 255,
    }
    assert {v: expected[v] for v in spot} == spot
    assert ds[0]["mask"].flatten().tolist() == expected


def test_coco_stuff_train_ids_files(tmp_path: Path) -> None:
    mask = np.array([*range(171), *[255] * 85], dtype=np.uint8).reshape(16, 16)
    write_one(tmp_path / "images/train2017/7.jpg", tmp_path / "annotations/train2017/7_labelTrainIds.png", mask)
    ds = COCOStuff(tmp_path, "train")
    assert ds.samples[0][1].name == "7_labelTrainIds.png"
    assert ds[0]["mask"].flatten().tolist() == mask.flatten().tolist()
    # A raw file beside it wins.
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "annotations/train2017/7.png")
    assert COCOStuff(tmp_path, "train").samples[0][1].name == "7.png"
    mask[0, 0] = 171
    Image.fromarray(mask).save(tmp_path / "annotations/train2017/7_labelTrainIds.png")
    (tmp_path / "annotations/train2017/7.png").unlink()
    with pytest.raises(DatasetError, match=r"7_labelTrainIds.png: label values \[171\]"):
        COCOStuff(tmp_path, "train")[0]


# --- Errors shared by every dataset ----------------------------------------------------------------
def test_image_without_mask_fails_at_construction_naming_it(ade20k_root: Path) -> None:
    (ade20k_root / "ADEChallengeData2016/annotations/validation/ADE_val_00000002.png").unlink()
    with pytest.raises(DatasetError, match=r"1 image\(s\) .* have no mask: ADE_val_00000002.jpg \(expected .*"):
        ADE20K(ade20k_root, "val")
    ds = ADE20K(ade20k_root, "val", require_masks=False)
    assert len(ds) == 1 and [i.name for i, _ in ds.pairing.images_without_masks] == ["ADE_val_00000002.jpg"]


def test_empty_split_and_missing_folder(tmp_path: Path) -> None:
    (tmp_path / "images/val2017").mkdir(parents=True)
    (tmp_path / "annotations/val2017").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no images in"):
        COCOStuff(tmp_path, "val")
    with pytest.raises(DatasetError, match=r"images/train2017 not found .*expected images/\{train2017,val2017\}"):
        COCOStuff(tmp_path, "train")


def test_lazy_checks_name_the_file(coco_stuff_root: Path) -> None:
    images, masks = coco_stuff_root / "images/train2017", coco_stuff_root / "annotations/train2017"
    (images / "000000000139.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(masks / "000000000140.png")
    (masks / "000000000141.png").write_bytes((masks / "000000000141.png").read_bytes()[:60])
    Image.fromarray(np.zeros((72, 64, 3), np.uint8)).save(masks / "000000000142.png")  # RGB mask
    ds = COCOStuff(coco_stuff_root, "train")
    with pytest.raises(DatasetError, match="000000000139.jpg: unreadable or corrupt image"):
        ds[0]
    with pytest.raises(DatasetError, match="size mismatch: image .*000000000140.jpg is 64x72, mask .*000000000140.png"):
        ds[1]
    with pytest.raises(DatasetError, match="000000000141.png: unreadable or corrupt mask"):
        ds[2]
    with pytest.raises(DatasetError, match="000000000142.png: a mask must be single-channel"):
        ds[3]


def test_camvid_still_maps_unlabelled_to_ignore(camvid_root: Path) -> None:
    ds = CamVid(camvid_root, "val")
    assert len(ds) == 3 and ds.lut[11] == 255 and ds.lut[12] == -1
    check_sample(ds[0], 11)


# --- SegmentationFolder --------------------------------------------------------------------------
def write_folder(root: Path, masks: dict[str, np.ndarray]) -> tuple[Path, Path]:
    """``root/images/<stem>.jpg`` for each ``<stem>.<suffix>`` in ``masks``, masks in ``root/masks``."""
    for name, mask in masks.items():
        write_one(root / "images" / Path(name).with_suffix(".jpg"), root / "masks" / name, mask)
    return root / "images", root / "masks"


def test_folder_pairs_by_stem_with_any_mask_suffix(tmp_path: Path) -> None:
    mask = np.full((32, 48), 2, np.uint8)
    images, masks = write_folder(tmp_path, {"a.png": mask, "b.tif": mask, "sub/c.bmp": mask})
    ds = SegmentationFolder(images, masks, num_classes=3)
    assert [(str(i.relative_to(images)), m.name) for i, m in ds.samples] == [
        ("a.jpg", "a.png"),
        ("b.jpg", "b.tif"),
        ("sub/c.jpg", "c.bmp"),
    ]
    assert ds.classes == ("0", "1", "2") and ds[2]["name"] == "sub/c.jpg"
    check_sample(ds[1], 3)
    with pytest.raises(ValueError, match="must be different folders"):
        SegmentationFolder(images, images, 3)
    (tmp_path / "masks/orphan.png").write_bytes(b"")
    assert [m.name for m in SegmentationFolder(images, masks, 3).pairing.masks_without_images] == ["orphan.png"]


def test_folder_identity_mapping_and_ignore_index(tmp_path: Path) -> None:
    images, masks = write_folder(tmp_path, {"a.png": ALL_VALUES})
    ds = SegmentationFolder(images, masks, num_classes=5, ignore_index=200, require_masks=True)
    assert ds.lut.tolist() == expected_lut({0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 200: 255})
    with pytest.raises(DatasetError, match=r"a.png: label values \[5, 6, 7"):
        ds[0]
    with pytest.raises(ValueError, match="ignore_index 0 is also class 0"):
        SegmentationFolder(images, masks, num_classes=5, ignore_index=0)


def test_folder_label_map(tmp_path: Path) -> None:
    raw = np.array([[0, 10], [20, 30]], np.uint8).repeat(8, 0).repeat(8, 1)
    images, masks = write_folder(tmp_path, {"a.png": raw})
    ds = SegmentationFolder(
        images, masks, 3, ignore_index=0, label_map={10: 0, 20: 1, 30: 2}, class_names=["x", "y", "z"]
    )
    assert ds.lut.tolist() == expected_lut({0: 255, 10: 0, 20: 1, 30: 2})
    assert ds[0]["mask"][::8, ::8].tolist() == [[255, 0], [1, 2]] and ds.classes == ("x", "y", "z")
    ds = SegmentationFolder(images, masks, 2, ignore_index=0, label_map={10: 0, 20: 1})  # 30 is not in it
    with pytest.raises(DatasetError, match=r"a.png: label values \[30\]"):
        ds[0]
    for label_map, message in (
        ({10: 3}, r"values must be train ids 0-2 or 255, got \[3\]"),
        ({300: 1}, r"keys must be mask values 0-255, got \[300\]"),
        ({0: 1}, "maps the ignore_index 0 to class 1"),
    ):
        with pytest.raises(ValueError, match=message):
            SegmentationFolder(images, masks, 3, ignore_index=0, label_map=label_map)


# --- DataModules -------------------------------------------------------------------------------
def test_paper_defaults() -> None:
    ade, city, coco = ADE20KDataModule("x"), CityscapesDataModule("x"), COCOStuffDataModule("x")
    assert (ade.crop_size, ade.base_size, ade.num_classes, ade.test_split) == ((512, 512), (2048, 512), 150, "val")
    assert (city.crop_size, city.base_size, city.num_classes) == ((1024, 1024), (2048, 1024), 19)
    assert (coco.crop_size, coco.base_size, coco.num_classes) == ((512, 512), (2048, 512), 171)
    for dm in (ade, city, coco):
        assert (dm.ratio_range, dm.cat_max_ratio, dm.batch_size, dm.eval_batch_size) == ((0.5, 2.0), 0.75, 4, 1)
    assert city.scan_splits() == {"train": True, "val": True, "test": False}


@pytest.mark.parametrize("kind", ["ade20k", "cityscapes", "coco_stuff", "folder"])
def test_datamodules_load_crops(kind: str, tmp_path: Path) -> None:
    common = dict(crop_size=(64, 64), batch_size=2, num_workers=0)
    if kind == "ade20k":
        dm = ADE20KDataModule(write_ade20k(tmp_path, {"training": 4, "validation": 2}), **common)
    elif kind == "cityscapes":
        dm = CityscapesDataModule(write_cityscapes(tmp_path, {"train": 4, "val": 2}), **common)
    elif kind == "coco_stuff":
        dm = COCOStuffDataModule(write_coco_stuff(tmp_path, {"train2017": 4, "val2017": 2}), **common)
    else:
        root = write_ade20k(tmp_path, {"training": 4, "validation": 2}) / "ADEChallengeData2016"
        dm = SegmentationFolderDataModule(
            root / "images/training", root / "annotations/training", root / "images/validation",
            root / "annotations/validation", num_classes=150, ignore_index=0,
            label_map={k: k - 1 for k in range(1, 151)}, **common,
        )  # fmt: skip
        assert dm.classes == [str(i) for i in range(150)] and dm.scan_splits() == {"train": True, "val": True}
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 64, 64) and batch["mask"].shape == (2, 64, 64)
    assert set(batch["mask"].unique().tolist()) <= set(range(dm.num_classes)) | {255}
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape[0] == 1 and val["mask"].shape[1:] == val["image"].shape[2:]


def test_folder_datamodule_checks_its_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ignore_index 1 is also class 1"):
        SegmentationFolderDataModule("a", "b", "c", "d", num_classes=3, ignore_index=1)
    with pytest.raises(ValueError, match="both test_images and test_masks"):
        SegmentationFolderDataModule("a", "b", "c", "d", num_classes=3, test_images="e")
    dm = SegmentationFolderDataModule("a", "b", "c", "d", 2, "e", "f", class_names=["x", "y"])
    assert dm.test_split == "test" and dm.classes == ["x", "y"] and dm.num_classes == 2
