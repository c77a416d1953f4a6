"""Diagnostics as text for ``-v`` (and a failing test in pytest): the table of intermediates
and every hint. The one line under the table is :meth:`Diagnostics.summary`."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .._report.layout import wrap

if TYPE_CHECKING:
    from .._engine import CaseResult

__all__ = ["detail"]


def detail(r: CaseResult, width: int | None = None) -> str:
    """The intermediates table (program backwards) and the hints of a failing case, fitted to
    ``width`` as the terminal's other tables are."""
    from .._report.terminal import fitted_table  # the terminal imports this module lazily too

    d = r.diagnostics
    if d is None:
        return ""
    out: list[str] = []
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
        title = f"{r.case.name}: each d<name> against autograd's gradient of <name> (float64, in backward order)"
        out += ["", *wrap(title, width, "    ", first="")]
        out += fitted_table(["line", "gradient", "of", "status", "max rel diff", ""], rows, width)
    if d.blame is not None:
        out += wrap(f"blame: {d.blame.message}", width, "    ", first="")
    elif d.blame_note:
        out += wrap(f"blame: {d.blame_note}", width, "    ", first="")
    for h in d.hints:
        out += wrap(f"hint ({h.pair}, {h.kind}): {h.message}", width, "    ", first="")
    return "\n".join(out)
