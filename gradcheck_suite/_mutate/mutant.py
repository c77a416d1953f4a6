"""One mutant: a case whose backward differs from the original by one edit."""

from __future__ import annotations

from dataclasses import dataclass

from .._case import Case

__all__ = ["Mutant"]


@dataclass(frozen=True)
class Mutant:
    operator: str  # one of edits.OPERATORS
    file: str  # where the edited line is: the case file, or the callable's module
    line: int
    original: str  # the line as written
    mutated: str  # the edited statement ("" when the line is dropped)
    case: Case  # the case with the mutated backward
    reads: tuple[str, ...] = ()  # the names the edited statement reads
    swapped: tuple[str, str] | None = None  # variable: (the name read, the one read instead)
    axes: tuple[str, int, int] | None = None  # axis: (the array, its axis before, after)
