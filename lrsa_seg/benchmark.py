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
reference in ``benchmarks/reference_lrformer.py``, from a source checkout), ``lrformer_t_onnx``
(the fused model exported to ONNX, run by onnxruntime), ``segformer_b0`` ... ``segformer_b2``
(Hugging Face ``transformers``, random init, logits upsampled to the input size as ours are).
Inference-only models are skipped in training mode.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .allocator import ALLOCATOR_ENV, apply_allocator_setting, release_freed_memory

# SegFormer-B0..B2 (Xie et al. 2021): widths; depths (2, 2, 2, 2) / (3, 4, 6, 3) for B2.
SEGFORMER = {
    "b0": dict(hidden_sizes=[32, 64, 160, 256], depths=[2, 2, 2, 2], decoder_hidden_size=256),
    "b1": dict(hidden_sizes=[64, 128, 320, 512], depths=[2, 2, 2, 2], decoder_hidden_size=256),
    "b2": dict(hidden_sizes=[64, 128, 320, 512], depths=[3, 4, 6, 3], decoder_hidden_size=768),
}
INFERENCE_ONLY = ("_fused", "_onnx", "_compiled")
DEFAULT_MODELS = ["lrformer_t", "lrformer_t_fused", "lrformer_t_ref", "segformer_b0", "segformer_b1"]
REFERENCE_FILE = Path(__file__).resolve().parents[1] / "benchmarks" / "reference_lrformer.py"
GEMM = "matmul_2048"


def parse_size(text: str) -> tuple[int, int]:
    """``"512"`` -> (512, 512); ``"1024x2048"`` -> (1024, 2048) (height x width)."""
    parts = text.lower().split("x")
    if len(parts) not in (1, 2) or not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"size must be N or HxW, got {text!r}")
    height, width = int(parts[0]), int(parts[-1])
    if min(height, width) < 32:
        raise argparse.ArgumentTypeError(f"sizes must be at least 32, got {text!r}")
    return height, width


# --- worker side -------------------------------------------------------------------------
def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _segformer(variant: str, num_classes: int) -> Any:
    import torch.nn.functional as F
    from torch import nn
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    config = SegformerConfig(num_labels=num_classes, **SEGFORMER[variant])
    model = SegformerForSemanticSegmentation(config)

    class Upsampled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: Any) -> Any:
            logits = self.model(pixel_values=x).logits  # stride 4
            return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    return Upsampled()


def _reference(model: Any) -> Any:
    import importlib.util

    if not REFERENCE_FILE.is_file():
        raise FileNotFoundError(f"the reference model needs a source checkout ({REFERENCE_FILE})")
    spec = importlib.util.spec_from_file_location("reference_lrformer", REFERENCE_FILE)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module.reference_like(model)


def build_model(name: str, num_classes: int) -> tuple[Any, dict[str, Any]]:
    """The model of a row name (see the module doc) and facts about it."""
    import torch

    from .models import create_model
    from .models.fuse import fuse_for_inference

    info: dict[str, Any] = {}
    if name.startswith("segformer_"):
        return _segformer(name.split("_")[1], num_classes), info
    base = name
    for suffix in ("_fused_compiled", "_fused", "_compiled", "_onnx", "_ref", "_cl"):
        if name.endswith(suffix):
            base = name[: -len(suffix)]
            break
    torch.manual_seed(0)
    model = create_model(base, num_classes=num_classes).eval()
    if name.endswith("_ref"):
        return _reference(model), info
    if name.endswith("_cl"):
        return model.to(memory_format=torch.channels_last), {"channels_last": True}
    if name.endswith(("_fused", "_onnx", "_fused_compiled")):
        model = fuse_for_inference(model)
    if name.endswith("_compiled"):
        model = torch.compile(model, dynamic=True)
    return model, info


class _Onnx:
    """onnxruntime session with the model's call signature."""

    def __init__(self, model: Any, threads: int, workdir: Path) -> None:
        import onnxruntime as ort

        from .export import export_onnx

        start = time.perf_counter()
        path = export_onnx(model, workdir / "model.onnx")
        self.export_s = time.perf_counter() - start
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, x: Any) -> Any:
        return self.session.run(["logits"], {"images": x.numpy()})[0]


