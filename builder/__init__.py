"""Easy AI Builder: pipeline model (blocks, ports, pipeline files, validation, compilation) and the CLI."""

__version__ = "0.1.0"
