"""``lrsa-seg export``: ONNX or OpenVINO IR with dynamic height and width, checked against PyTorch; int8 with NNCF."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from torch import nn

from ..errors import ConfigError, DatasetError
from ..inference import Segmenter
from ..models import create_model, fuse_for_inference, list_models, load_pretrained
from ..models.export import export_onnx, export_openvino, max_abs_diff, quantize_openvino
from ..models.runtime import EXPORTED_FILES, import_runtime, load_exported
from .common import ToolParser, add_size_argument, fail, positive_int, sizes_of
from .segment import list_images

RUNTIME_OF = {"onnx": "onnxruntime", "openvino": "openvino"}


def build_for_export(name: str | None, weights: str | None = None, num_classes: int | None = None) -> nn.Module:
    """A segmentor in eval mode: ``name`` with random weights, or ``weights`` (any source ``load_pretrained`` reads)."""
    if weights is None:
        if name is None:
            raise ConfigError("--model is needed without --weights")
        model = create_model(name, num_classes=num_classes)
    else:
        pretrained = load_pretrained(weights, name, num_classes=num_classes)
        if not pretrained.checkpoint.has_head:
            raise ConfigError(
                f"--weights {weights}: {pretrained.checkpoint.format} holds only a backbone; export "
                "needs a segmentation model (its head would be random)"
            )
        model = pretrained.model
    if not hasattr(model, "decode_head"):
        raise ConfigError(f"--model {name!r} is not a segmentation model")
    return model.eval()


def output_path(args: argparse.Namespace) -> Path:
    """``--output``, or the runtime's file inside the saved model folder ``--weights`` (``openvino/model.xml`` ...)."""
    if args.output is not None:
        return Path(args.output)
    if args.weights is not None and Path(args.weights).is_dir():
        return Path(args.weights) / EXPORTED_FILES[RUNTIME_OF[args.format]]
    raise ConfigError("--output is needed unless --weights is a saved model folder (the files go inside it)")


def openvino_version() -> str:
    """The installed OpenVINO's version (e.g. ``2026.4.1``)."""
    return str(import_runtime("openvino").__version__).split("-", 1)[0]


def pixel_agreement(reference: Segmenter, other: Segmenter, images: list[Path]) -> list[float]:
    """Per image, the share of pixels whose labels ``other`` gives as ``reference`` does."""
    return [float((reference(path) == other(path)).float().mean()) for path in images]


def quantize(args: argparse.Namespace, model: nn.Module, fp32: Path) -> Path:
    """int8 OpenVINO IR beside ``fp32`` (``*_int8.xml``), calibrated on ``--calibration``; prints the agreement."""
    images = list_images(Path(args.calibration))[: args.num_images]
    if not images:
        raise DatasetError(f"--calibration: no images in {args.calibration}")
    torch_segmenter = Segmenter(model, model.config["metadata"])  # the preprocessing the exported model gets

    def model_input(path: Path) -> np.ndarray:
        return torch_segmenter.model_input(path).numpy()

    start = time.perf_counter()
    int8 = quantize_openvino(fp32, images, model_input, fp32.with_name(f"{fp32.stem}_int8.xml"))
    seconds = time.perf_counter() - start
    print(f"wrote {int8} in {seconds:.0f} s (int8, NNCF, calibrated on {len(images)} images of {args.calibration})")
    for path, label in ((fp32, "fp32"), (int8, "int8")):
        try:
            exported = Segmenter(model, model.config["metadata"], exported=load_exported(path, "openvino"))
            agreement = pixel_agreement(torch_segmenter, exported, images)
        except RuntimeError as err:  # OpenVINO's compile or inference error: this file is of no use
            for file in (path, path.with_suffix(".bin")):
                file.unlink(missing_ok=True)
            last = str(err).strip().splitlines()[-1]
            raise ConfigError(
                f"the {label} model does not run in OpenVINO {openvino_version()} ({last}); removed it "
                "(docs/deployment.md, Export: patterns OpenVINO's int8 transformations refused; try --fixed-size H W)"
            ) from None
        worst = min(range(len(images)), key=agreement.__getitem__)
        print(
            f"  OpenVINO {label} vs PyTorch fp32 label maps on the calibration images: "
            f"{100 * sum(agreement) / len(agreement):.2f}% of pixels agree "
            f"(lowest {100 * agreement[worst]:.2f}%, {images[worst].name})"
        )
    return int8


