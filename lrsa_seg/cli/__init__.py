"""The ``lrsa-seg`` command: LightningCLI subcommands and one module (or folder) per tool."""

from __future__ import annotations

from .main import main

__all__ = ["main"]
