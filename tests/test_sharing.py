"""Models shared as the field keeps them: safetensors + config.json + card, Hub repositories, provenance."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from lrsa_seg import Segmenter
from lrsa_seg.cli import main
from lrsa_seg.errors import CheckpointError, CheckpointMismatchError
from lrsa_seg.models import PRETRAINED, create_model, from_official, load_pretrained, read_checkpoint
from lrsa_seg.models.checkpoint import CONVERTED_V01, LIGHTNING, SAVED
from lrsa_seg.task import SemanticSegmentationTask

from .conftest import DATA, TESTS
from .test_weights import COMMIT, hub, official_classification, official_segmentation, put_in_hub, reference  # noqa: F401

REPO = TESTS.parent
TINY = str(TESTS / "conf" / "camvid_tiny.yaml")


def image_of(reference: dict) -> np.ndarray:  # noqa: F811
    return np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)


def test_save_pretrained_round_trip_predicts_the_same(hub: Path, reference: dict, tmp_path: Path) -> None:  # noqa: F811
    official = Segmenter.from_pretrained(put_in_hub(hub, "seg.pth", official_segmentation(reference)))
    official.save_pretrained(tmp_path / "saved")
    files = sorted(p.name for p in (tmp_path / "saved").iterdir())
    assert files == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["model"] == "lrformer_test" and config["model_kwargs"] == {"num_classes": 5}
    assert config["metadata"] == official.metadata and config["provenance"]["weights"]["format"].startswith("official")
    again = Segmenter.from_pretrained(tmp_path / "saved")
    image = image_of(reference)
    assert torch.equal(again(image, return_probs=True), official(image, return_probs=True))
    assert again.class_names == official.class_names and again.palette == official.palette
    # The bare model too, through every entry point of the one loader.
    model = create_model("lrformer_test", weights=tmp_path / "saved").eval()
    with torch.no_grad():
        assert (model(reference["input"]) - reference["logits_upsampled"]).abs().max() <= 1e-5
    # safetensors: no pickle in the weights file at all.
    assert not (tmp_path / "saved" / "model.safetensors").read_bytes().startswith(b"PK")


def test_hub_repositories_load_offline_by_id(hub: Path, reference: dict, tmp_path: Path) -> None:  # noqa: F811
    create_model("lrformer_test", num_classes=5).save_pretrained(tmp_path / "saved")
    for name in ("config.json", "model.safetensors"):
        put_in_hub(hub, name, (tmp_path / "saved" / name).read_bytes(), repo_id="someone/lrformer-camvid")
    first = read_checkpoint("hf://someone/lrformer-camvid")
    second = read_checkpoint("someone/lrformer-camvid")
    assert first.format == second.format == SAVED and first.model == "lrformer_test"
    assert all(torch.equal(first.state_dict[k], second.state_dict[k]) for k in first.state_dict)
    with pytest.raises(CheckpointError, match=r"config\.json of repository someone/absent is not in the Hub cache"):
        read_checkpoint("someone/absent")


def test_push_to_hub_through_a_local_stand_in(
    hub: Path,  # noqa: F811
    reference: dict,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Hub API is replaced by a stand-in that files uploads into the local Hub cache (no network)."""
    calls = []

    def create_repo(self, repo_id: str, **kwargs) -> str:
        calls.append(("create_repo", repo_id, kwargs.get("private")))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, repo_id: str, folder_path: str, **kwargs) -> str:
        calls.append(("upload_folder", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))
        for path in Path(folder_path).iterdir():
            put_in_hub(hub, path.name, path.read_bytes(), repo_id=repo_id)
        return f"https://huggingface.co/{repo_id}/commit/{COMMIT}"

    monkeypatch.setattr("huggingface_hub.HfApi.create_repo", create_repo)
    monkeypatch.setattr("huggingface_hub.HfApi.upload_folder", upload_folder)
    segmenter = Segmenter.from_pretrained(put_in_hub(hub, "seg.pth", official_segmentation(reference)))
    with pytest.raises(CheckpointError, match="HF_HUB_OFFLINE is set"):
        segmenter.push_to_hub("me/lrformer-test")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    url = segmenter.push_to_hub("me/lrformer-test", private=True)
    assert url.endswith(COMMIT) and calls[0] == ("create_repo", "me/lrformer-test", True)
    assert calls[1] == ("upload_folder", "me/lrformer-test", ["README.md", "config.json", "model.safetensors"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pulled = Segmenter.from_pretrained("me/lrformer-test")
    image = image_of(reference)
    assert torch.equal(pulled(image, return_probs=True), segmenter(image, return_probs=True))


def test_a_lrsa_seg_0_1_converted_file_still_loads(reference: dict) -> None:  # noqa: F811
    pretrained = load_pretrained(DATA / "legacy" / "lrformer_test_convert_v0.1.pt")
    assert pretrained.checkpoint.format == CONVERTED_V01 and pretrained.checkpoint.model == "lrformer_test"
    with torch.no_grad():
        out = pretrained.model.eval()(reference["input"])
    assert (out - reference["logits_upsampled"]).abs().max() <= 1e-5


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("lrformer_*.yaml")), ids=lambda p: p.stem)
def test_the_released_records_agree_with_the_paper_configs(path: Path) -> None:
    import datamodules

    config = yaml.safe_load(path.read_text())
    model, data = config["model"]["init_args"], config["data"]["init_args"]
    variant, dataset = path.stem.split("_", 2)[1], path.stem.split("_", 2)[2].replace("_", "")
    record = PRETRAINED[f"lrformer_{variant}.{dataset}"]
    dataset_class = getattr(datamodules, config["data"]["class_path"].split(".")[-1].removesuffix("DataModule"))
    assert model["model"] == record.variant and dataset_class.__name__ == record.dataset
    assert dataset_class.classes == record.class_names and dataset_class.palette == record.palette
    assert tuple(model["eval_base_size"]) == record.base_size
    assert model.get("eval_size_multiple") == record.size_multiple
    assert tuple(data["crop_size"]) == record.crop_size


