"""One command convention for every tool: ``error:`` lines with exit 2, ``H W`` sizes, defaults in ``--help``."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from lrsa_seg import __version__
from lrsa_seg.cli import main
from lrsa_seg.cli.common import ToolParser, add_size_argument, sizes_of
from lrsa_seg.cli.main import TOOLS


def test_version(capsys: pytest.CaptureFixture) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"lrsa-seg {__version__}\n"


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_help_shows_every_default(tool: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([tool, "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    # Every option that has a default value names it (argparse wraps lines; compare without them).
    assert "(default:" in text
    for option, default in _defaults(tool).items():
        assert f"{option}" in text
        assert f"(default: {default})" in text or f"default: {default}" in text, (tool, option, default)


def _defaults(tool: str) -> dict[str, str]:
    """``--option -> str(default)`` of a tool's argparse parser, found by building it with ``--help`` patched."""
    captured: dict[str, str] = {}
    original = argparse.ArgumentParser.parse_args

    def capture(self: argparse.ArgumentParser, args: list[str] | None = None, namespace: object = None) -> object:
        for action in self._actions:
            if action.option_strings and action.default not in (None, False, argparse.SUPPRESS) and action.help:
                captured[action.option_strings[0]] = " ".join(str(action.default).split())
        raise SystemExit(0)

    if tool == "check-data":  # a jsonargparse parser: its help is checked by the text test above
        return {}
    argparse.ArgumentParser.parse_args = capture  # type: ignore[method-assign]
    try:
        with pytest.raises(SystemExit):
            TOOLS[tool][0].main([])
    finally:
        argparse.ArgumentParser.parse_args = original  # type: ignore[method-assign]
    return captured


@pytest.mark.parametrize(
    "argv",
    [
        ["flops", "--model", "nope"],
        ["flops", "--model", "lrformer_t", "--size", "512"],
        ["flops", "--model", "lrformer_t", "--size", "16", "512"],
        ["convert", "missing.pth", "out.pt", "--model", "lrformer_t"],
        ["export", "--model", "lrformer_test", "--output", "m.onnx", "--check", "64", "64", "80"],
        ["benchmark", "--sizes", "512x512"],
        ["ablate", "--config", "configs/quickstart.yaml", "--pooled-sizes", "0"],
        ["check-data", "--config", "missing.yaml"],
    ],
    ids=[
        "bad-choice",
        "one-side",
        "too-small",
        "missing-file",
        "odd-sizes",
        "old-size-syntax",
        "bad-pool",
        "no-config",
    ],
)
def test_errors_are_one_line_with_exit_2(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    code = _exit_code(lambda: main(argv))
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err


def _exit_code(call: object) -> int:
    try:
        return int(call() or 0)  # type: ignore[operator]
    except SystemExit as exit_:
        return int(exit_.code or 0)


def test_one_size_parser() -> None:
    parser = ToolParser("demo", "demo")
    add_size_argument(parser, "--size", [512, 1024], "input size")
    add_size_argument(parser, "--sizes", [(64, 64), (32, 48)], "sizes", multiple=True)
    args = parser.parse_args(["--size", "100", "150"])
    assert sizes_of(parser, "--size", args.size) == [(100, 150)]
    assert sizes_of(parser, "--sizes", args.sizes) == [(64, 64), (32, 48)]
    assert "--size H W" in parser.format_help()


def test_python_dash_m_is_the_same_command() -> None:
    result = subprocess.run([sys.executable, "-m", "lrsa_seg", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == f"lrsa-seg {__version__}\n"
