"""Errors a user can act on: each one names where the problem is."""

from __future__ import annotations

from pathlib import Path

from ._text import printable

__all__ = ["CaseError", "LimitError", "UsageError", "GradcheckError"]


class GradcheckError(Exception):
    """Base of every error gradcheck-suite reports to a user (exit status 2)."""


class UsageError(GradcheckError):
    """A bad command line or an unusable environment (no CUDA device, say)."""


class CaseError(GradcheckError):
    """A case file that cannot be loaded or run, located as file:line plus the key or case."""

    def __init__(
        self,
        message: str,
        *,
        file: Path | str | None = None,
        line: int | None = None,
        key: str | None = None,
        case: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = Path(file) if file is not None else None
        self.line = line
        self.key = key
        # a TOML date or number where a name belongs must not reach a report as a non-string
        self.case = None if case is None else str(case)
        # set where one case runs as several items (the pytest plugin's device x dtype)
        self.device: str | None = None
        self.dtype: str | None = None

    @property
    def location(self) -> str:
        where = str(self.file) if self.file is not None else "<case>"
        if self.line is not None:
            where += f":{self.line}"
        return where

    def __str__(self) -> str:
        # an error about no file in particular (no such case, a Python callable) has no place
        parts = [self.location] if self.file is not None or self.line is not None else []
        if self.case:
            parts.append(f"case {self.case!r}")
        if self.key:
            parts.append(f"[{self.key}]")
        # one inert line whatever the file holds: no newline, control character or CI command
        return printable(": ".join([*parts, self.message]))


class LimitError(CaseError):
    """A case over one of the resource limits (:mod:`gradcheck_suite._limits`)."""
