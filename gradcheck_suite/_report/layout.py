"""Fitting text to a terminal's width: a table when it fits, else each row as a small block.

A table that is wider than the terminal wraps every row into an unreadable zigzag, so it is
never printed so: callers offer narrower versions of it (abbreviated values, fewer columns)
and, when none fits, ``stacked`` prints each row as a label line followed by its
``name value`` fields wrapped to the width.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from tabulate import tabulate

from .._console import visible_len

__all__ = ["Field", "fits", "simple_table", "stacked", "wrap"]

Field = tuple[str, str]  # (name, value); an empty name prints the value alone


def simple_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return tabulate(rows, headers=list(headers), tablefmt="simple", disable_numparse=True).splitlines()


def fits(lines: Sequence[str], width: int | None) -> bool:
    return width is None or all(visible_len(line) <= width for line in lines)


def wrap(text: str, width: int | None, indent: str = "", first: str | None = None) -> list[str]:
    """``text`` wrapped to ``width`` (no wrapping without a width), continuation lines indented."""
    head = indent if first is None else first
    if width is None:
        return [head + text]
    return textwrap.wrap(
        text,
        width=max(width, len(head) + 10),
        initial_indent=head,
        subsequent_indent=indent,
        break_on_hyphens=False,
    ) or [head]


def stacked(
    label: str, fields: Sequence[Field], width: int | None, indent: str = "    ", first: str | None = None
) -> list[str]:
    """``label`` on its own line (if any), then the fields two spaces apart, wrapped at field
    boundaries; the first line of fields starts with ``first`` (default ``indent``)."""
    lines = [label] if label else []
    prefix = indent if first is None else first
    current = ""
    limit = None if width is None else max(width, len(indent) + 10)

    def flush(text: str) -> None:
        nonlocal prefix
        if limit is not None and len(prefix) + visible_len(text) > limit:
            lines.extend(wrap(text, width, indent + "  ", first=prefix))  # one field wider than the line
        else:
            lines.append(prefix + text)
        prefix = indent

    for name, value in fields:
        item = f"{name} {value}" if name else value
        candidate = f"{current}  {item}" if current else item
        if limit is not None and current and len(prefix) + visible_len(candidate) > limit:
            flush(current)
            current = item
        else:
            current = candidate
    if current:
        flush(current)
    return lines
