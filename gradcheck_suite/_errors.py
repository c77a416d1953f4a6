"""Errors a user can act on: each one names where the problem is."""

from __future__ import annotations

from pathlib import Path

__all__ = ["CaseError", "UsageError", "GradcheckError"]


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
        self.case = case

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
        return ": ".join([*parts, self.message])
