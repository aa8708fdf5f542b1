"""The pool-size ablation's results: one :class:`AblationRow` per run, the table and its plot.

``lrsa-seg ablate`` writes them; notebooks read them. A finished run's folder
``<ablation>/runs/<run_name>/`` (:func:`run_name`: ``pool<N>`` for seed 0, ``pool<N>_seed<S>``
otherwise) holds ``result.json``; the committed table keeps the rows of runs whose folders are
not here (a fresh clone). Rows are keyed by (pooled size, seed); the table (``results.md``) and
the plot show, per pooled size, the mean and the range over its seeds.
"""

from __future__ import annotations

import csv
import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, get_args, get_type_hints

from .errors import ConfigError
from .metrics import SIZE_NAMES
from .reporting import fmt

RESULT = "result.json"
TEST_METRIC = "test/mIoU"

SIZE_COLUMNS = tuple(f"test_miou_{size}" for size in SIZE_NAMES)
"""Test mIoU over small / medium / large ground-truth regions (:mod:`lrsa_seg.metrics`)."""


@dataclass(frozen=True)
class AblationRow:
    """One run of the ablation (a pooled size at a seed): the columns of ``results.csv``, in order.

    ``result.json``, ``results.csv``, ``results.md`` and the plot are all written from it. mIoU
    are fractions; ``None`` is a value not measured (an empty CSV cell).

    Args:
        pooled_size: the backbone's LRSA pooled size, in all four stages.
        seed: ``seed_everything`` of the run (rows recorded before seeds existed read as 0).
        head_pooled_size: the head's LRSA pooled size.
        params: parameters of the network.
        gmacs: forward multiply-accumulates (1e9) at ``size``, batch 1.
        latency_ms: median forward latency at ``size``, batch 1, on ``device``.
        val_miou: best validation mIoU over the epochs.
        test_miou: test mIoU of the best checkpoint.
        test_miou_small: test mIoU over the pixels of small ground-truth regions.
        test_miou_medium: the same over medium regions.
        test_miou_large: the same over large regions.
        train_time_s: training wall time, validation excluded, summed over resumed sessions.
        epochs: finished epochs.
        steps: optimizer steps.
        size: ``"<height>x<width>"`` of the MACs count and the latency.
        device: where the latency was measured (GPU name, or ``cpu x<threads>``).
        precision: the trainer's precision during the latency measurement.
    """

    pooled_size: int
    seed: int = 0
    head_pooled_size: int | None = None
    params: int | None = None
    gmacs: float | None = None
    latency_ms: float | None = None
    val_miou: float | None = None
    test_miou: float | None = None
    test_miou_small: float | None = None
    test_miou_medium: float | None = None
    test_miou_large: float | None = None
    train_time_s: float | None = None
    epochs: int | None = None
    steps: int | None = None
    size: str | None = None
    device: str | None = None
    precision: str | None = None

    @property
    def key(self) -> tuple[int, int]:
        """``(pooled_size, seed)``: what identifies a run."""
        return self.pooled_size, self.seed

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> AblationRow:
        """A row from a CSV row (strings) or a ``result.json`` (JSON values); other keys are ignored.

        Empty or missing cells are ``None``, a missing ``seed`` is 0. Raises ``ValueError`` for a
        cell that is not of its column's type or a missing ``pooled_size``.
        """
        values: dict[str, Any] = {}
        for name, kind in _TYPES.items():
            value = record.get(name)
            if value is None or value == "":
                continue
            values[name] = _convert(name, kind, value)
        if "pooled_size" not in values:
            raise ValueError("a row has no pooled_size")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The row as ``{column: value}``, in :data:`COLUMNS` order."""
        return asdict(self)


COLUMNS = tuple(f.name for f in fields(AblationRow))
"""The columns of ``results.csv``: the fields of :class:`AblationRow`."""

_TYPES: dict[str, type] = {
    name: next(t for t in (*get_args(hint), hint) if t is not type(None))
    for name, hint in get_type_hints(AblationRow).items()
}
"""The value type of each column (``int``, ``float`` or ``str``)."""


def _convert(name: str, kind: type, value: Any) -> Any:
    if kind is int:
        number = float(value)
        if not number.is_integer():
            raise ValueError(f"{name}: {value!r} is not an integer")
        return int(number)
    return kind(value)


def fields_of_test_metrics(metrics: Mapping[str, float]) -> dict[str, float | None]:
    """The test columns of a row from the test's logged metrics (a missing or NaN one is ``None``)."""
    names = {"test_miou": TEST_METRIC} | {c: f"{TEST_METRIC}_{s}" for c, s in zip(SIZE_COLUMNS, SIZE_NAMES)}
    values = {column: metrics.get(metric) for column, metric in names.items()}
    return {column: None if v is None or v != v else float(v) for column, v in values.items()}


