"""One loading path for every source and format: an offline Hub cache of official files made from the reference."""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

import pytest
import torch

from lrsa_seg.cli import main
from lrsa_seg.errors import CheckpointError, CheckpointMismatchError
from lrsa_seg.models import PRETRAINED, create_model, load_pretrained, read_checkpoint
from lrsa_seg.models.checkpoint import (
    LIGHTNING,
    OFFICIAL_CLASSIFICATION,
    OFFICIAL_SEGMENTATION,
    SAVED,
)
from lrsa_seg.models.official import official_key_to_ours, ours_key_to_official

from .conftest import DATA

REPO_ID = "lrsa-seg-tests/tiny"  # a repository that exists only in the tests' cache
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def reference() -> dict:
    return torch.load(DATA / "lrformer_tiny_pool16.pt", weights_only=True)


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hub cache in a temporary ``HF_HOME``, offline: nothing can reach the network."""
    home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    return home / "hub"


def put_in_hub(cache: Path, filename: str, content: object | bytes, repo_id: str = REPO_ID) -> str:
    """Put a file in the Hub cache as ``huggingface_hub`` lays it out; returns its ``hf://`` address."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    path = repo / "snapshots" / COMMIT / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    return f"hf://{repo_id}/{filename}"


def official_segmentation(reference: dict, num_classes: int | None = None) -> dict:
    """The reference weights as an mmseg checkpoint (optionally with a new classifier for ``num_classes``)."""
    state_dict = dict(reference["state_dict"])
    if num_classes is not None:
        state_dict["decode_head.conv_seg.weight"] = torch.randn(num_classes, 32, 1, 1)
        state_dict["decode_head.conv_seg.bias"] = torch.zeros(num_classes)
    return {"state_dict": state_dict, "meta": {"epoch": 160, "iter": 160000}}


def official_classification(reference: dict, wrapper: str = "model", prefix: str = "module.") -> dict:
    """The reference backbone as an ImageNet checkpoint: classifier head, final norm, training args."""
    backbone = {k.removeprefix("backbone."): v for k, v in reference["state_dict"].items() if k.startswith("backbone.")}
    weights = {**backbone, "norm.weight": torch.ones(64), "norm.bias": torch.zeros(64)}
    weights |= {"head.weight": torch.zeros(1000, 64), "head.bias": torch.zeros(1000)}
    weights = {prefix + k: v for k, v in weights.items()}
    args = argparse.Namespace(model="lrformer_test", lr=1e-3, epochs=300)
    return weights if wrapper == "bare" else {wrapper: weights, "args": args, "epoch": 299}


def test_key_names_map_back_to_the_official_ones() -> None:
    keys = [
        k for variant in "tsbl" for k in json.loads((DATA / f"manifest_lrformer_{variant}.json").read_text())["keys"]
    ]
    assert all(ours_key_to_official(official_key_to_ours(k)) == k for k in keys)


def test_official_segmentation_from_the_hub_matches_the_reference(hub: Path, reference: dict) -> None:
    source = put_in_hub(hub, "seg/lrformer_test.pth", official_segmentation(reference))
    pretrained = load_pretrained(source)
    weights = pretrained.checkpoint
    assert weights.format == OFFICIAL_SEGMENTATION and weights.model == "lrformer_test"
    assert weights.describe() == f"{source}: {OFFICIAL_SEGMENTATION} (lrformer_test, 5 classes), 245 tensors"
    model = create_model("lrformer_test", weights=source).eval()  # 5 classes, from the file
    with torch.no_grad():
        assert (model(reference["input"]) - reference["logits_upsampled"]).abs().max() <= 1e-5


@pytest.mark.parametrize(("wrapper", "prefix"), [("model", "module."), ("state_dict", "backbone."), ("bare", "")])
def test_imagenet_backbone_under_a_new_head(hub: Path, reference: dict, wrapper: str, prefix: str) -> None:
    source = put_in_hub(hub, "in1k.pth", official_classification(reference, wrapper, prefix))
    weights = read_checkpoint(source)
    assert weights.format == OFFICIAL_CLASSIFICATION and not weights.has_head
    assert "backbone only" in weights.describe() and "175 tensors" in weights.describe()
    model = create_model("lrformer_test", num_classes=7, weights=source, weights_scope="backbone").eval()
    assert model.num_classes == 7
    with torch.no_grad():
        for ours, official in zip(model.backbone(reference["input"]), reference["features"]):
            assert (ours - official).abs().max() <= 1e-5


def test_a_missing_key_is_named_as_the_file_names_it(hub: Path, reference: dict) -> None:
    checkpoint = official_segmentation(reference)
    del checkpoint["state_dict"]["backbone.block1.0.attn.kv.0.weight"]
    source = put_in_hub(hub, "seg.pth", checkpoint)
    with pytest.raises(CheckpointMismatchError, match=r"missing keys \(1\): backbone\.block1\.0\.attn\.kv\.0\.weight$"):
        create_model("lrformer_test", num_classes=5, weights=source)
    classification = official_classification(reference)
    del classification["model"]["module.block1.0.attn.kv.0.weight"]
    source = put_in_hub(hub, "in1k.pth", classification)
    with pytest.raises(CheckpointMismatchError, match=r"\(backbone\) .* module\.block1\.0\.attn\.kv\.0\.weight$"):
        create_model("lrformer_test", weights=source, weights_scope="backbone")


