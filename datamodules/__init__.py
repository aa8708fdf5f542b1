"""LightningDataModules and datasets for semantic segmentation."""

from .base import DatasetError, ImageFolder, SegmentationDataModule, SegmentationDataset
from .camvid import CamVid, CamVidDataModule

__all__ = [
    "CamVid",
    "CamVidDataModule",
    "DatasetError",
    "ImageFolder",
    "SegmentationDataModule",
    "SegmentationDataset",
]
