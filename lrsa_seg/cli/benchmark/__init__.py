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
reference in :mod:`lrsa_seg.models.reference`), ``lrformer_t_onnx``
(the fused model exported to ONNX, run by onnxruntime), ``segformer_b0`` ... ``segformer_b2``
(Hugging Face ``transformers``, random init, logits upsampled to the input size as ours are).
Inference-only models are skipped in training mode.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from ...allocator import ALLOCATOR_ENV
from ...reporting import fmt
from ..common import ToolParser, add_size_argument, sizes_of
from .report import markdown, targets
from .runner import machine_info, run_group

DEFAULT_MODELS = ["lrformer_t", "lrformer_t_fused", "lrformer_t_ref", "segformer_b0", "segformer_b1"]


def main(argv: list[str] | None = None) -> int:
    """``lrsa-seg benchmark [--models ...] [--sizes 512 1024x2048 ...] [--modes infer train] --output DIR``."""
    parser = ToolParser("benchmark", __doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="rows (see the module doc)")
    add_size_argument(
        parser, "--sizes", [(512, 512), (1024, 1024), (2048, 2048), (1024, 2048)], "inference sizes", multiple=True
    )
    add_size_argument(parser, "--train-sizes", None, "training-step sizes (None: the first of --sizes)", multiple=True)
    parser.add_argument(
        "--modes", nargs="+", choices=["infer", "train"], default=["infer", "train"], help="what to time"
    )
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
    models = list(dict.fromkeys(args.models))
    for name in list(models):
        if name.startswith("lrformer_") and name.count("_") == 1:
            if args.onnx:
                models.append(f"{name}_onnx")
            if args.compile:
                models.append(f"{name}_fused_compiled")
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
    rows: list[dict[str, Any]] = []
    for mode, size, batch in groups:
        print(f"[benchmark] {mode} {size[0]}x{size[1]} batch {batch}: {', '.join(models)}", file=sys.stderr)
        group = run_group(models, size, mode, batch, args, env)
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
