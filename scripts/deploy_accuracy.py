"""Score a saved model and its exports on a test split with `lrsa-seg test`'s metric code: one table.

    python scripts/deploy_accuracy.py --weights runs/deploy/quickstart --config configs/quickstart.yaml \
        --output benchmarks/results/deploy_accuracy_quickstart

runs ``lrsa-seg test --model.init_args.weights FOLDER`` with PyTorch (fp32), then ``--runtime
openvino`` with ``FOLDER/openvino/model.xml`` (fp32) and ``model_int8.xml`` (and ONNX Runtime
where ``FOLDER/onnx/model.onnx`` exists), and writes ``accuracy.json`` and ``accuracy.md``:
mIoU, mAcc, aAcc and per-class IoU per runtime, the change against PyTorch fp32 and the classes
that lose most. Write the exports first with ``lrsa-seg export --weights FOLDER --format
openvino --fuse --quantize int8 --calibration DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from lrsa_seg.cli.lightning import run_lightning


def evaluate(config: str, weights: Path, runtime: str, exported: Path | None, root: Path) -> dict[str, float]:
    """``lrsa-seg test`` of one runtime; its logged test metrics (fractions)."""
    args = ["test", "--config", config, "--model.init_args.weights", str(weights)]
    args += ["--trainer.default_root_dir", str(root), "--trainer.logger", "false"]
    if runtime != "torch":
        args += ["--runtime", runtime]
    if exported is not None:
        args += ["--exported", str(exported)]
    cli = run_lightning(args)
    return {key: float(value) for key, value in cli.trainer.callback_metrics.items() if key.startswith("test/")}


def main() -> int:
    """Evaluate every runtime found in the folder; write the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--weights", type=Path, required=True, help="saved model folder with its exports inside")
    parser.add_argument("--config", required=True, help="the LightningCLI config of the data (test split)")
    parser.add_argument("--output", type=Path, required=True, help="folder for accuracy.json and accuracy.md")
    args = parser.parse_args()
    rows = [("PyTorch fp32", "torch", None)]
    if (args.weights / "onnx" / "model.onnx").is_file():
        rows.append(("ONNX Runtime fp32", "onnxruntime", None))
    for file, label in (("model.xml", "OpenVINO fp32"), ("model_int8.xml", "OpenVINO int8")):
        if (args.weights / "openvino" / file).is_file():
            rows.append((label, "openvino", args.weights / "openvino" / file))
    results = {}
    for label, runtime, exported in rows:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as scratch:  # the test run's folder: nothing there is kept
            results[label] = evaluate(args.config, args.weights, runtime, exported, Path(scratch))
        results[label]["seconds"] = time.perf_counter() - start
        print(f"{label}: test mIoU {100 * results[label]['test/mIoU']:.2f}", file=sys.stderr)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "accuracy.json").write_text(json.dumps(results, indent=1))
    (args.output / "accuracy.md").write_text(markdown(results))
    print(markdown(results))
    return 0


def markdown(results: dict[str, dict[str, float]]) -> str:
    """The table: mIoU, mAcc and aAcc per runtime with the change against PyTorch, then per-class IoU."""
    reference = results["PyTorch fp32"]
    classes = [key.removeprefix("test/IoU/") for key in reference if key.startswith("test/IoU/")]
    lines = [
        "| runtime | mIoU (%) | change (points) | mAcc (%) | aAcc (%) |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, metrics in results.items():
        change = 100 * (metrics["test/mIoU"] - reference["test/mIoU"])
        lines.append(
            f"| {label} | {100 * metrics['test/mIoU']:.2f} | {change:+.2f} | {100 * metrics['test/mAcc']:.2f} "
            f"| {100 * metrics['test/aAcc']:.2f} |"
        )
    lines += ["", "| runtime | " + " | ".join(classes) + " |", "|---|" + "---:|" * len(classes)]
    for label, metrics in results.items():
        lines.append(f"| {label} | " + " | ".join(f"{100 * metrics[f'test/IoU/{c}']:.2f}" for c in classes) + " |")
    for label, metrics in results.items():
        if label == "PyTorch fp32":
            continue
        losses = sorted(classes, key=lambda c: metrics[f"test/IoU/{c}"] - reference[f"test/IoU/{c}"])[:3]
        named = ", ".join(f"{c} {100 * (metrics[f'test/IoU/{c}'] - reference[f'test/IoU/{c}']):+.2f}" for c in losses)
        lines.append(f"\n{label}: the classes that lose most (IoU points): {named}.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    os.environ.setdefault("WANDB_MODE", "offline")
    sys.exit(main())
