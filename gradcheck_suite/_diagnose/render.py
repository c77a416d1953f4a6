"""Diagnostics as text for ``-v`` (and a failing test in pytest): the table of intermediates
and every hint. The one line under the table is :meth:`Diagnostics.summary`."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from tabulate import tabulate

if TYPE_CHECKING:
    from .._engine import CaseResult

__all__ = ["detail"]


def detail(r: CaseResult) -> str:
    """The intermediates table (program backwards) and the hints of a failing case."""
    d = r.diagnostics
    if d is None:
        return ""
    out = []
    if d.intermediates:
        blamed = d.blame.variable if d.blame is not None else None
        rows = [
            [
                "" if i.line is None else str(i.line),
                i.name,
                i.of or "-",
                i.status.upper() if i.status == "wrong" else i.status,
                "-" if math.isnan(i.max_rel) else f"{i.max_rel:.2e}",
                "<- blamed" if i.name == blamed else "",
            ]
            for i in d.intermediates
        ]
        out.append(f"\n{r.case.name}: each d<name> against autograd's gradient of <name> (float64, in backward order)")
        out.append(
            tabulate(
                rows,
                headers=["line", "gradient", "of", "status", "max rel diff", ""],
                tablefmt="simple",
                disable_numparse=True,
            )
        )
    if d.blame is not None:
        out.append(f"blame: {d.blame.message}")
    elif d.blame_note:
        out.append(f"blame: {d.blame_note}")
    out += [f"hint ({h.pair}, {h.kind}): {h.message}" for h in d.hints]
    return "\n".join(out)
