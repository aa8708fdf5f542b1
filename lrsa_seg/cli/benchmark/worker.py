"""One benchmark row in its own process: build the model, then one timed step per ``run`` line on stdin."""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from ...allocator import apply_allocator_setting, release_freed_memory
from .zoo import GEMM, build_model, exported_model, exported_suffix


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


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
        x = torch.randn(batch, 3, height, width)
        if exported_suffix(name) is not None:
            folder, size = Path(spec["export_dir"]), (height, width)
            runner, info = exported_model(
                name, spec["num_classes"], spec["threads"], folder, spec["calibration"], size, spec["fixed_exports"]
            )

            def step() -> None:
                runner.run(x.numpy())

        else:
            model, info = build_model(name, spec["num_classes"], spec.get("overrides"))
            model = model.to(device)
            x = x.to(device)
            if info.get("channels_last"):
                x = x.contiguous(memory_format=torch.channels_last)
            autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
            if mode == "infer":  # else "train" or "pooled": a training step
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


if __name__ == "__main__":
    sys.exit(worker(json.loads(sys.argv[1])))
