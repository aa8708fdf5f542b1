"""Execute the notebooks in place, so that they are committed with their outputs and figures.

    python scripts/execute_notebooks.py [NAME ...]

Runs each ``notebooks/NAME.ipynb`` top to bottom from the repository root (kernel python3, as
``tests/test_notebooks.py`` does) and writes it back with its outputs. ``lrsa_explained`` reads
the quickstart model (``runs/quickstart/checkpoints/best.ckpt``, or ``LRSA_CHECKPOINT``); without
it, the notebook trains a tiny model. Paths in the outputs are shown relative to the repository.
Refuses to write a notebook of 1 MB or more.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
MAX_BYTES = 1_000_000


def tidy_outputs(nb: nbformat.NotebookNode) -> None:
    """Paths printed relative to the repository; tqdm's "IProgress not found" warning dropped."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.outputs:
            if output.output_type == "stream":
                if output.name == "stderr" and "TqdmWarning" in output.text:
                    continue
                output.text = output.text.replace(f"{REPO}/", "")
            kept.append(output)
        cell.outputs = kept


def main() -> int:
    """Execute and write back the named notebooks (all by default)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="notebook names without .ipynb (default: every notebook)")
    args = parser.parse_args()
    names = args.names or sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    for name in names:
        path = NOTEBOOKS / f"{name}.ipynb"
        if not path.is_file():
            print(f"error: {path} not found", file=sys.stderr)
            return 2
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
        tidy_outputs(nb)
        text = nbformat.writes(nb)
        if len(text.encode()) >= MAX_BYTES:
            print(f"error: {path} would be {len(text.encode()):,} bytes (limit {MAX_BYTES:,})", file=sys.stderr)
            return 2
        path.write_text(text)
        print(f"{path}: {len(text.encode()):,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
