"""The conventions every ``lrsa-seg`` tool follows.

- An error is one line ``error: ...`` on stderr naming the argument or file, exit status 2
  (:class:`ToolParser` for argument errors, :func:`run_tool` for :data:`~lrsa_seg.errors.USER_ERRORS`).
- Image sizes are ``H W`` (height first) everywhere, read by :func:`add_size_argument`.
- ``--help`` shows every default.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from ..errors import USER_ERRORS


def fail(message: str) -> int:
    """Print ``error: message`` on stderr; returns the exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    return 2


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults in ``--help``, lines wrapped at spaces only: a default path keeps its hyphens whole."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


class ToolParser(argparse.ArgumentParser):
    """``argparse`` with defaults in ``--help`` and argument errors as one ``error:`` line (exit 2)."""

    def __init__(self, prog: str, description: str, **kwargs: Any) -> None:
        super().__init__(
            prog=f"lrsa-seg {prog}",
            description=description,
            formatter_class=HelpFormatter,
            allow_abbrev=False,
            **kwargs,
        )

    def error(self, message: str) -> NoReturn:
        """One line naming the problem, then exit 2 (argparse prints the usage first; the help has it)."""
        sys.exit(fail(f"{message} (see {self.prog} --help)"))


def positive_int(text: str) -> int:
    """An argparse ``type``: an integer of at least 1, else a one-line argument error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def add_size_argument(
    parser: argparse.ArgumentParser,
    flag: str,
    default: Sequence[int] | Sequence[Sequence[int]] | None,
    help: str,
    multiple: bool = False,
) -> None:
    """``flag H W`` (or, with ``multiple``, ``flag H W [H W ...]``); read back with :func:`sizes_of`."""
    if multiple and default is not None:
        default = [int(v) for size in default for v in size]  # type: ignore[union-attr]
    parser.add_argument(
        flag,
        nargs="*" if multiple else 2,
        type=positive_int,
        default=list(default) if default is not None else None,  # type: ignore[arg-type]
        metavar=("H", "W") if not multiple else "H W",
        help=help + (" (pairs of height and width)" if multiple else " (height width)"),
    )


def sizes_of(parser: argparse.ArgumentParser, flag: str, values: Sequence[int] | None) -> list[tuple[int, int]]:
    """``[H, W, H, W, ...]`` -> ``[(H, W), ...]``; an odd count or a side under 32 is an argument error."""
    if values is None:
        return []
    if len(values) % 2:
        parser.error(f"{flag} takes pairs H W, got {len(values)} numbers")
    sizes = [(values[i], values[i + 1]) for i in range(0, len(values), 2)]
    for height, width in sizes:
        if min(height, width) < 32:
            parser.error(f"{flag}: sizes must be at least 32 x 32, got {height} x {width}")
    return sizes


def run_tool(main: Callable[[list[str]], int | None], argv: list[str]) -> int:
    """Run a tool's ``main``; bad input (:data:`~lrsa_seg.errors.USER_ERRORS`, missing files) is one line, exit 2."""
    try:
        return int(main(argv) or 0)
    except (*USER_ERRORS, FileNotFoundError) as err:
        return fail(str(err))
