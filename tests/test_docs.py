"""The documentation cannot drift: the site builds with ``--strict`` and every code block of it runs.

The pages are README.md and ``docs/**/*.md``. Each page's fenced ``python`` and ``bash`` blocks run
in order in one folder of their own. Shell commands run as written, with tiny settings appended to
the Lightning subcommands that train or evaluate (one batch, the tiny model unless the command
loads weights), so a page runs in seconds. Names that only stand for the reader's own files are
made here first (an official checkpoint, a folder of images, an ADE20K tree, the quickstart's best
checkpoint where no earlier command of the page trained it). Every command is either run, checked
(``make`` targets with ``make -n``; DDP launches resolve their config), or listed in :data:`NOT_RUN`
with the reason; an unknown kind of command fails the test.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from lrsa_seg.ablation import SIZE_COLUMNS, by_pooled_size, cell, read_rows
from lrsa_seg.cli import main

from .conftest import DATA, TESTS, write_ade20k

REPO = TESTS.parent
DOCS = REPO / "docs"
LIGHTNING = ("fit", "validate", "test", "predict")

NOT_RUN = {
    "wandb sync": "uploads a run to a W&B server; no network here",
    "wandb sweep": "creates a sweep on a W&B server; tests/cli/test_sweep.py runs its commands",
    "wandb agent": "pulls runs from a W&B server; tests/cli/test_sweep.py runs its commands",
    "sbatch": "needs a SLURM cluster",
    "srun": "needs a SLURM cluster",
    "torchrun": "needs several nodes; the same LightningCLI command runs here on one",
    "git clone": "needs the network",
    "pip install": "needs a package registry; the Makefile installs",
    "cd ": "moves the reader's shell",
    ". .venv/bin/activate": "activates the environment in the reader's shell; the tests run in it",
    "lrsa-seg weights list": "lists a Hub repository: needs the network (tests/test_weights.py uses a local cache)",
    "bash scripts/gpu_check.sh": "needs a GPU; tests/test_gpu_check.py runs its dry run on the CPU",
    "lrsa-seg demo": "serves until stopped; tests/cli/test_demo.py starts it, queries it and opens it in Chromium",
    "python scripts/make_demo_screenshot.py": "rewrites docs/images/demo.png; tests/cli/test_demo.py runs its browser",
}

NOT_RUN_PYTHON = {
    "from gradio_client import": "talks to a running demo; tests/cli/test_demo.py does it against one it starts",
}
"""Python blocks left out, by their first line."""

COSTLY_PYTHON = {"# The exported models": "runs the files `lrsa-seg export` wrote (a costly command above)"}
"""Python blocks run only with the costly commands, by their first line."""

# Commands that train several runs or export (minutes of the dynamo exporter on 2 cores), and the
# commands that use what they wrote: the default test leaves them out, the slow one runs them tiny.
COSTLY = {
    "lrsa-seg export": ["--num-images", "4", "--check", "64", "96"],
    "lrsa-seg benchmark --models lrformer_t_fused segformer_b1 lrformer_t_openvino": [
        "--models", "lrformer_test_openvino", "lrformer_test_openvino_int8", "--sizes", "64", "64",
        "--repeats", "1", "--warmup", "0", "--threads", "1", "--no-flops",
    ],
    "lrsa-seg test --runtime": [],
    "lrsa-seg segment --runtime": [],
    "lrsa-seg ablate": [
        "--pooled-sizes", "8", "--output-dir", "ablation_runs", "--latency-size", "64", "64", "--latency-runs", "1",
        "--model.init_args.model", "lrformer_test", "--data.init_args.crop_size", "[64, 64]",
        "--data.init_args.batch_size", "2", "--data.init_args.num_workers", "0", "--trainer.max_epochs", "1",
        "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1",
        "--trainer.logger", "null",
    ],
}  # fmt: skip

# Commands that measure at full size: run here on one small input (the last value of an option wins).
SHRUNK = {
    "lrsa-seg profile": ["--models", "lrformer_t", "--sizes", "64", "64", "--runs", "1", "--warmup", "0"],
    "lrsa-seg flops --attention": ["--sizes", "64", "64"],
}

# The reader's own files in the examples, made here.
PLACEHOLDER_DIRS = {"/data/ade": "ade"}
QUICKSTART_CKPT = "runs/quickstart/checkpoints/best.ckpt"


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, code)`` of every fenced block, in order."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, flags=re.M | re.S)]


def pages() -> list[Path]:
    """README.md and every page of the site."""
    return [REPO / "README.md", *sorted(DOCS.rglob("*.md"))]


def pages_with_code() -> list[str]:
    """The pages (relative paths) with a ``python`` or shell block."""
    return [
        page.relative_to(REPO).as_posix()
        for page in pages()
        if any(lang in ("python", "bash", "sh", "shell") for lang, _ in fenced_blocks(page.read_text()))
    ]


def shell_commands(code: str) -> list[str]:
    """The commands of a bash block: continuation lines joined, comments and blank lines dropped."""
    joined = code.replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            commands.append(shlex.join(words))
    return commands


def tiny_settings(argv: list[str]) -> list[str]:
    """One batch of everything on this machine's CPU; the tiny model unless the command brings its own weights."""
    subcommand = argv[0]
    extra = ["--trainer.max_epochs", "1", "--data.init_args.num_workers", "0", "--trainer.accelerator", "cpu"]
    if "--trainer.devices" not in argv:  # the paper configs name 4 or 8 GPUs
        extra += ["--trainer.devices", "1", "--trainer.strategy", "auto", "--trainer.sync_batchnorm", "false"]
    extra += [f"--trainer.limit_{split}_batches=1" for split in ("train", "val", "test", "predict")]
    if not any(a.startswith(("--ckpt_path", "--model.init_args.weights")) for a in argv):
        extra += ["--model.init_args.model", "lrformer_test", "--data.init_args.batch_size", "2"]
    if subcommand == "fit":
        extra += ["--data.init_args.crop_size", "[64, 64]"]
    return extra


