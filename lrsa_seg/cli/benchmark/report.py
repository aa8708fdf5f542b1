"""The benchmark's Markdown report and its targets."""

from __future__ import annotations

from typing import Any

from ...reporting import fmt

# The ratio column of the pooled-size table divides by this pooled size (the paper's).
POOLED_REFERENCE = 16


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
    lines += pooled_markdown([r for r in rows if r["mode"] == "pooled"])
    rows = [r for r in rows if r["mode"] != "pooled"]
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
                f"| {r['model']} | {size} | {fmt(r.get('median_s'), '.3f')} | {fmt(r.get('min_s'), '.3f')} | "
                f"{r['n']} | {fmt(peak, '.0f')} | {fmt(r.get('gflops'), '.1f')} | "
                f"{fmt(frac * 100 if frac else None, '.0f')} | {fmt(ratio, '.2f')} |"
            )
        lines.append("")
    targets = report.get("targets")
    if targets:
        lines += ["### Targets", "", "| target | measured | goal | met |", "|---|---|---|---|"]
        for t in targets:
            lines.append(f"| {t['name']} | {t['value']:.3g} | {t['goal']} | {'yes' if t['met'] else 'no'} |")
        lines.append("")
    return "\n".join(lines)


def pooled_markdown(rows: list[dict[str, Any]], reference: int = POOLED_REFERENCE) -> list[str]:
    """Lines of the pooled-size table: training step per pooled size, as ratios to pooled ``reference``.

    The ratio divides by the ``{model}_pool{reference}`` row of the same input size and batch
    (the shortcut on, as models run by default); ``_full`` rows run with the shortcut off.
    """
    lines: list[str] = []
    for size, batch in sorted({(tuple(r["size"]), r["batch"]) for r in rows}):
        group = [r for r in rows if (tuple(r["size"]), r["batch"]) == (size, batch)]
        ref = next((r for r in group if r["model"].endswith(f"_pool{reference}") and r.get("median_s")), None)
        lines += [
            f"### Training step by pooled size (forward + backward + AdamW), batch {batch}, {size[0]}x{size[1]}",
            "",
            f"| model | pooled size | shortcut | median s | min s | n | peak MiB | x pooled {reference} |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in group:
            pooled = r.get("overrides", {}).get("pooled_sizes")
            shortcut = "off" if r["model"].endswith("_full") else "on"
            if r.get("error"):
                lines.append(f"| {r['model']} | {pooled} | {shortcut} | failed: {r['error'][:80]} | | | | |")
                continue
            ratio = r["median_s"] / ref["median_s"] if ref and r.get("median_s") else None
            lines.append(
                f"| {r['model']} | {pooled} | {shortcut} | {fmt(r.get('median_s'), '.3f')} | "
                f"{fmt(r.get('min_s'), '.3f')} | {r['n']} | {fmt(r.get('peak_rss_mib'), '.0f')} | {fmt(ratio, '.2f')} |"
            )
        lines.append("")
    return lines


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
