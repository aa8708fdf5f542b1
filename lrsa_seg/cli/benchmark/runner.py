"""The parent side: one worker process per row, warmed up together, timed round-robin."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

from .zoo import GEMM, INFERENCE_ONLY, exported_suffix, row_macs


class Worker:
    """A row's subprocess: JSON line protocol over stdin/stdout."""

    def __init__(self, spec: dict[str, Any], env: dict[str, str]) -> None:
        self.spec = spec
        self.error: str | None = None
        self.info: dict[str, Any] = {}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lrsa_seg.cli.benchmark.worker", json.dumps(spec)],
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


def run_group(
    models: list[str],
    size: tuple[int, int],
    mode: str,
    batch: int,
    args: argparse.Namespace,
    env: dict[str, str],
    overrides: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Start one worker per model (+ the matmul), warm up, time round-robin, collect.

    ``mode`` is ``infer``, ``train`` or ``pooled`` (a training step; its rows are the pooled-size
    sweep, which needs no matmul peak). ``overrides``: model name -> ``create_model`` arguments.
    """
    names = [m for m in models if mode == "infer" or not m.endswith(INFERENCE_ONLY)]
    if mode != "pooled":
        names = [*names, GEMM]
    if args.device != "cpu":
        names = [n for n in names if exported_suffix(n) is None]  # the runtimes run on the CPU
    base = dict(size=list(size), mode=mode, batch=batch, threads=args.threads, device=args.device)
    base.update(dtype=args.dtype, num_classes=args.num_classes)
    base.update(export_dir=args.export_dir, calibration=args.calibration, fixed_exports=args.fixed_exports)
    rows = []
    workers = []
    for name in names:  # started one after another: builds (and exports) do not overlap
        w = Worker({**base, "model": name, "overrides": (overrides or {}).get(name, {})}, env)
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
        if w.spec["overrides"]:
            row["overrides"] = w.spec["overrides"]
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
                macs = row_macs(row["model"], *size, args.num_classes)
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