def worker(spec: dict[str, Any]) -> int:
    """Run one row: build, then one step per ``run`` line on stdin; JSON replies on stdout."""
    import torch
    import torch.nn.functional as F

    out = sys.stdout
    sys.stdout = sys.stderr  # library chatter must not mix with the replies

    def reply(**kw: Any) -> None:
        out.write(json.dumps(kw) + "\n")
        out.flush()

    apply_allocator_setting()  # from the parent's --allocator, before any tensor exists
    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[spec["dtype"]]
    name, mode, batch = spec["model"], spec["mode"], spec["batch"]
    height, width = spec["size"]
    start = time.perf_counter()
    if name == GEMM:
        a = torch.randn(2048, 2048, device=device, dtype=dtype)
        b = torch.randn(2048, 2048, device=device, dtype=dtype)

        def step() -> None:
            for _ in range(3):
                torch.mm(a, b)

        info: dict[str, Any] = {"flop_per_step": 3 * 2 * 2048**3}
    else:
        model, info = build_model(name, spec["num_classes"])
        x = torch.randn(batch, 3, height, width)
        if name.endswith("_onnx"):
            import tempfile

            runner = _Onnx(model, spec["threads"], Path(tempfile.mkdtemp(prefix="lrsa-onnx-")))
            info["export_s"] = runner.export_s

            def step() -> None:
                runner(x)

        else:
            model = model.to(device)
            x = x.to(device)
            if info.get("channels_last"):
                x = x.contiguous(memory_format=torch.channels_last)
            autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
            if mode == "infer":
                model.eval()

                def step() -> None:
                    with torch.inference_mode(), autocast:
                        model(x)

            else:
                model.train()
                optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
                target = torch.randint(0, spec["num_classes"], (batch, height, width), device=device)

                def step() -> None:
                    with autocast:
                        loss = F.cross_entropy(model(x).float(), target)
                    loss.backward()
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    reply(ready=True, build_s=time.perf_counter() - start, rss_base_mib=_rss_mib(), **info)
    for line in sys.stdin:
        command = line.strip()
        if command == "run":
            step()  # re-warm after the previous turn's release
            sync()
            t0 = time.perf_counter()
            step()
            sync()
            reply(time=time.perf_counter() - t0)
            release_freed_memory()
        elif command == "done":
            result: dict[str, Any] = {"peak_rss_mib": _peak_rss_mib()}
            if device.type == "cuda":
                result["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
            if name.endswith("_compiled"):
                result["compile_frames"] = int(torch._dynamo.utils.counters["stats"]["unique_graphs"])
            reply(**result)
            return 0
    return 0


# --- parent side -------------------------------------------------------------------------
class Worker:
    """A row's subprocess: JSON line protocol over stdin/stdout."""

    def __init__(self, spec: dict[str, Any], env: dict[str, str]) -> None:
        self.spec = spec
        self.error: str | None = None
        self.info: dict[str, Any] = {}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lrsa_seg.benchmark", "--worker", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    def read(self) -> dict[str, Any] | None:
        """The worker's next reply, or None (and ``error`` set) if it died."""
        if self.error is not None or self.proc.stdout is None:
            return None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            tail = self.proc.stderr.read()[-2000:] if self.proc.stderr else ""
            self.error = f"worker exited with code {self.proc.returncode}: {tail.strip().splitlines()[-1:]}"
            return None
        return json.loads(line)

    def send(self, command: str) -> None:
        """Send ``run`` or ``done``."""
        if self.error is None and self.proc.stdin is not None:
            try:
                self.proc.stdin.write(command + "\n")
                self.proc.stdin.flush()
            except BrokenPipeError:
                self.error = "worker died"

    def close(self) -> None:
        """Kill the worker if it still runs; close its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def _macs(name: str, height: int, width: int, num_classes: int) -> int | None:
    """Forward multiply-accumulates of the (unfused) architecture, batch 1; None if unknown."""
    import torch

    from .flops import count_macs
    from .models import create_model

    if name == GEMM:
        return None
    if name.startswith("segformer_"):
        from torch.utils.flop_counter import FlopCounterMode

        with torch.device("meta"):
            model = _segformer(name.split("_")[1], num_classes)
        model.model.config._attn_implementation = "eager"  # the counter sees no CPU SDPA
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.zeros(1, 3, height, width, device="meta"))
        return counter.get_total_flops() // 2
    base = name.split("_")[0] + "_" + name.split("_")[1]
    with torch.device("meta"):
        model = create_model(base, num_classes=num_classes)
    return count_macs(model, height, width)[0]


def run_group(
    models: list[str], size: tuple[int, int], mode: str, batch: int, args: argparse.Namespace, env: dict[str, str]
) -> list[dict[str, Any]]:
    """Start one worker per model (+ the matmul), warm up, time round-robin, collect."""
    names = [m for m in models if mode == "infer" or not m.endswith(INFERENCE_ONLY)]
    names = [*names, GEMM]
    if args.device != "cpu":
        names = [n for n in names if not n.endswith("_onnx")]
    base = dict(size=list(size), mode=mode, batch=batch, threads=args.threads, device=args.device)
    base.update(dtype=args.dtype, num_classes=args.num_classes)
    rows = []
    workers = []
    for name in names:  # started one after another: builds (and ONNX exports) do not overlap
        w = Worker({**base, "model": name}, env)
        ready = w.read()
        w.info = ready or {}
        for _ in range(args.warmup):
            w.send("run")
            w.read()
        workers.append(w)
    times: dict[str, list[float]] = {w.spec["model"]: [] for w in workers}
    for _ in range(args.repeats):
        for w in workers:
            w.send("run")
            reply = w.read()
            if reply is not None:
                times[w.spec["model"]].append(reply["time"])
    for w in workers:
        w.send("done")
        final = w.read() or {}
        w.close()
        name = w.spec["model"]
        t = times[name]
        row: dict[str, Any] = dict(model=name, size=list(size), mode=mode, batch=batch, n=len(t), times_s=t)
        if t:
            row.update(median_s=statistics.median(t), min_s=min(t))
        row.update({k: v for k, v in w.info.items() if k != "ready"})
        row.update(final)
        if w.error:
            row["error"] = w.error
        rows.append(row)
    gemm = next((r for r in rows if r["model"] == GEMM and r.get("median_s")), None)
    peak = gemm["flop_per_step"] / gemm["median_s"] / 1e9 if gemm else None
    for row in rows:
        if row["model"] == GEMM:
            row["gflops"] = peak
            continue
        if mode == "infer" and row.get("median_s") and not args.no_flops:
            try:
                macs = _macs(row["model"], *size, args.num_classes)
            except Exception as err:  # noqa: BLE001 (a counting failure must not lose the timings)
                row["macs_error"] = str(err)
                macs = None
            if macs:
                row["gmacs"] = macs * batch / 1e9
                row["gflops"] = 2 * macs * batch / row["median_s"] / 1e9
                if peak:
                    row["fraction_of_matmul_peak"] = row["gflops"] / peak
    return rows


def machine_info(args: argparse.Namespace) -> dict[str, Any]:
    """CPU, torch and settings of the run."""
    import torch

    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    flags = ""
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "avx512": "avx512f" in flags,
        "logical_cpus": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": args.threads,
        "device": args.device,
        "dtype": args.dtype,
        "omp_wait_policy": args.omp_wait_policy,
        "allocator": args.allocator,
        "load_average_at_start": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _fmt(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) else "-"


def markdown(report: dict[str, Any], reference: str) -> str:
    """The rows as markdown tables, one per (mode, batch), plus the target ratios."""
    m = report["machine"]
    lines = [
        f"Machine: {m['cpu']} ({m['logical_cpus']} logical CPUs{', AVX-512' if m['avx512'] else ''}), "
        f"torch {m['torch']}, {m['device']} {m['dtype']}, {m['threads']} threads, OMP_WAIT_POLICY="
        f"{m['omp_wait_policy']}, allocator {m['allocator']}, load average at start "
        f"{', '.join(f'{x:.1f}' for x in m['load_average_at_start'])}.",
        "",
    ]
    rows = report["rows"]
    groups = sorted({(r["mode"], r["batch"]) for r in rows})
    for mode, batch in groups:
        title = "Inference" if mode == "infer" else "Training step (forward + backward + AdamW)"
        lines += [f"### {title}, batch {batch}", ""]
        lines += [
            f"| model | size | median s | min s | n | peak MiB | GFLOP/s | % matmul peak | x {reference} |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            if (r["mode"], r["batch"]) != (mode, batch):
                continue
            ref = next(
                (
                    x
                    for x in rows
                    if x["model"] == reference and x["size"] == r["size"] and (x["mode"], x["batch"]) == (mode, batch)
                ),
                None,
            )
            ratio = r["median_s"] / ref["median_s"] if ref and ref.get("median_s") and r.get("median_s") else None
            frac = r.get("fraction_of_matmul_peak")
            peak = r.get("cuda_peak_mib", r.get("peak_rss_mib"))
            size = f"{r['size'][0]}x{r['size'][1]}"
            if r.get("error"):
                lines.append(f"| {r['model']} | {size} | failed: {r['error'][:80]} | | | | | | |")
                continue
            lines.append(
                f"| {r['model']} | {size} | {_fmt(r.get('median_s'), '.3f')} | {_fmt(r.get('min_s'), '.3f')} | "
                f"{r['n']} | {_fmt(peak, '.0f')} | {_fmt(r.get('gflops'), '.1f')} | "
                f"{_fmt(frac * 100 if frac else None, '.0f')} | {_fmt(ratio, '.2f')} |"
            )
        lines.append("")
    targets = report.get("targets")
    if targets:
        lines += ["### Targets", "", "| target | measured | goal | met |", "|---|---|---|---|"]
        for t in targets:
            lines.append(f"| {t['name']} | {t['value']:.3g} | {t['goal']} | {'yes' if t['met'] else 'no'} |")
        lines.append("")
    return "\n".join(lines)


def targets(rows: list[dict[str, Any]], model: str, peer: str) -> list[dict[str, Any]]:
    """Issue 7's targets, for the rows that exist (inference, batch 1)."""

    def median(name: str, size: tuple[int, int]) -> float | None:
        for r in rows:
            if r["model"] == name and tuple(r["size"]) == size and r["mode"] == "infer" and r["batch"] == 1:
                return r.get("median_s")
        return None

    out = []
    for side, goal in ((512, 0.55), (1024, 0.35), (2048, 0.3)):
        ours, theirs = median(model, (side, side)), median(peer, (side, side))
        if ours and theirs:
            ratio = ours / theirs
            out.append(dict(name=f"{model} / {peer} at {side}²", value=ratio, goal=f"<= {goal}", met=ratio <= goal))
    small, big = median(model, (512, 512)), median(model, (2048, 2048))
    if small and big:
        out.append(dict(name=f"{model} growth 512² -> 2048²", value=big / small, goal="<= 17", met=big / small <= 17))
    for r in rows:
        if r["model"] == model and tuple(r["size"]) == (1024, 1024) and r["mode"] == "infer" and r["batch"] == 1:
            if r.get("fraction_of_matmul_peak"):
                frac = r["fraction_of_matmul_peak"]
                out.append(
                    dict(name=f"{model} GFLOP/s at 1024² / matmul peak", value=frac, goal=">= 0.7", met=frac >= 0.7)
                )
    return out


def main(argv: list[str] | None = None) -> int:
    """``lrsa-seg benchmark [--models ...] [--sizes 512 1024x2048 ...] [--modes infer train] --output DIR``."""
    parser = argparse.ArgumentParser(prog="lrsa-seg benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    parser.add_argument(
        "--sizes", nargs="+", type=parse_size, default=[(512, 512), (1024, 1024), (2048, 2048), (1024, 2048)]
    )
    parser.add_argument("--train-sizes", nargs="+", type=parse_size, default=None, help="default: the first of --sizes")
    parser.add_argument("--modes", nargs="+", choices=["infer", "train"], default=["infer", "train"])
    parser.add_argument("--batch", type=int, default=1, help="inference batch")
    parser.add_argument("--train-batch", type=int, default=8, help="training-step batch")
    parser.add_argument("--infer-train-batch", action="store_true", help="also time inference at --train-batch")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (one step per model per round)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per model first")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (and ORT intra-op threads)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the CUDA path is untested here)")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="bf16: autocast")
    parser.add_argument("--num-classes", type=int, default=150)
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
    if args.worker:
        return worker(json.loads(args.worker))
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
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    report: dict[str, Any] = {
        "machine": machine_info(args),
        "args": {k: v for k, v in vars(args).items() if k != "worker"},
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
                or f"median {_fmt(row.get('median_s'), '.3f')} s, peak {_fmt(row.get('peak_rss_mib'), '.0f')} MiB"
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


if __name__ == "__main__":
    sys.exit(main())
