"""The whole `aib` command: one module per command group, a thin shell over runtime services."""

from builder.cli.main import app, main

__all__ = ["app", "main"]
