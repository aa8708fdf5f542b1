"""LightningDataModules and datasets for semantic segmentation."""

from lrsa_seg.errors import DatasetError

from .ade20k import ADE20K, ADE20KDataModule
from .camvid import CamVid, CamVidDataModule
from .cityscapes import Cityscapes, CityscapesDataModule
from .coco_stuff import COCOStuff, COCOStuffDataModule
from .datamodule import SegmentationDataModule
from .dataset import ImageFolder, SegmentationDataset
from .folder import SegmentationFolder, SegmentationFolderDataModule

__all__ = [
    "CamVid",
    "CamVidDataModule",
    "DatasetError",
    "ImageFolder",
    "SegmentationDataModule",
    "SegmentationDataset",
    "ADE20K",
    "ADE20KDataModule",
    "COCOStuff",
    "COCOStuffDataModule",
    "Cityscapes",
    "CityscapesDataModule",
    "SegmentationFolder",
    "SegmentationFolderDataModule",
]