def official_checkpoint(path: Path, variant: str) -> None:
    """An mmseg-format checkpoint of ``variant`` with random values and the released keys and shapes."""
    manifest = json.loads((DATA / f"manifest_{variant}.json").read_text())
    generator = torch.Generator().manual_seed(0)
    state_dict = {}
    for key, entry in manifest["keys"].items():
        value = torch.randn(tuple(entry["shape"]), generator=generator) * 0.02
        if key.endswith("num_batches_tracked"):
            value = torch.zeros((), dtype=torch.long)
        elif key.endswith("running_var"):
            value = value.abs() + 1
        state_dict[key] = value
    torch.save({"state_dict": state_dict, "meta": {}}, path)


def quickstart_checkpoint(path: Path) -> None:
    """A Lightning checkpoint of the tiny model with the CamVid classes, where the quickstart writes its best."""
    from lrsa_seg.labels import CAMVID_CLASSES, CAMVID_PALETTE
    from lrsa_seg.models.checkpoint import CHECKPOINT_KEY, record_from_hparams
    from lrsa_seg.task import SemanticSegmentationTask

    task = SemanticSegmentationTask("lrformer_test", num_classes=11, class_names=list(CAMVID_CLASSES))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "state_dict": task.state_dict(),
            "hyper_parameters": dict(task.hparams),
            "pytorch-lightning_version": L.__version__,
            CHECKPOINT_KEY: record_from_hparams(task.hparams, CAMVID_PALETTE, "CamVid"),
        },
        path,
    )


def prepare(folder: Path, text: str) -> None:
    """Make the files the page's commands name as the reader's own."""
    for official in sorted(set(re.findall(r"\b(lrformer_([tsbl])_\w+)\.pth\b", text))):
        official_checkpoint(folder / f"{official[0]}.pth", f"lrformer_{official[1]}")
    if "path/to/images" in text:
        images = folder / "path" / "to" / "images"
        images.mkdir(parents=True)
        Image.fromarray(np.full((50, 70, 3), 90, np.uint8)).save(images / "street.png")
    if "street.jpg" in text:
        Image.fromarray(np.full((50, 70, 3), 90, np.uint8)).save(folder / "street.jpg")
    if "/data/ade" in text:
        write_ade20k(folder / "ade", {"training": 2, "validation": 2})


