"""``lrsa-seg benchmark``: latency and peak memory of LRFormer and its peers, side by side.

Process model: every row (one model at one size, mode and batch) runs in its OWN worker
subprocess, so its peak memory (the worker's peak RSS, or the CUDA allocator's peak) is that
row's alone. All workers of one (size, mode, batch) group are started together, warmed up, and
then timed round-robin, one step per model per round, so that load from elsewhere on a shared
machine falls on all models alike and the ratios between them stay comparable. A 2048x2048
fp32 matmul (the machine's practical peak) is timed in the same rounds by its own worker.

Memory between turns: workers run with the allocator ``lrsa-seg`` itself uses (``--allocator
retain``, :mod:`lrsa_seg.allocator`: freed memory is kept for the next pass). Idle workers would
then hold their peak footprints all at once (at 2048², five models' peaks add up to more than
this 24 GiB machine has, and the kernel starts evicting the libraries' code pages), so a worker
returns its free memory after each turn and, on its next turn, runs one untimed step before the
timed one: each timed step is a warm step of a long-running process, as in ``lrsa-seg predict``
over many images.

Models (``--models``): ``lrformer_t`` (any registered segmentor: the training module, NCHW as
users run it), ``lrformer_t_cl`` (the same, channels-last), ``lrformer_t_fused``
(:func:`~lrsa_seg.models.fuse.fuse_for_inference`), ``lrformer_t_fused_compiled``
(``torch.compile(dynamic=True)`` of the fused copy), ``lrformer_t_ref`` (the unoptimised
reference in :mod:`lrsa_seg.models.reference`), ``segformer_b0`` ... ``segformer_b2``
(Hugging Face ``transformers``, random init, logits upsampled to the input size as ours are).
Exported rows (``--onnx``, ``--openvino``): ``<model>_onnx`` (ONNX Runtime), ``<model>_openvino``
(OpenVINO fp32) and ``<model>_openvino_int8`` (NNCF int8), where ``<model>`` is an LRFormer
(its fused copy is exported) or a SegFormer; each is exported once with dynamic height and width
into ``--export-dir`` and reused by every size (and by later runs given the same folder); the
export time is reported. Inference-only models are skipped in training mode.

Pooled sizes (``--modes pooled``): the training step (forward + backward + AdamW) of
``--pooled-model`` with its backbone's LRSA pooled size set to each of ``--pooled-sizes`` in all
four stages (the pool-size ablation's models; the head's pooled size ``--pooled-head-size``,
drop path off, as in the quickstart), at ``--train-sizes`` / ``--train-batch``, timed
round-robin in one run and reported as ratios to pooled size 16 (always included). The
quickstart's: ``--modes pooled --train-sizes 176 224 --train-batch 4 --num-classes 11``.
``--pooled-full`` adds the same models with LRSA's exact shortcut off (every grid cell
attended), so the shortcut's gain is measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from ...allocator import ALLOCATOR_ENV
from ...reporting import fmt
from ..common import ToolParser, add_size_argument, sizes_of
from .report import POOLED_REFERENCE, markdown, targets
from .runner import machine_info, run_group

DEFAULT_MODELS = ["lrformer_t", "lrformer_t_fused", "lrformer_t_ref", "segformer_b0", "segformer_b1"]


def pooled_models(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Row name -> :func:`~lrsa_seg.models.create_model` overrides of ``--modes pooled``.

    ``{model}_pool{P}`` (and ``{model}_pool{P}_full`` with ``--pooled-full``), pooled size 16 first.
    """
    sizes = sorted({POOLED_REFERENCE, *args.pooled_sizes}, key=lambda p: (p != POOLED_REFERENCE, p))
    out = {}
    for full in (False, True) if args.pooled_full else (False,):
        for p in sizes:
            name = f"{args.pooled_model}_pool{p}" + ("_full" if full else "")
            out[name] = dict(pooled_sizes=p, head_pooled_size=args.pooled_head_size, drop_path_rate=0.0)
    return out


