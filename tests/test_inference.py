"""One-call inference: Segmenter.from_pretrained(hf://...) on any input form, at the input's size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lrsa_seg import Segmenter
from lrsa_seg.constants import IMAGE_MEAN, IMAGE_STD
from lrsa_seg.errors import CheckpointMismatchError, ConfigError
from lrsa_seg.models import from_official

from .test_weights import hub, official_classification, official_segmentation, put_in_hub, reference  # noqa: F401


@pytest.fixture
def segmenter(hub: Path, reference: dict) -> Segmenter:  # noqa: F811
    return Segmenter.from_pretrained(put_in_hub(hub, "seg.pth", official_segmentation(reference)))


def uint8_image(outputs: dict) -> np.ndarray:
    """The reference input mapped back to (clipped) uint8 RGB pixels."""
    mean, std = torch.tensor(IMAGE_MEAN).view(3, 1, 1), torch.tensor(IMAGE_STD).view(3, 1, 1)
    pixels = (outputs["input"][0] * std + mean).round().clamp(0, 255).to(torch.uint8)
    return pixels.permute(1, 2, 0).numpy()


def test_every_input_form_gives_the_same_labels(segmenter: Segmenter, reference: dict, tmp_path: Path) -> None:  # noqa: F811
    array = uint8_image(reference)
    Image.fromarray(array).save(tmp_path / "image.png")
    forms = [array, Image.fromarray(array), torch.from_numpy(array).permute(2, 0, 1), tmp_path / "image.png"]
    labels = [segmenter(form) for form in forms]
    assert labels[0].shape == (96, 128) and labels[0].dtype == torch.int64
    assert all(torch.equal(labels[0], other) for other in labels[1:])
    # It runs the fused copy of the official model: the reference outputs, and the unfused model's labels.
    with torch.no_grad():
        assert (segmenter.model(reference["input"]) - reference["logits_upsampled"]).abs().max() <= 1e-4
        official = from_official(reference["config"], reference["state_dict"])
        normalized = (torch.from_numpy(array).permute(2, 0, 1)[None].float() - segmenter.mean) / segmenter.std
        assert (official(normalized).argmax(1)[0] == labels[0]).float().mean() > 0.999
    probs = segmenter(array, return_probs=True)
    assert probs.shape == (5, 96, 128) and torch.allclose(probs.sum(0), torch.ones(96, 128), atol=1e-5)
    assert torch.equal(probs.argmax(0), labels[0])


def test_lists_of_any_sizes_and_slide_mode(hub: Path, reference: dict) -> None:  # noqa: F811
    source = put_in_hub(hub, "seg.pth", official_segmentation(reference))
    segmenter = Segmenter.from_pretrained(source, mode="slide", crop_size=(64, 64), stride=(48, 48))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, size, dtype=np.uint8) for size in [(37, 91, 3), (100, 70, 3), (37, 91, 3)]]
    labels = segmenter(images)
    assert [tuple(x.shape) for x in labels] == [(37, 91), (100, 70), (37, 91)]
    assert torch.equal(labels[0], segmenter(images[0]))
    picture = segmenter.overlay(images[1], labels[1])
    assert picture.shape[0] == 100 and picture.shape[1] > 70 and picture.dtype == np.uint8


def test_backbone_files_and_unknown_variants_are_refused(hub: Path, reference: dict) -> None:  # noqa: F811
    with pytest.raises(ConfigError, match="holds only a backbone"):
        Segmenter.from_pretrained(put_in_hub(hub, "in1k.pth", official_classification(reference)))
    state_dict = official_segmentation(reference)["state_dict"]
    state_dict["backbone.block1.1.cpe.weight"] = state_dict["backbone.block1.0.cpe.weight"]  # fits no variant
    with pytest.raises(CheckpointMismatchError, match="does not say which variant"):
        Segmenter.from_pretrained(put_in_hub(hub, "odd.pth", {"state_dict": state_dict}))
