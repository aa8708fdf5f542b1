"""``lrsa-seg export``: ONNX with dynamic height and width, checked against onnxruntime."""

from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from ..models import create_model, fuse_for_inference, list_models, load_pretrained
from ..models.export import export_onnx, onnx_max_abs_diff
from .common import ToolParser, add_size_argument, fail, sizes_of


def build_for_export(
    name: str, weights: str | None = None, num_classes: int | None = None, fuse: bool = False
) -> nn.Module:
    """A registered segmentor in eval mode, with ``weights`` (any source ``load_pretrained`` reads), fused or not."""
    if weights is None:
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
    model.eval()
    return fuse_for_inference(model) if fuse else model


def main(argv: list[str] | None = None) -> int:
    """``lrsa-seg export --model lrformer_t [--weights F] --output F [--fuse] [--check H W ...]``."""
    parser = ToolParser("export", "Export a segmentor to ONNX with dynamic batch, height and width.")
    parser.add_argument(
        "--model", required=True, choices=[m for m in list_models() if not m.endswith("_cls")], help="segmentor"
    )
    parser.add_argument(
        "--weights",
        default=None,
        help="weights: a saved model folder, hf:// address, Lightning or official checkpoint",
    )
    parser.add_argument("--num-classes", type=int, default=None, help="output classes (None: from --weights, else 150)")
    parser.add_argument("--format", choices=["onnx"], default="onnx", help="output format")
    parser.add_argument("--output", required=True, help="the .onnx file to write")
    parser.add_argument("--fuse", action="store_true", help="export the fused inference copy (faster, same outputs)")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset")
    add_size_argument(parser, "--example-size", [256, 320], "traced input size")
    add_size_argument(
        parser,
        "--check",
        [(256, 320), (200, 333), (512, 512)],
        "compare onnxruntime with PyTorch at these sizes; --check with no sizes skips it",
        multiple=True,
    )
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed |onnxruntime - PyTorch|")
    args = parser.parse_args(argv)
    ((example_h, example_w),) = sizes_of(parser, "--example-size", args.example_size)
    checks = sizes_of(parser, "--check", args.check)
    model = build_for_export(args.model, args.weights, args.num_classes, args.fuse)
    path = export_onnx(model, args.output, (example_h, example_w), args.opset)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB), dynamic batch, height and width")
    if checks:
        diffs = onnx_max_abs_diff(path, model, checks)
        for (height, width), diff in zip(checks, diffs):
            print(f"  onnxruntime vs PyTorch at {height} x {width}: max abs diff {diff:.2e}")
        if max(diffs) > args.tolerance:
            return fail(f"ONNX output differs by more than --tolerance {args.tolerance}")
    return 0