def before(code: str, folder: Path) -> None:
    """The quickstart's best checkpoint, for code that reads it where no earlier command of the page trained."""
    if QUICKSTART_CKPT in code and not (folder / QUICKSTART_CKPT).exists():
        quickstart_checkpoint(folder / QUICKSTART_CKPT)


def run_command(command: str, folder: Path) -> None:
    for placeholder, local in PLACEHOLDER_DIRS.items():
        command = command.replace(placeholder, str(folder / local))
    argv = shlex.split(command)
    if argv[0] == "make":
        result = subprocess.run(["make", "-n", "-C", str(REPO), *argv[1:]], capture_output=True, text=True)
        assert result.returncode == 0, f"{command!r}: {result.stderr}"
        return
    if argv[:3] == ["python", "-m", "lrsa_seg"]:
        argv = ["lrsa-seg", *argv[3:]]
    assert argv[0] == "lrsa-seg", f"command of an unknown kind: {command!r} (run it here or list it in NOT_RUN)"
    args = argv[1:]
    if args and args[0] in LIGHTNING:
        if any(a.startswith("--trainer.strategy") and "ddp" in a for a in args) or "ddp" in args:
            args = [*args, "--print_config"]  # a DDP launch re-runs the command line: tests/training runs DDP
        elif "--print_config" not in args:
            args = [*args, *tiny_settings(args)]
    code = main(args) if "--print_config" not in args else _print_config(args)
    assert code in (0, None), f"{command!r} exited with {code}"