def run_name(pooled_size: int, seed: int = 0) -> str:
    """The run folder's name under ``runs/``: ``pool<N>`` for seed 0 (as before seeds), else ``pool<N>_seed<S>``."""
    return f"pool{pooled_size}" if seed == 0 else f"pool{pooled_size}_seed{seed}"


def _as_rows(rows: Iterable[AblationRow | Mapping[str, Any]]) -> list[AblationRow]:
    return [r if isinstance(r, AblationRow) else AblationRow.from_record(r) for r in rows]


def recorded_rows(ablation_dir: Path) -> dict[tuple[int, int], AblationRow]:
    """Rows of the existing ``results.csv`` whose run has no folder here, by ``(pooled size, seed)``.

    The run folders (checkpoints, logs) are not committed, the table is: in a fresh clone these
    rows are the record of the runs finished elsewhere, so they are kept and not run again.
    """
    path = ablation_dir / "results.csv"
    if not path.is_file():
        return {}
    try:
        rows = read_rows(path)
    except ValueError as err:
        raise ConfigError(f"{path}: not a results table of lrsa-seg ablate ({err}); fix or delete it") from err
    runs = ablation_dir / "runs"
    return {row.key: row for row in rows if not (runs / run_name(*row.key)).exists()}


def read_results(ablation_dir: Path) -> list[AblationRow]:
    """Rows of every finished run, by pooled size and seed.

    A run's ``runs/<run_name>/result.json`` when its folder is here, else its row of the existing
    ``results.csv`` (:func:`recorded_rows`).
    """
    rows = recorded_rows(ablation_dir)
    for path in sorted((ablation_dir / "runs").glob(f"pool*/{RESULT}")):
        with open(path) as f:
            row = AblationRow.from_record(json.load(f))
        rows[row.key] = row
    return [rows[key] for key in sorted(rows)]


def read_rows(path: str | Path) -> list[AblationRow]:
    """The rows of a ``results.csv`` (numbers converted, empty cells ``None``, no ``seed`` column: seed 0)."""
    with open(path, newline="") as f:
        return [AblationRow.from_record(raw) for raw in csv.DictReader(f)]


