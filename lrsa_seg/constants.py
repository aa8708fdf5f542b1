"""Constants shared by the data pipeline and the task."""

IGNORE_INDEX = 255
"""Mask value of unlabelled pixels: no loss, no metric."""

# ImageNet statistics on 0-255 RGB, as in the released models (docs/lrsa.md#preprocessing).
IMAGE_MEAN = (123.675, 116.28, 103.53)
IMAGE_STD = (58.395, 57.12, 57.375)