def test_from_official_names_keys_as_the_official_file_does(reference: dict) -> None:  # noqa: F811
    state_dict = dict(reference["state_dict"])
    del state_dict["backbone.block1.0.attn.kv.0.weight"]
    with pytest.raises(CheckpointMismatchError, match=r"missing keys \(1\): backbone\.block1\.0\.attn\.kv\.0\.weight$"):
        from_official(reference["config"], state_dict)


def test_a_missing_weights_file_is_called_a_weights_file(tmp_path: Path) -> None:
    task = SemanticSegmentationTask("lrformer_test", num_classes=3, weights=str(tmp_path / "start.pth"))
    with pytest.raises(CheckpointError, match=rf"^weights file not found: {tmp_path / 'start.pth'}$"):
        task.load_starting_weights()


def test_starting_weights_are_provenance_not_a_setting(
    tmp_path: Path, camvid_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fit from a weights folder, delete it, go offline: every way back to the fine-tuned model works."""
    monkeypatch.chdir(tmp_path)
    start = create_model("lrformer_test", num_classes=11, head_pooled_size=8).save_pretrained(tmp_path / "start")
    digest = read_checkpoint(start).sha256
    fit = ["fit", "--config", TINY, "--model.init_args.weights", str(start), "--trainer.max_epochs", "1"]
    assert main(fit) == 0
    best = tmp_path / "run" / "checkpoints" / "best.ckpt"
    record = torch.load(best, weights_only=True)["lrsa_seg"]["provenance"]["starting_weights"]
    assert record == {"source": str(start), "format": SAVED, "sha256": digest}
    shutil.rmtree(start)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with_weights = ["--config", TINY, "--model.init_args.weights", str(start), "--ckpt_path", str(best)]
    assert main(["test", *with_weights]) == 0
    assert main(["validate", *with_weights]) == 0
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(images / "a.png")
    assert main(["predict", *with_weights, "--data.init_args.predict_path", str(images)]) == 0
    assert (tmp_path / "run" / "predictions" / "a.png").is_file()
    task = SemanticSegmentationTask.load_from_checkpoint(best)
    assert "weights" not in task.hparams and task.starting_weights_record == record
    segmenter = Segmenter.from_pretrained(best)
    assert segmenter.model is not None and read_checkpoint(best).format == LIGHTNING
    # The fine-tuned model shares as a folder whose card says where fitting started.
    assert main(["convert", str(best), str(tmp_path / "shared")]) == 0
    config = json.loads((tmp_path / "shared" / "config.json").read_text())
    assert config["provenance"]["starting_weights"] == record and "best val/mIoU" in config["metrics"]
    assert f"Fine-tuned from: {start}" in (tmp_path / "shared" / "README.md").read_text()


def test_segmenter_batches_and_turns_photos_upright(hub: Path, reference: dict, tmp_path: Path) -> None:  # noqa: F811
    segmenter = Segmenter.from_pretrained(put_in_hub(hub, "seg.pth", official_segmentation(reference)), batch_size=2)
    segmenter.base_size = None  # native sizes: batching and orientation, not the ADE20K 512 resize (8x the pixels)
    batches = []
    segmenter.model.register_forward_hook(lambda module, args, out: batches.append(args[0].shape[0]))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (32, 48, 3), dtype=np.uint8) for _ in range(5)]
    labels = segmenter(images)
    assert sorted(batches) == [1, 2, 2] and len(labels) == 5
    assert all(torch.equal(a, segmenter(b)) for a, b in zip(labels, images))
    # A photo stored sideways with EXIF orientation 6 (rotate 90 degrees clockwise to view).
    stored = rng.integers(0, 255, (40, 64, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "photo.png", exif=exif)
    upright = np.ascontiguousarray(np.rot90(stored, k=-1))
    assert segmenter(tmp_path / "photo.png").shape == (64, 40)
    assert torch.equal(segmenter(tmp_path / "photo.png"), segmenter(upright))
    with Image.open(tmp_path / "photo.png") as opened:
        assert torch.equal(segmenter(opened), segmenter(upright))


def test_export_refuses_a_backbone_only_file(hub: Path, reference: dict, tmp_path: Path, capsys) -> None:  # noqa: F811
    source = put_in_hub(hub, "in1k.pth", official_classification(reference))
    args = ["export", "--model", "lrformer_test", "--weights", source, "--output", str(tmp_path / "m.onnx")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --weights {source}: official ImageNet") and "only a backbone" in err
    assert not (tmp_path / "m.onnx").exists()
