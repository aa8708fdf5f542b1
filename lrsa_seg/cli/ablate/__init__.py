"""``lrsa-seg ablate``: the pool-size ablation as one command, one W&B run per pooled size and seed.

For every pooled size ``N`` the backbone's LRSA pooled size is set to ``N`` in all four stages
(``model.init_args.pooled_sizes``); the head's stays as configured unless ``--head-pooled-size``
is given. Every size runs at every seed of ``--seeds`` (default 0; it replaces the config's
``seed_everything``), seed by seed: all sizes at the first seed, then at the next. Each run is
one ``fit`` and one ``test`` of the best checkpoint, in its own folder
``<output-dir>/<name>/runs/pool<N>/`` (seed 0: the layout before seeds existed) or
``runs/pool<N>_seed<S>/``; the table ``results.csv`` (one row per run, keyed by pooled size and
seed) / ``results.md`` (one line per size: the mean and range over its seeds) and the plot
``pool_size.png`` are written to ``<output-dir>/<name>/``.

How the runs are executed: **one subprocess per Lightning command** (``python -m lrsa_seg fit
--config runs/pool<N>/run_config.yaml``, then ``test``), not ``lrsa_seg.cli.run_lightning`` in
this process. Reasons:

* Isolation. An ablation compares runs, so nothing may leak from one run into the next: global
  seeds and RNG streams, ``torch.backends`` flags a config may set (``deterministic``,
  ``benchmark``), float32 matmul precision, the W&B run of the process (a second
  ``wandb.init`` in one process needs an explicit ``finish``), allocator caches and CUDA memory,
  dataloader workers. A fresh process per command gives every size the same starting state.
* DDP works. Lightning's DDP launcher starts the other ranks by re-running the current
  command line; in a subprocess that is ``lrsa-seg fit ...``, exactly as when run by hand, while
  in this process it would re-run the whole ablation on every rank.
* One failing or killed run cannot corrupt the state of the next; the parent only reads files.
* Every run is reproducible by hand: its folder holds the complete resolved config and the
  printed command line.

The cost is the start-up of two Python processes per size (a few seconds), negligible next to
training.

Overrides such as ``--trainer.max_epochs 1`` are applied first; the resolved config
(``lrsa-seg fit --print_config``) is then edited as a whole, because LightningCLI can address a
list element such as the second ``ModelCheckpoint`` only through the last one. Every path of the
trainer's callbacks, loggers and profiler (``dirpath``, ``save_dir``, ``output_dir`` ...) is moved
into the run folder (keeping its place relative to ``trainer.default_root_dir``), a
``WandbLogger`` gets the ablation's ``group``, a ``name`` per run and a fixed ``id`` (so ``fit``,
``test`` and a resumed ``fit`` log to one W&B run), checkpoints ``best`` (on ``val/mIoU``) and
``last`` are added if the config lacks them, ``size_iou`` is switched on (the test also reports
mIoU over small / medium / large ground-truth regions), and
:class:`lrsa_seg.callbacks.AblationRecorder` is appended to the callbacks.

Resuming: a run whose ``result.json`` exists (written atomically once its test is done) is
skipped; any other run whose folder holds an earlier attempt runs ``fit --ckpt_path last``
(continuing from ``last.ckpt``, or finishing at once when training was complete), then ``test``.
A note is printed when the config of a skipped or resumed run differs from this invocation's.
The run folders are not committed but ``results.csv`` is: a (size, seed) with a row there and no
run folder (a fresh clone of a repository holding the table) is skipped too, and its row kept
(a row without a ``seed`` cell, from before seeds existed, is seed 0). The tables list every
finished run in the ablation's folder, so sizes and seeds can be added later.

The parameters, MACs and latency are measured in the ``test`` process by the recorder, on the
test device (GPU when the trainer uses one) with the trainer's precision, and logged to the
run's loggers, so W&B holds them next to the metrics.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from ...ablation import markdown_table, recorded_rows, write_tables
from ...errors import ConfigError
from ..common import ToolParser, add_size_argument, sizes_of
from .config import resolve_config, wandb_loggers
from .runner import RunFailedError, _log, run_label, run_pooled_size


def main(argv: list[str] | None = None) -> int:
    """``lrsa-seg ablate --config CFG --pooled-sizes 8 16 32 48 [--seeds 0 1 2] [options] [overrides]``."""
    parser = ToolParser(
        "ablate",
        "The pool-size ablation: fit + test per backbone pooled size, one W&B run each, one table.",
        epilog="Any further --key value is a LightningCLI override for every run, e.g. --trainer.max_epochs 1.",
    )
    parser.add_argument("--config", action="append", required=True, help="LightningCLI config (repeatable)")
    parser.add_argument("--pooled-sizes", nargs="+", type=int, required=True, metavar="N", help="backbone pooled sizes")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], metavar="S", help="seeds run per size")
    parser.add_argument("--head-pooled-size", type=int, default=None, help="head pooled size (None: as configured)")
    parser.add_argument("--name", default=None, help="ablation name (None: the first config's stem)")
    parser.add_argument("--output-dir", default="ablation", help="parent folder of <name>/")
    add_size_argument(parser, "--latency-size", [512, 512], "input size of the MACs count and the latency")
    parser.add_argument("--warmup-runs", type=int, default=3, help="untimed forward passes before timing")
    parser.add_argument("--latency-runs", type=int, default=10, help="timed forward passes (median reported)")
    args, overrides = parser.parse_known_args(argv)
    if overrides and not overrides[0].startswith("--"):
        parser.error(f"unexpected argument {overrides[0]!r}: overrides are --key value or --key=value")
    set_here = ("--ckpt_path", "--print_config", "--model.init_args.pooled_sizes", "--config", "--seed_everything")
    for flag in set_here:
        if any(o == flag or o.startswith(flag + "=") for o in overrides):
            hint = " (use --seeds)" if flag == "--seed_everything" else ""
            parser.error(f"{flag} is set by the ablation, not as an override{hint}")
    if min(args.pooled_sizes) < 1 or (args.head_pooled_size is not None and args.head_pooled_size < 1):
        parser.error("pooled sizes must be >= 1")
    if min(args.seeds) < 0:
        parser.error("seeds must be >= 0")
    ((latency_h, latency_w),) = sizes_of(parser, "--latency-size", args.latency_size)
    if args.latency_runs < 1 or args.warmup_runs < 0:
        parser.error("--latency-runs must be >= 1 and --warmup-runs >= 0")
    name = args.name or Path(args.config[0]).stem
    ablation_dir = Path(args.output_dir) / name
    measure_size = (latency_h, latency_w)

    try:
        recorded = recorded_rows(ablation_dir)  # read before any run: a broken results.csv stops here
    except ConfigError as err:
        parser.error(str(err))
    base = resolve_config(args.config, overrides)
    if not wandb_loggers(base):
        _log("the config has no WandbLogger: the runs are not tracked in W&B")
    sizes, seeds = sorted(set(args.pooled_sizes)), sorted(set(args.seeds))
    _log(f"{name}: pooled sizes {sizes}, seeds {seeds} -> {ablation_dir}")
    measured_at = "x".join(str(s) for s in measure_size)
    try:
        for seed, size in itertools.product(seeds, sizes):  # every size at one seed before the next seed
            if (size, seed) in recorded:
                row_size = recorded[size, seed].size
                note = f"; its latency was measured at {row_size}, not {measured_at}" if row_size != measured_at else ""
                _log(
                    f"{run_label(size, seed)}: recorded in results.csv and no run folder here (a fresh clone?), "
                    f"skipping{note}; delete its row to run it again"
                )
                continue
            run_pooled_size(
                base,
                size,
                ablation_dir,
                name,
                args.head_pooled_size,
                measure_size,
                args.warmup_runs,
                args.latency_runs,
                seed,
            )
    except (RunFailedError, KeyboardInterrupt) as err:
        _log(f"{err or 'interrupted'}; rerun the same command to resume")
        write_tables(ablation_dir, name, args.warmup_runs, args.latency_runs, sizes)
        return err.returncode if isinstance(err, RunFailedError) else 130
    rows = write_tables(ablation_dir, name, args.warmup_runs, args.latency_runs, sizes)
    print(markdown_table(rows))
    _log(f"wrote {ablation_dir / 'results.csv'}, {ablation_dir / 'results.md'} and {ablation_dir / 'pool_size.png'}")
    return 0
