"""The whole exception tree of Easy AI Builder; every user-facing failure is one of these."""

from __future__ import annotations

from dataclasses import dataclass


class AibError(Exception):
    """Base of every error the product reports to a user as one sentence."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a pipeline file: where (YAML path and line) and what."""

    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = self.path
        if self.line is not None:
            where = f"{where} (line {self.line})".strip()
        return f"{where}: {self.message}" if where else self.message


class ValidationError(AibError):
    """A pipeline file (or its data) is invalid; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        n = len(self.problems)
        head = f"{source}: " if source else ""
        first = str(self.problems[0]) if self.problems else "invalid"
        more = f" (and {n - 1} more)" if n > 1 else ""
        super().__init__(f"{head}{first}{more}")


class DataError(AibError):
    """A data file a block reads is missing, unreadable or malformed."""


class BlockError(AibError):
    """A block is not registered, or its declaration is inconsistent."""


class RunError(AibError):
    """A run could not start or failed while executing a step."""


class NotFoundError(AibError):
    """A run, service or API key that was asked for does not exist."""


class ServeError(AibError):
    """A service cannot be served (bad bundle, port in use, ...)."""


class ChainError(AibError):
    """The chain cannot be reached, refused a transaction, or is not set up."""


class ExportError(AibError):
    """A trained model could not be exported, or the export fails the parity check."""


class BadItem(ValueError):
    """An input a predictor cannot use (not an image, empty audio…); served as HTTP 422 with this sentence."""


__all__ = [
    "AibError",
    "BadItem",
    "BlockError",
    "ChainError",
    "DataError",
    "ExportError",
    "NotFoundError",
    "Problem",
    "RunError",
    "ServeError",
    "ValidationError",
]
