"""The notebooks run top to bottom (nbclient, kernel python3) from the repository root and write nothing.

They are committed executed (``scripts/execute_notebooks.py``); these tests execute them again.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import nbformat
import pytest
import torch
from nbclient import NotebookClient

from lrsa_seg.ablation import write_csv

from .conftest import TESTS

REPO = TESTS.parent
NOTEBOOKS = REPO / "notebooks"
NAMES = ["lrsa_explained", "complexity", "pool_size_ablation"]


def snapshot() -> dict[str, tuple[int, int]]:
    """Files of the folders the notebooks read (mtime, size): a notebook must not change them."""
    return {
        str(p): (p.stat().st_mtime_ns, p.stat().st_size)
        for folder in (NOTEBOOKS, REPO / "data")
        for p in folder.rglob("*")
        if p.is_file()
    }


def execute(name: str, monkeypatch: pytest.MonkeyPatch, **env: str) -> tuple[str, int]:
    """Run a notebook with ``env`` set for its kernel; returns its text output and number of images."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # quiet debugpy in the kernel
    before = snapshot()
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO)}})
    client.execute()  # raises CellExecutionError naming the cell on any error
    assert snapshot() == before
    texts, images = [], 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", ""))
            data = output.get("data", {})
            texts.append(data.get("text/markdown", ""))
            images += "image/png" in data
    return "\n".join(texts), images


@pytest.mark.parametrize("name", NAMES)
def test_committed_executed_with_figures_under_1_mb(name: str) -> None:
    # Committed as scripts/execute_notebooks.py writes them: a reader on a code host sees the figures.
    path = NOTEBOOKS / f"{name}.ipynb"
    assert path.stat().st_size < 1_000_000
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1))  # in order, none skipped
    assert not [o for cell in code for o in cell.outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for cell in code for o in cell.outputs)


def test_lrsa_explained_with_a_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lrsa_seg.task import SemanticSegmentationTask

    task = SemanticSegmentationTask("lrformer_test", num_classes=11, pooled_sizes=8, head_pooled_size=8)
    ckpt = tmp_path / "tiny.ckpt"
    torch.save(
        {
            "state_dict": task.state_dict(),
            "hyper_parameters": dict(task.hparams),
            "pytorch-lightning_version": L.__version__,
        },
        ckpt,
    )
    text, images = execute("lrsa_explained", monkeypatch, LRSA_CHECKPOINT=str(ckpt))
    assert f"loaded {ckpt} (lrformer_test)" in text
    assert "pyramid_sizes(16) = (11, 8, 6, 4)" in text
    assert "recomputed weights reproduce all 7 LRSA outputs" in text
    assert images == 7


@pytest.mark.slow  # trains the tiny model inside the notebook (the default run executes it with a checkpoint)
def test_lrsa_explained_trains_a_tiny_model_without_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text, images = execute("lrsa_explained", monkeypatch, LRSA_CHECKPOINT=str(tmp_path / "missing.ckpt"))
    assert "not found: training a tiny model instead" in text and "trained lrformer_test" in text
    assert "recomputed weights reproduce all 7 LRSA outputs" in text
    assert images == 7


def test_complexity(monkeypatch: pytest.MonkeyPatch) -> None:
    text, images = execute("complexity", monkeypatch)
    assert "full self-attention" in text and "stops: attention weights would exceed 2 GiB" in text
    assert "LRSA (P = 16)          512 x 512" in text  # LRSA fits at every size
    assert images == 1


def test_pool_size_ablation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [
        {
            "pooled_size": size,
            "head_pooled_size": 16,
            "params": 13_000_000,
            "gmacs": gmacs,
            "latency_ms": latency,
            "val_miou": miou,
            "test_miou": miou - 0.02,
            "train_time_s": 1000.0,
            "epochs": 8,
            "steps": 368,
            "size": "512x512",
            "device": "cpu x2",
            "precision": "32-true",
        }
        for size, gmacs, latency, miou in ((8, 10.0, 300.0, 0.40), (16, 11.0, 320.0, 0.45), (32, 14.0, 400.0, 0.46))
    ]
    csv_path = tmp_path / "results.csv"
    write_csv(rows, csv_path)
    text, images = execute("pool_size_ablation", monkeypatch, LRSA_ABLATION_CSV=str(csv_path))
    if not (REPO / "ablation" / "quickstart" / "results.csv").is_file():
        assert f"Using {csv_path} instead" in text and "3 pooled sizes" in text
        assert "| 16 | 16 | 13.00 | 11.00 | 320.0 | 45.00 | 43.00 | 1000 |" in text
    assert images == 2
