"""``gradcheck list``: one row per case (inputs, sources, description), under its folder's name."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._case import Case
from .._console import Paint
from .._text import printable
from .layout import fits, simple_table, stacked

__all__ = ["render_list", "sources_of"]

MIN_DESCRIPTION = 16  # below this a truncated description says too little to keep it in the row


def sources_of(case: Case) -> str:
    present = (
        ("manual", case.backward is not None),
        ("autograd", case.autograd_forward is not None),
        ("numeric", True),
    )
    return "+".join(s for s, there in present if there)


def _inputs(case: Case) -> str:
    parts = []
    for k, v in case.inputs.items():
        shape = np.shape(v)
        parts.append(f"{k} {'x'.join(map(str, shape))}" if shape else k)
    return ", ".join(parts)


def _truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 3, 0)].rstrip() + "..."


def render_list(cases: Sequence[Case], width: int | None = None, paint: Paint | None = None) -> str:
    """A table of the cases in the order they run, a heading per folder; a description that
    does not fit is cut short (``show`` prints it whole), and when even the rest does not fit,
    each case becomes a name line with its details below."""
    paint = paint or Paint()
    headers = ["case", "inputs", "sources", "description"]
    # names and descriptions come from case files: inert text, never a terminal or CI command
    rows = [[printable(c.name), _inputs(c), sources_of(c), printable(" ".join(c.description.split()))] for c in cases]
    lines = simple_table(headers, rows)
    if not fits(lines, width) and width is not None:
        without = simple_table(headers[:3], [r[:3] for r in rows])
        room = width - max(len(line) for line in without) - 2
        if room >= MIN_DESCRIPTION:
            lines = simple_table(headers, [[*r[:3], _truncate(r[3], room)] for r in rows])
    if fits(lines, width):
        return "\n".join(_headed(lines, cases, paint))
    out: list[str] = []
    previous = None
    for case, row in zip(cases, rows, strict=True):
        folder = _folder(case)
        if folder != previous:
            out.append(paint(folder, "heading"))
            previous = folder
        fields = [("inputs", row[1]), ("sources", row[2]), ("", row[3])]
        out += stacked(paint(case.name, "bold"), [f for f in fields if f[1]], width, indent="    ")
    return "\n".join(out)


def _folder(case: Case) -> str:
    return case.file.parent.as_posix().rstrip("/") + "/"


def _headed(lines: list[str], cases: Sequence[Case], paint: Paint) -> list[str]:
    """Header and rule, then each folder's name above its cases' rows (every row is one line)."""
    out = lines[:2]
    previous = None
    for case, line in zip(cases, lines[2:], strict=True):
        folder = _folder(case)
        if folder != previous:
            out.append(paint(folder, "heading"))
            previous = folder
        out.append(line)
    return out
