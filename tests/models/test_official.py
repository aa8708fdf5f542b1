"""The converter: official checkpoints in, saved models (safetensors + config.json) out, clear errors on bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lrsa_seg.cli import main
from lrsa_seg.errors import CheckpointError
from lrsa_seg.models import create_model, from_official, read_checkpoint
from lrsa_seg.models.official import official_key_to_ours
from lrsa_seg.task import SemanticSegmentationTask

from ..conftest import DATA


@pytest.fixture
def reference() -> dict:
    return torch.load(DATA / "lrformer_tiny_pool16.pt", weights_only=True)


def test_key_mapping() -> None:
    assert official_key_to_ours("backbone.patch_embed1.conv1.3.weight") == "backbone.stages.0.downsample.convs.3.weight"
    assert official_key_to_ours("backbone.patch_embed3.norm.bias") == "backbone.stages.2.downsample.norm.bias"
    assert official_key_to_ours("backbone.d_convs4.2.weight") == "backbone.stages.3.level_convs.2.weight"
    assert official_key_to_ours("backbone.block3.5.attn.q.0.weight") == "backbone.stages.2.blocks.5.attn.q.weight"
    assert official_key_to_ours("backbone.block3.5.layer_scale_2") == "backbone.stages.2.blocks.5.ls2.gamma"
    assert official_key_to_ours("backbone.block1.0.mlp.conv.bias") == "backbone.stages.0.blocks.0.mlp.dwconv.bias"
    assert official_key_to_ours("decode_head.fuse_block2.norm1.running_var") == "decode_head.block2.norm1.running_var"
    assert official_key_to_ours("decode_head.conv_seg.weight") == "decode_head.classifier.weight"
    with pytest.raises(KeyError):
        official_key_to_ours("backbone.cls_token")


def _tiny_official_like_lrformer_test(reference: dict) -> dict:
    # The reference config is exactly the registered lrformer_test variant (5 classes here).
    return {"state_dict": reference["state_dict"], "meta": {"CLASSES": ["a", "b", "c", "d", "e"], "epoch": 1}}


def test_convert_round_trip(tmp_path: Path, reference: dict) -> None:
    src, dst = tmp_path / "official.pth", tmp_path / "ours"
    torch.save(_tiny_official_like_lrformer_test(reference), src)
    assert main(["convert", str(src), str(dst), "--model", "lrformer_test"]) == 0
    assert sorted(p.name for p in dst.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((dst / "config.json").read_text())
    assert config["model"] == "lrformer_test" and config["model_kwargs"] == {"num_classes": 5}
    assert config["metadata"]["class_names"] == ["a", "b", "c", "d", "e"]  # from the official meta
    assert config["provenance"]["weights"]["source"] == str(src)
    model = create_model("lrformer_test", weights=dst).eval()
    direct = from_official(reference["config"], reference["state_dict"])
    with torch.no_grad():
        assert torch.equal(model(reference["input"]), direct(reference["input"]))
    assert (model(reference["input"]) - reference["logits_upsampled"]).abs().max() <= 1e-5
    # The saved folder, the official file and the bare state dict all read to the same weights.
    torch.save(reference["state_dict"], tmp_path / "bare.pth")
    saved = read_checkpoint(dst).state_dict
    for path in (src, tmp_path / "bare.pth"):
        weights = read_checkpoint(path).state_dict
        assert weights.keys() == saved.keys() and all(torch.equal(weights[k], saved[k]) for k in saved)


def test_convert_bare_state_dict(tmp_path: Path, reference: dict) -> None:
    src = tmp_path / "bare.pth"
    torch.save(reference["state_dict"], src)
    assert main(["convert", str(src), str(tmp_path / "o"), "--model", "lrformer_test"]) == 0


def test_convert_wrong_model_names_mismatches(tmp_path: Path, reference: dict, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "official.pth"
    torch.save(_tiny_official_like_lrformer_test(reference), src)
    assert main(["convert", str(src), str(tmp_path / "o"), "--model", "lrformer_t"]) == 2
    out = capsys.readouterr().err
    assert str(src) in out and "shape mismatches" in out and "missing keys" in out
    assert not (tmp_path / "o").exists()


def test_convert_truncated_file(tmp_path: Path, reference: dict, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "official.pth"
    torch.save(_tiny_official_like_lrformer_test(reference), src)
    data = src.read_bytes()
    src.write_bytes(data[: len(data) // 2])
    assert main(["convert", str(src), str(tmp_path / "o"), "--model", "lrformer_test"]) == 2
    out = capsys.readouterr().err
    assert str(src) in out and "truncated or corrupt" in out


def test_convert_missing_keys_named(tmp_path: Path, reference: dict, capsys: pytest.CaptureFixture) -> None:
    state_dict = dict(reference["state_dict"])
    del state_dict["backbone.block2.0.attn.proj.weight"]
    state_dict["backbone.extra.weight"] = torch.zeros(1)
    src = tmp_path / "partial.pth"
    torch.save(state_dict, src)
    assert main(["convert", str(src), str(tmp_path / "o"), "--model", "lrformer_test"]) == 2
    out = capsys.readouterr().err
    assert "backbone.extra.weight" in out


def test_pickle_needing_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "pickled.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "meta": {"obj": Path("x")}}, src)
    assert main(["convert", str(src), str(tmp_path / "o"), "--model", "lrformer_test"]) == 2
    out = capsys.readouterr().err
    assert "needs arbitrary unpickling" in out and "--allow-pickle" in out


def test_training_weights_needing_pickle_point_to_convert(tmp_path: Path) -> None:
    # fit has no pickle switch, so the error must name the one command that allows it.
    src = tmp_path / "pickled.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "meta": {"obj": Path("x")}}, src)
    task = SemanticSegmentationTask(model="lrformer_test", num_classes=3, weights=str(src))
    expected = rf"{src} holds objects .*`lrsa-seg convert {src} OUT_DIR .*--allow-pickle`"
    with pytest.raises(CheckpointError, match=expected):
        task.load_starting_weights()
