"""The pool-size ablation's results: the table (``results.csv`` / ``results.md``) and its plot.

``lrsa-seg ablate`` writes them; notebooks read them. A finished size's run folder
``<ablation>/runs/pool<N>/`` holds ``result.json``; the committed table keeps the rows of sizes
whose run folders are not here (a fresh clone).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .metrics import SIZE_NAMES
from .reporting import fmt

RESULT = "result.json"

SIZE_COLUMNS = tuple(f"test_miou_{size}" for size in SIZE_NAMES)
"""Test mIoU over small / medium / large ground-truth regions (:mod:`lrsa_seg.metrics`)."""

COLUMNS = (
    "pooled_size",
    "head_pooled_size",
    "params",
    "gmacs",
    "latency_ms",
    "val_miou",
    "test_miou",
    *SIZE_COLUMNS,
    "train_time_s",
    "epochs",
    "steps",
    "size",
    "device",
    "precision",
)


def recorded_rows(ablation_dir: Path) -> dict[int, dict[str, Any]]:
    """Rows of the existing ``results.csv`` whose pooled size has no run folder here, by size.

    The run folders (checkpoints, logs) are not committed, the table is: in a fresh clone these
    rows are the record of the sizes finished elsewhere, so they are kept and not run again.
    """
    path = ablation_dir / "results.csv"
    if not path.is_file():
        return {}
    try:
        rows = read_results_csv(path)
    except ValueError as err:
        raise ConfigError(f"{path}: not a results table of lrsa-seg ablate ({err}); fix or delete it") from err
    if any(row.get("pooled_size") is None for row in rows):
        raise ConfigError(f"{path}: a row has no pooled_size; fix or delete it")
    runs = ablation_dir / "runs"
    return {row["pooled_size"]: row for row in rows if not (runs / f"pool{row['pooled_size']}").exists()}


def read_results(ablation_dir: Path) -> list[dict[str, Any]]:
    """Rows (:data:`COLUMNS`) of every finished size, by pooled size.

    A size's ``runs/pool<N>/result.json`` when its folder is here, else its row of the existing
    ``results.csv`` (:func:`recorded_rows`).
    """
    rows = recorded_rows(ablation_dir)
    for path in sorted((ablation_dir / "runs").glob(f"pool*/{RESULT}")):
        with open(path) as f:
            result = json.load(f)
        rows[result["pooled_size"]] = {key: result.get(key) for key in COLUMNS}
    return [rows[size] for size in sorted(rows)]


def read_results_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``results.csv``, numbers converted (empty cells give ``None``)."""
    ints, floats = (
        ("pooled_size", "head_pooled_size", "params", "epochs", "steps"),
        (
            "gmacs",
            "latency_ms",
            "val_miou",
            "test_miou",
            *SIZE_COLUMNS,
            "train_time_s",
        ),
    )
    rows = []
    with open(path, newline="") as f:
        for raw in csv.DictReader(f):
            row: dict[str, Any] = dict(raw)
            for key in ints + floats:
                if key in row:
                    value = row[key]
                    row[key] = None if value in ("", None) else (int(value) if key in ints else float(value))
            rows.append(row)
    return rows


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """``results.csv``: one row per pooled size, mIoU as fractions, raw counts."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in COLUMNS})


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The results as a Markdown table (mIoU in %, parameters in millions; ``-`` where not measured)."""
    size = rows[0]["size"] if rows else "?"
    lines = [
        f"| pooled size | head pooled size | params (M) | GMACs @ {size} | latency @ {size} (ms) "
        "| val mIoU best (%) | test mIoU (%) | test mIoU small / medium / large (%) | train time (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        by_size = " / ".join(fmt(r.get(key), ".2f", 100) for key in SIZE_COLUMNS)
        lines.append(
            f"| {r['pooled_size']} | {fmt(r['head_pooled_size'], 'd')} | {fmt(r['params'], '.2f', 1e-6)} "
            f"| {fmt(r['gmacs'], '.2f')} | {fmt(r['latency_ms'], '.1f')} | {fmt(r['val_miou'], '.2f', 100)} "
            f"| {fmt(r['test_miou'], '.2f', 100)} | {by_size} | {fmt(r['train_time_s'], '.0f')} |"
        )
    return "\n".join(lines)


def write_markdown(rows: Sequence[dict[str, Any]], path: Path, name: str, warmup_runs: int, latency_runs: int) -> None:
    """``results.md``: the table and what its columns mean."""
    first = rows[0] if rows else {}
    text = f"""# Pool-size ablation `{name}`

The backbone's LRSA pooled size is set in all four stages; the head's is the column
"head pooled size". GMACs (multiply-accumulates, `torch.utils.flop_counter`, attention counted on
the plain path) and latency are at {first.get("size", "?")} (height x width), batch 1; latency is
the median of {latency_runs} forward passes after {warmup_runs} warm-up pass(es) on {first.get("device", "?")}
({first.get("precision", "?")} precision), measured in the test process. "val mIoU best" is the
best validation mIoU over the epochs; "test mIoU" is that of the best checkpoint, also over the
pixels of small / medium / large ground-truth regions (connected regions of one class with an
area under 32², 32² to 96², at least 96² pixels at the evaluated resolution: COCO's
thresholds). Train time is the wall time of training with validation excluded, summed over
resumed sessions.

{markdown_table(rows)}
"""
    path.write_text(text)


def plot_results(rows: Sequence[dict[str, Any]], path: str | Path | None = None, not_run: Sequence[int] = ()) -> Any:
    """Plot mIoU (val best, test, test by region size) and GMACs / latency against the pooled size.

    Saved to ``path`` if given.

    The mIoU axis starts at 0, so the spread between sizes is shown at its true scale (one seed
    per size cannot separate a 2-point spread from noise). Sizes in ``not_run`` are marked on the
    x axis as not run. Returns the matplotlib ``Figure``, made without pyplot, so it neither needs
    nor changes a backend (``savefig`` renders PNG with Agg); a notebook shows it with ``display(fig)``.
    """
    from matplotlib.figure import Figure

    sizes = [r["pooled_size"] for r in rows]
    ticks = sorted({*sizes, *not_run})
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_miou, ax_cost = fig.subplots(1, 2)
    top = 0.0
    curves = [("val_miou", "val mIoU (best)", "o", "-"), ("test_miou", "test mIoU", "s", "-")]
    curves += [(key, f"test, {name} regions", "x", ":") for key, name in zip(SIZE_COLUMNS, SIZE_NAMES)]
    for key, label, marker, linestyle in curves:
        points = [(s, r[key] * 100) for s, r in zip(sizes, rows) if r.get(key) is not None]
        if points:
            ax_miou.plot(*zip(*points), marker=marker, linestyle=linestyle, label=label)
            top = max(top, *(v for _, v in points))
    ax_miou.set_ylim(0, max(10.0, top * 1.5))  # room for the legend above the curves
    ax_miou.set(xlabel="backbone pooled size", ylabel="mIoU (%)", title="Accuracy (one seed per size)")
    size = rows[0]["size"] if rows else ""
    ax_cost.plot(sizes, [r["gmacs"] for r in rows], marker="o", color="C2", label="GMACs")
    ax_cost.set(xlabel="backbone pooled size", ylabel=f"GMACs @ {size}", title="Cost")
    ax_cost.set_ylim(bottom=0)
    ax_latency = ax_cost.twinx()
    ax_latency.plot(sizes, [r["latency_ms"] for r in rows], marker="^", color="C3", linestyle="--", label="latency")
    ax_latency.set_ylabel(f"latency @ {size} (ms)")
    ax_latency.set_ylim(bottom=0)
    handles = ax_cost.get_legend_handles_labels()[0] + ax_latency.get_legend_handles_labels()[0]
    ax_cost.legend(handles, [h.get_label() for h in handles], loc="upper left")
    for ax in (ax_miou, ax_cost):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [f"{t}\n(not run)" if t in not_run else str(t) for t in ticks])
        ax.grid(alpha=0.3)
        for t in not_run:
            ax.axvline(t, color="0.6", linestyle=":")
    ax_miou.legend(loc="upper center", ncols=2, fontsize="small")
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def write_tables(
    ablation_dir: Path, name: str, warmup_runs: int, latency_runs: int, requested: Sequence[int] = ()
) -> list[dict[str, Any]]:
    """Write ``results.csv``, ``results.md`` and ``pool_size.png`` from the finished runs.

    ``requested`` sizes without a finished run are marked on the plot as not run.
    """
    rows = read_results(ablation_dir)
    if not rows:
        return rows
    write_csv(rows, ablation_dir / "results.csv")
    write_markdown(rows, ablation_dir / "results.md", name, warmup_runs, latency_runs)
    not_run = sorted(set(requested) - {row["pooled_size"] for row in rows})
    plot_results(rows, ablation_dir / "pool_size.png", not_run=not_run)
    return rows