def test_only_allowlisted_extras_load_without_pickle(tmp_path: Path, reference: dict) -> None:
    path = tmp_path / "dated.pth"
    torch.save({**official_classification(reference), "date": datetime.date(2025, 1, 1)}, path)
    with pytest.raises(CheckpointError, match="arbitrary unpickling"):
        read_checkpoint(path)
    assert read_checkpoint(path, allow_pickle=True).format == OFFICIAL_CLASSIFICATION


def test_bad_files_are_one_line_naming_them(hub: Path, reference: dict, tmp_path: Path, capsys) -> None:
    good = put_in_hub(hub, "good.pth", official_segmentation(reference))
    data = (hub / f"models--{REPO_ID.replace('/', '--')}" / "snapshots" / COMMIT / "good.pth").read_bytes()
    cases = {
        put_in_hub(hub, "truncated.pth", data[: len(data) // 2]): "truncated or corrupt",
        put_in_hub(hub, "corrupt.pth", b"\x00not a checkpoint" * 10): "truncated or corrupt",
        f"hf://{REPO_ID}/absent.pth": f"file absent.pth of repository {REPO_ID} is not in the Hub cache",
        "hf://someone/elsewhere/model.pth@v1": "https://huggingface.co/someone/elsewhere/resolve/v1/model.pth",
    }
    assert good
    for source, expected in cases.items():
        assert main(["convert", source, str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {source}") and expected in err and err.count("\n") == 1, err
    assert "HF_HUB_OFFLINE is set" in err and not (tmp_path / "out").exists()


def test_convert_fills_in_the_dataset(hub: Path, reference: dict, tmp_path: Path, capsys) -> None:
    source = put_in_hub(hub, "ade.pth", official_segmentation(reference, num_classes=150))
    assert main(["convert", source, str(tmp_path / "ade")]) == 0
    out = capsys.readouterr().out
    assert f"{source}: {OFFICIAL_SEGMENTATION} (lrformer_test, ADE20K, 150 classes), 245 tensors" in out
    config = json.loads((tmp_path / "ade" / "config.json").read_text())
    assert config["format"] == "lrsa-seg" and config["model"] == "lrformer_test"
    meta, released = config["metadata"], PRETRAINED["lrformer_t.ade20k"]
    assert meta["class_names"] == list(released.class_names)
    assert meta["palette"][:2] == [[120, 120, 120], [180, 120, 120]]
    assert meta["base_size"] == [2048, 512] and meta["size_multiple"] == 32 and meta["value_scale"] == 255.0
    assert read_checkpoint(tmp_path / "ade").format == SAVED
    card = (tmp_path / "ade" / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: lrsa-seg" in card and "ADE20K" in card


def test_lightning_checkpoint_carries_the_inference_record(tmp_path: Path, reference: dict) -> None:
    from types import SimpleNamespace

    from datamodules import CamVid
    from lrsa_seg.task import SemanticSegmentationTask

    task = SemanticSegmentationTask("lrformer_test", num_classes=11, class_names=list(CamVid.classes))
    task._trainer = SimpleNamespace(datamodule=SimpleNamespace(dataset_class=CamVid))  # what on_save_checkpoint reads
    checkpoint = {"pytorch-lightning_version": "2.6.0", "state_dict": task.state_dict()}
    task.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "task.ckpt")
    weights = read_checkpoint(tmp_path / "task.ckpt")
    assert weights.format == LIGHTNING and weights.model == "lrformer_test"
    assert weights.metadata["class_names"] == list(CamVid.classes) and weights.metadata["dataset"] == "CamVid"
    assert weights.metadata["palette"][0] == list(CamVid.palette[0])
    assert weights.provenance["data_license"].startswith("CC BY-NC 4.0")


def test_urls_are_downloaded_once(tmp_path: Path, reference: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    served = tmp_path / "served.pth"
    torch.save(official_segmentation(reference), served)
    calls = []

    def fake_download(url: str, dst: str, progress: bool = True) -> None:
        calls.append(url)
        Path(dst).write_bytes(served.read_bytes())

    monkeypatch.setattr("torch.hub.download_url_to_file", fake_download)
    url = "https://example.org/models/seg.pth"
    for _ in range(2):
        assert read_checkpoint(url).format == OFFICIAL_SEGMENTATION
    assert calls == [url]

    def no_network(url: str, dst: str, progress: bool = True) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr("torch.hub.download_url_to_file", no_network)
    with pytest.raises(CheckpointError, match=r"download it by hand and put it at .*torch/hub/checkpoints/other\.pth"):
        read_checkpoint("https://example.org/models/other.pth")


def test_weights_list(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["weights", "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --repo yuhuan-wu/LRFormer-Models:") and "HF_HUB_OFFLINE" in err
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr("huggingface_hub.list_repo_files", lambda repo_id, revision=None: ["b.pth", "a.pth"])
    assert main(["weights", "list", "--repo", REPO_ID]) == 0
    assert capsys.readouterr().out.splitlines() == [f"hf://{REPO_ID}/a.pth", f"hf://{REPO_ID}/b.pth"]
    assert main(["weights", "released"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(PRETRAINED) == 12 and lines[0].startswith("lrformer_t.ade20k\t150 classes")