def _print_config(args: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_:
        main(args)
    return int(exit_.value.code or 0)


def extra_args(table: dict[str, list[str]], command: str) -> list[str] | None:
    """The arguments ``table`` appends to ``command`` (by its prefix), ``None`` when it has none."""
    return next((extra for prefix, extra in table.items() if command.startswith(prefix)), None)


def walk_page(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, costly: bool) -> int:
    """Run the page's blocks in order in ``tmp_path``; returns how many blocks and commands ran."""
    text = (REPO / page).read_text()
    monkeypatch.chdir(tmp_path)
    for name in ("configs", "data"):
        (tmp_path / name).symlink_to(REPO / name)
    prepare(tmp_path, text)
    namespace: dict[str, object] = {}
    ran = 0
    for language, code in fenced_blocks(text):
        if language == "python":
            if extra_args(NOT_RUN_PYTHON, code) is not None:  # type: ignore[arg-type]
                continue
            if extra_args(COSTLY_PYTHON, code) is not None and not costly:  # type: ignore[arg-type]
                continue
            before(code, tmp_path)
            exec(compile(code, f"{page} python block {ran}", "exec"), namespace)  # noqa: S102
            ran += 1
        elif language in ("bash", "sh", "shell"):
            for command in shell_commands(code):
                if any(command.startswith(prefix) for prefix in NOT_RUN):
                    continue
                tiny = extra_args(COSTLY, command)
                if tiny is not None and not costly:
                    continue
                extra = [*(tiny or []), *(extra_args(SHRUNK, command) or [])]  # the last value of an option wins
                before(command, tmp_path)
                run_command(shlex.join([*shlex.split(command), *extra]) if extra else command, tmp_path)
                ran += 1
    return ran


@pytest.mark.parametrize("page", pages_with_code())
def test_every_block_of_the_page_runs(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    walk_page(page, tmp_path, monkeypatch, costly=False)


def test_the_pages_run_every_kind_of_example() -> None:
    # Guards against a page set that silently runs nothing: the commands and blocks that run by default.
    counted = 0
    for page in pages_with_code():
        for language, code in fenced_blocks((REPO / page).read_text()):
            if language == "python":
                counted += extra_args({**NOT_RUN_PYTHON, **COSTLY_PYTHON}, code) is None  # type: ignore[arg-type]
            elif language in ("bash", "sh", "shell"):
                counted += sum(
                    not any(c.startswith(p) for p in NOT_RUN) and extra_args(COSTLY, c) is None
                    for c in shell_commands(code)
                )
    assert counted >= 20


COSTLY_PAGES = sorted(
    {
        page
        for page in pages_with_code()
        for language, code in fenced_blocks((REPO / page).read_text())
        if language in ("bash", "sh", "shell")
        and any(extra_args(COSTLY, c) is not None for c in shell_commands(code))
        or language == "python"
        and extra_args(COSTLY_PYTHON, code) is not None  # type: ignore[arg-type]
    }
)


@pytest.mark.slow  # adds the commands that train several runs (the ablation), tiny
@pytest.mark.parametrize("page", COSTLY_PAGES)
def test_every_block_runs_with_the_costly_commands(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert walk_page(page, tmp_path, monkeypatch, costly=True) >= 1


def test_ablation_table_matches_the_committed_results() -> None:
    """docs/ablation.md's pool-size table shows the committed ``results.csv``: per size the mean (range) over seeds."""
    groups = by_pooled_size(read_rows(REPO / "ablation" / "quickstart" / "results.csv"))
    assert groups, "ablation/quickstart/results.csv has no rows"
    page = (DOCS / "ablation.md").read_text()
    for size, group in groups.items():

        def col(name: str, spec: str, scale: float = 1.0, group: list = group) -> str:
            return cell((getattr(r, name) for r in group), spec, scale)

        by_size = " / ".join(col(key, ".2f", 100) for key in SIZE_COLUMNS)
        line = (
            f"| {size} | {col('gmacs', '.2f')} | {col('latency_ms', '.0f')} | {col('val_miou', '.2f', 100)} "
            f"| {col('test_miou', '.2f', 100)} | {by_size} | {col('train_time_s', '.0f')} |"
        )
        assert line in page, f"docs/ablation.md lacks the row {line}"


# --- The site -----------------------------------------------------------------------------------
def test_site_builds_strict_with_every_page_notebook_and_api_entry(tmp_path: Path) -> None:
    """``mkdocs build --strict``: a broken link, anchor, image or API reference is an error."""
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (make test installs .[dev,docs,demo])")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    for page in pages()[1:]:
        uri = page.relative_to(DOCS).with_suffix("")
        html = site / ("index.html" if uri.as_posix() == "README" else Path(uri, "index.html"))
        assert html.is_file(), f"{page} has no page in the site"
    for notebook in sorted((REPO / "notebooks").glob("*.ipynb")):
        html = (site / "notebooks" / notebook.stem / "index.html").read_text()
        assert "data:image/png;base64" in html, f"{notebook.name}: its figures are not in the site"
    api = (site / "api" / "models" / "index.html").read_text()
    for name in ("create_model", "list_models", "load_pretrained", "LowResolutionSelfAttention"):
        assert f'id="lrsa_seg.models.{name}"' in api, f"the API reference lacks {name}"
    assert 'id="lrsa_seg.inference.Segmenter"' in (site / "api" / "inference" / "index.html").read_text()
    assert 'id="lrsa_seg.task.SemanticSegmentationTask"' in (site / "api" / "task" / "index.html").read_text()
    assert 'id="datamodules.CamVidDataModule"' in (site / "api" / "data" / "index.html").read_text()
    assert 'id="lrsa_seg.callbacks.EvaluationReport"' in (site / "api" / "callbacks" / "index.html").read_text()
    assert (site / "ablation" / "quickstart" / "pool_size.png").is_file()  # served from outside docs/


def test_site_navigation_names_every_page() -> None:
    """Every page is in mkdocs.yml's nav (an orphan page is built but found by no one)."""
    nav = (REPO / "mkdocs.yml").read_text().split("\nnav:\n", 1)[1]
    named = set(re.findall(r":\s*([\w./-]+\.(?:md|ipynb))\s*$", nav, flags=re.M))
    expected = {p.relative_to(DOCS).as_posix() for p in pages()[1:]}
    expected |= {f"notebooks/{p.name}" for p in (REPO / "notebooks").glob("*.ipynb")}
    assert named == expected