def main(argv: list[str] | None = None) -> int:
    """``lrsa-seg benchmark [--models ...] [--sizes 512 1024x2048 ...] [--modes infer train] --output DIR``."""
    parser = ToolParser("benchmark", __doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="rows (see the module doc)")
    add_size_argument(
        parser, "--sizes", [(512, 512), (1024, 1024), (2048, 2048), (1024, 2048)], "inference sizes", multiple=True
    )
    add_size_argument(parser, "--train-sizes", None, "training-step sizes (None: the first of --sizes)", multiple=True)
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=["infer", "train", "pooled"],
        default=["infer", "train"],
        help="what to time (pooled: training step per pooled size, see the module doc)",
    )
    parser.add_argument("--pooled-sizes", nargs="+", type=int, default=[8, 16, 32, 48], help="backbone pooled sizes")
    parser.add_argument("--pooled-model", default="lrformer_t", help="the segmentor of --modes pooled")
    parser.add_argument("--pooled-head-size", type=int, default=16, help="head pooled size (the quickstart's 16)")
    parser.add_argument("--pooled-full", action="store_true", help="also time every pooled size without the shortcut")
    parser.add_argument("--batch", type=int, default=1, help="inference batch")
    parser.add_argument("--train-batch", type=int, default=8, help="training-step batch")
    parser.add_argument("--infer-train-batch", action="store_true", help="also time inference at --train-batch")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (one step per model per round)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per model first")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (and ORT intra-op threads)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the CUDA path is untested here)")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="bf16: autocast")
    parser.add_argument("--num-classes", type=int, default=150, help="output classes")
    parser.add_argument("--onnx", action="store_true", help="add the ONNX Runtime row(s) of each LRFormer variant")
    parser.add_argument(
        "--openvino",
        action="store_true",
        help="add OpenVINO fp32 and int8 rows of each LRFormer variant and SegFormer (the [deploy] extra)",
    )
    parser.add_argument(
        "--export-dir",
        default=None,
        help="folder of the exported rows' files, reused when present (None: a temporary folder for this run)",
    )
    parser.add_argument(
        "--fixed-exports",
        action="store_true",
        help="export every row once per size (fixed height and width: about a minute for LRFormer-T, where the "
        "dynamic export takes about nine, see docs/deployment.md) instead of once with dynamic sizes",
    )
    parser.add_argument(
        "--calibration",
        default=None,
        help="images to calibrate the int8 rows on (None: random inputs; speed does not depend on them)",
    )
    parser.add_argument("--compile", action="store_true", help="add torch.compile rows of each fused LRFormer")
    parser.add_argument(
        "--omp-wait-policy",
        choices=["passive", "active", "inherit"],
        default="passive",
        help="OpenMP threads sleep (passive) or spin (active) between parallel regions; on a shared "
        "machine spinning threads collapse under other load",
    )
    parser.add_argument(
        "--allocator",
        choices=["retain", "system", "thp"],
        default="retain",
        help="retain: glibc keeps freed memory for reuse (what lrsa-seg runs with, see lrsa_seg.allocator); "
        "system: malloc as it is; thp: system + transparent huge pages for tensors >= 2 MiB "
        "(THP_MEM_ALLOC_ENABLE=1)",
    )
    parser.add_argument("--reference", default="segformer_b1", help="the ratio column divides by this model")
    parser.add_argument("--target-model", default="lrformer_t_fused", help="the model checked against the targets")
    parser.add_argument("--no-flops", action="store_true", help="skip MAC counting (GFLOP/s columns)")
    parser.add_argument("--output", required=False, default=None, help="directory for benchmark.json and benchmark.md")
    args = parser.parse_args(argv)
    args.sizes = sizes_of(parser, "--sizes", args.sizes)
    args.train_sizes = sizes_of(parser, "--train-sizes", args.train_sizes)
    if not args.sizes:
        parser.error("--sizes needs at least one H W pair")
    if min(args.pooled_sizes) < 1 or args.pooled_head_size < 1:
        parser.error("--pooled-sizes and --pooled-head-size must be >= 1")
    models = list(dict.fromkeys(args.models))
    for name in list(models):
        if name.startswith("lrformer_") and name.count("_") == 1:
            if args.onnx:
                models.append(f"{name}_onnx")
            if args.compile:
                models.append(f"{name}_fused_compiled")
        if args.openvino and name.count("_") == 1:  # lrformer_t, segformer_b1: not their other forms
            models += [f"{name}_openvino", f"{name}_openvino_int8"]
    with tempfile.TemporaryDirectory(prefix="lrsa-exports-") as scratch:
        args.export_dir = args.export_dir or scratch
        return measure(args, models)


def measure(args: argparse.Namespace, models: list[str]) -> int:
    """Run every group of rows, print the report and write it to ``--output``."""
    env = dict(os.environ)
    if args.omp_wait_policy != "inherit":
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()
    env[ALLOCATOR_ENV] = "retain" if args.allocator == "retain" else "system"
    if args.allocator == "thp":
        env["THP_MEM_ALLOC_ENABLE"] = "1"
    report: dict[str, Any] = {
        "machine": machine_info(args),
        "args": vars(args),
    }
    groups = [("infer", size, args.batch) for size in args.sizes] if "infer" in args.modes else []
    if "infer" in args.modes and args.infer_train_batch and args.train_batch != args.batch:
        groups += [("infer", size, args.train_batch) for size in args.sizes]
    if "train" in args.modes:
        groups += [("train", size, args.train_batch) for size in (args.train_sizes or args.sizes[:1])]
    overrides: dict[str, dict[str, Any]] = {}
    if "pooled" in args.modes:
        overrides = pooled_models(args)
        groups += [("pooled", size, args.train_batch) for size in (args.train_sizes or args.sizes[:1])]
    rows: list[dict[str, Any]] = []
    for mode, size, batch in groups:
        names = list(overrides) if mode == "pooled" else models
        print(f"[benchmark] {mode} {size[0]}x{size[1]} batch {batch}: {', '.join(names)}", file=sys.stderr)
        group = run_group(names, size, mode, batch, args, env, overrides if mode == "pooled" else None)
        for row in group:
            status = (
                row.get("error")
                or f"median {fmt(row.get('median_s'), '.3f')} s, peak {fmt(row.get('peak_rss_mib'), '.0f')} MiB"
            )
            print(f"  {row['model']:<28} {status}", file=sys.stderr)
        rows += group
    report["rows"] = rows
    report["targets"] = targets(rows, args.target_model, args.reference)
    text = markdown(report, args.reference)
    if args.output:
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        (out / "benchmark.json").write_text(json.dumps(report, indent=1))
        (out / "benchmark.md").write_text(text)
    print(text)
    return 0