def main(argv: list[str] | None = None) -> int:
    """``lrsa-seg export --weights SRC --format {onnx,openvino} [--quantize int8 --calibration DIR]``."""
    parser = ToolParser(
        "export", "Export a segmentor to ONNX or OpenVINO IR with dynamic batch, height and width; int8 with NNCF."
    )
    parser.add_argument(
        "--model",
        default=None,
        choices=[m for m in list_models() if not m.endswith("_cls")],
        help="segmentor (None: the one --weights holds)",
    )
    parser.add_argument(
        "--weights",
        default=None,
        help="weights: a saved model folder, hf:// address, Lightning or official checkpoint",
    )
    parser.add_argument("--num-classes", type=int, default=None, help="output classes (None: from --weights, else 150)")
    parser.add_argument(
        "--format", choices=list(RUNTIME_OF), default="onnx", help="ONNX (onnxruntime) or OpenVINO IR (.xml + .bin)"
    )
    parser.add_argument(
        "--output",
        default=None,
        help="the .onnx or .xml file to write (None: onnx/model.onnx or openvino/model.xml in the saved model "
        "folder --weights, where Segmenter.from_pretrained(..., runtime=...) finds it)",
    )
    parser.add_argument("--fuse", action="store_true", help="export the fused inference copy (faster, same outputs)")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset")
    add_size_argument(parser, "--example-size", [256, 320], "traced input size")
    add_size_argument(
        parser, "--fixed-size", None, "export for this input size only (a faster export; other sizes are refused)"
    )
    add_size_argument(
        parser,
        "--check",
        [(256, 320), (200, 333), (512, 512)],
        "compare the runtime with PyTorch at these sizes (--fixed-size: at that size); --check with no sizes skips it",
        multiple=True,
    )
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed |runtime - PyTorch| (fp32)")
    parser.add_argument(
        "--quantize", choices=["int8"], default=None, help="also write an int8 model (*_int8.xml; --format openvino)"
    )
    parser.add_argument("--calibration", default=None, help="folder of images to calibrate int8 on (recursive)")
    parser.add_argument("--num-images", type=positive_int, default=300, help="calibration images used (sorted)")
    args = parser.parse_args(argv)
    if args.quantize and args.format != "openvino":
        parser.error("--quantize int8 is made by NNCF for --format openvino")
    if args.quantize and args.calibration is None:
        parser.error("--quantize int8 needs --calibration DIR (images to calibrate on)")
    if args.calibration is not None and not args.quantize:
        parser.error("--calibration is used by --quantize int8")
    if args.model is None and args.weights is None:
        parser.error("--model or --weights is needed")
    size_flag = "--fixed-size" if args.fixed_size else "--example-size"
    ((example_h, example_w),) = sizes_of(parser, size_flag, args.fixed_size or args.example_size)
    checks = sizes_of(parser, "--check", args.check)
    if args.fixed_size and checks:
        checks = [(example_h, example_w)]
    path = output_path(args)
    model = build_for_export(args.model, args.weights, args.num_classes)
    exported = fuse_for_inference(model) if args.fuse else model
    export = export_openvino if args.format == "openvino" else export_onnx
    start = time.perf_counter()
    export(exported, path, (example_h, example_w), args.opset, fixed_size=bool(args.fixed_size))
    seconds = time.perf_counter() - start
    shape = f"height and width fixed at {example_h} x {example_w}" if args.fixed_size else "height and width"
    size = sum(f.stat().st_size for f in (path, path.with_suffix(".bin")) if f.is_file())  # IR: .xml + .bin
    print(f"wrote {path} ({size / 2**20:.1f} MiB) in {seconds:.0f} s, dynamic batch, {shape}")
    if checks:
        runtime = RUNTIME_OF[args.format]
        diffs = max_abs_diff(load_exported(path, runtime), model, checks)
        for (height, width), diff in zip(checks, diffs):
            print(f"  {runtime} vs PyTorch at {height} x {width}: max abs diff {diff:.2e}")
        if max(diffs) > args.tolerance:
            return fail(f"the exported output differs by more than --tolerance {args.tolerance}")
    if args.quantize:
        quantize(args, model, path)  # a ConfigError is one error line, exit 2 (run_tool)
    return 0