def read_results_csv(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``results.csv`` as plain dicts (:data:`COLUMNS`), for notebooks and tests."""
    return [row.to_dict() for row in read_rows(path)]


def write_csv(rows: Iterable[AblationRow | Mapping[str, Any]], path: Path) -> None:
    """``results.csv``: one row per run, mIoU as fractions, raw counts."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in _as_rows(rows):
            writer.writerow({k: "" if v is None else v for k, v in row.to_dict().items()})


def by_pooled_size(rows: Iterable[AblationRow | Mapping[str, Any]]) -> dict[int, list[AblationRow]]:
    """The rows grouped by pooled size (sizes ascending, seeds ascending within a size)."""
    groups: dict[int, list[AblationRow]] = {}
    for row in sorted(_as_rows(rows), key=lambda r: r.key):
        groups.setdefault(row.pooled_size, []).append(row)
    return groups


def spread(values: Iterable[float | None]) -> tuple[float, float, float] | None:
    """``(mean, min, max)`` of the measured values (``None`` skipped); ``None`` if there are none."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    return statistics.fmean(present), min(present), max(present)


def cell(values: Iterable[float | None], spec: str, scale: float = 1.0) -> str:
    """A table cell: the value, or ``mean (min–max)`` when the seeds' values differ at ``spec``; ``-`` if none.

    ``cell([0.30, 0.31, 0.32], ".2f", 100)`` is ``"31.00 (30.00–32.00)"``; ``cell([0.3], ".2f", 100)`` is ``"30.00"``.
    """
    stats = spread(values)
    if stats is None:
        return "-"
    mean, low, high = stats
    low_text, high_text = fmt(low, spec, scale), fmt(high, spec, scale)
    if low_text == high_text:
        return low_text
    return f"{fmt(mean, '.1f' if spec.endswith('d') else spec, scale)} ({low_text}–{high_text})"


def markdown_table(rows: Sequence[AblationRow | Mapping[str, Any]]) -> str:
    """The results as a Markdown table, one line per pooled size (mIoU in %, parameters in millions).

    Where a size has several seeds, a cell is ``mean (min–max)`` over them (:func:`cell`); ``-``
    where not measured.
    """
    groups = by_pooled_size(rows)
    size = next((r.size for g in groups.values() for r in g), "?")
    lines = [
        f"| pooled size | seeds | head pooled size | params (M) | GMACs @ {size} | latency @ {size} (ms) "
        "| val mIoU best (%) | test mIoU (%) | test mIoU small / medium / large (%) | train time (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for pooled_size, group in groups.items():

        def column(name: str, spec: str, scale: float = 1.0, group: list[AblationRow] = group) -> str:
            return cell((getattr(r, name) for r in group), spec, scale)

        by_size = " / ".join(column(key, ".2f", 100) for key in SIZE_COLUMNS)
        lines.append(
            f"| {pooled_size} | {', '.join(str(r.seed) for r in group)} | {column('head_pooled_size', 'd')} "
            f"| {column('params', '.2f', 1e-6)} | {column('gmacs', '.2f')} | {column('latency_ms', '.1f')} "
            f"| {column('val_miou', '.2f', 100)} | {column('test_miou', '.2f', 100)} | {by_size} "
            f"| {column('train_time_s', '.0f')} |"
        )
    return "\n".join(lines)


def write_markdown(
    rows: Sequence[AblationRow | Mapping[str, Any]], path: Path, name: str, warmup_runs: int, latency_runs: int
) -> None:
    """``results.md``: the table and what its columns mean."""
    first = _as_rows(rows[:1])[0] if rows else AblationRow(0)
    text = f"""# Pool-size ablation `{name}`

The backbone's LRSA pooled size is set in all four stages; the head's is the column
"head pooled size". GMACs (multiply-accumulates, `torch.utils.flop_counter`, attention counted on
the plain path) and latency are at {first.size or "?"} (height x width), batch 1; latency is
the median of {latency_runs} forward passes after {warmup_runs} warm-up pass(es) on {first.device or "?"}
({first.precision or "?"} precision), measured in the test process. "val mIoU best" is the
best validation mIoU over the epochs; "test mIoU" is that of the best checkpoint, also over the
pixels of small / medium / large ground-truth regions (connected regions of one class with an
area under 32², 32² to 96², at least 96² pixels at the evaluated resolution: COCO's
thresholds). Train time is the wall time of training with validation excluded, summed over
resumed sessions. "seeds" lists the runs of a pooled size (`seed_everything`); where there are
several and their values differ, a cell shows the mean and, in parentheses, the range (min–max).

{markdown_table(rows)}
"""
    path.write_text(text)


def _series(
    groups: dict[int, list[AblationRow]], name: str, scale: float = 1.0
) -> list[tuple[int, float, float, float]]:
    """``(pooled size, mean, min, max)`` of a column, scaled, for the sizes that measured it."""
    points = []
    for size, group in groups.items():
        stats = spread(getattr(r, name) for r in group)
        if stats is not None:
            points.append((size, *(v * scale for v in stats)))
    return points


def _draw(ax: Any, points: list[tuple[int, float, float, float]], **style: Any) -> float:
    """The means as a line and, where seeds differ, their range as a vertical bar; returns the top value."""
    if not points:
        return 0.0
    sizes, means, lows, highs = zip(*points)
    (line,) = ax.plot(sizes, means, **style)
    ranged = [(s, lo, hi) for s, lo, hi in zip(sizes, lows, highs) if hi > lo]
    if ranged:
        ax.vlines(*zip(*ranged), colors=line.get_color(), linewidth=2, alpha=0.6)
    return max(highs)


def plot_results(
    rows: Sequence[AblationRow | Mapping[str, Any]], path: str | Path | None = None, not_run: Sequence[int] = ()
) -> Any:
    """Plot mIoU (val best, test, test by region size) and GMACs / latency against the pooled size.

    Saved to ``path`` if given.

    Each curve is the mean over a size's seeds; a vertical bar shows their range (min to max)
    where several seeds differ. The mIoU axis starts at 0, so the spread between sizes is shown
    at its true scale. Sizes in ``not_run`` are marked on the x axis as not run. Returns the
    matplotlib ``Figure``, made without pyplot, so it neither needs nor changes a backend
    (``savefig`` renders PNG with Agg); a notebook shows it with ``display(fig)``.
    """
    from matplotlib.figure import Figure

    groups = by_pooled_size(rows)
    seeds = max((len(g) for g in groups.values()), default=1)
    ticks = sorted({*groups, *not_run})
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_miou, ax_cost = fig.subplots(1, 2)
    top = 0.0
    curves = [("val_miou", "val mIoU (best)", "o", "-"), ("test_miou", "test mIoU", "s", "-")]
    curves += [(key, f"test, {name} regions", "x", ":") for key, name in zip(SIZE_COLUMNS, SIZE_NAMES)]
    for key, label, marker, linestyle in curves:
        top = max(top, _draw(ax_miou, _series(groups, key, 100), marker=marker, linestyle=linestyle, label=label))
    ax_miou.set_ylim(0, max(10.0, top * 1.5))  # room for the legend above the curves
    title = "Accuracy (one seed per size)" if seeds == 1 else "Accuracy (mean; bars: range over seeds)"
    ax_miou.set(xlabel="backbone pooled size", ylabel="mIoU (%)", title=title)
    size = next((r.size for g in groups.values() for r in g), "")
    _draw(ax_cost, _series(groups, "gmacs"), marker="o", color="C2", label="GMACs")
    ax_cost.set(xlabel="backbone pooled size", ylabel=f"GMACs @ {size}", title="Cost")
    ax_cost.set_ylim(bottom=0)
    ax_latency = ax_cost.twinx()
    _draw(ax_latency, _series(groups, "latency_ms"), marker="^", color="C3", linestyle="--", label="latency")
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
) -> list[AblationRow]:
    """Write ``results.csv``, ``results.md`` and ``pool_size.png`` from the finished runs.

    ``requested`` sizes without any finished run are marked on the plot as not run.
    """
    rows = read_results(ablation_dir)
    if not rows:
        return rows
    write_csv(rows, ablation_dir / "results.csv")
    write_markdown(rows, ablation_dir / "results.md", name, warmup_runs, latency_runs)
    not_run = sorted(set(requested) - {row.pooled_size for row in rows})
    plot_results(rows, ablation_dir / "pool_size.png", not_run=not_run)
    return rows
