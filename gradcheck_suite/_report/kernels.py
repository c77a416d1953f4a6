"""Terminal tables of issue 12's checks: low-precision errors side by side, devices against
each other, and run-to-run spreads."""

from __future__ import annotations

from tabulate import tabulate

from .._engine import CaseResult, Report

__all__ = ["render_devices", "render_low_precision", "spread_notes"]


def _e(x: float | None) -> str:
    return "-" if x is None else f"{x:.1e}"


def _x(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def render_low_precision(results: list[CaseResult]) -> str:
    """Per case and input: the manual source's and the reference's error against autograd in
    float64, worst element and norm, and what the rule made of them."""
    rows = []
    for r in results:
        for i in r.inputs:
            e = getattr(i, "low_precision", None)
            if e is None:
                continue
            rows.append(
                [
                    r.case.name,
                    i.name,
                    e.dtype,
                    f"{e.k:g}",
                    _e(e.manual),
                    _e(e.reference),
                    _x(e.element_ratio),
                    _e(e.manual_norm),
                    _e(e.reference_norm),
                    _x(e.norm_ratio),
                    _e(e.manual_float64),
                ]
            )
    if not rows:
        return ""
    headers = [
        "case",
        "input",
        "dtype",
        "k",
        "manual err",
        "reference err",
        "/ allowed",
        "manual norm",
        "reference norm",
        "/ allowed",
        "manual in float64",
    ]
    head = (
        "low precision, errors against autograd in float64: worst element |g - t| / (|t| + s) and norm"
        " ||g - t|| / ||t||; '/ allowed' above 1 fails (k x the reference's error + a floor)"
    )
    return head + "\n" + tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)


def render_devices(report: Report) -> str:
    """Each case's manual and autograd gradients on every device against the reference device."""
    lines = []
    rows = []
    for d in report.devices:
        for row in d.rows:
            if row.status == "differ":
                verdict = f"DIFFER: {row.odd_device} is the odd device" if row.odd_device else "DIFFER"
            else:
                verdict = row.status
            if row.note:
                verdict += f" ({row.note})"
            rows.append(
                [
                    d.case,
                    row.input,
                    row.source,
                    f"{row.device} vs {row.against}",
                    f"{row.max_abs:.2e}",
                    f"{row.max_rel:.2e}",
                    f"{row.ratio:.3g}",
                    verdict,
                ]
            )
    if rows:
        headers = ["devices", "input", "source", "compared", "max abs diff", "max rel diff", "/ allowed", "verdict"]
        lines.append(tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True))
    for name, why in report.unavailable.items():
        lines.append(f"device {name}: unavailable, not checked: {why}")
    return "\n".join(lines)


def spread_notes(r: CaseResult) -> list[str]:
    """--repeat: each repeated source's largest run-to-run difference."""
    notes = []
    for s in ("manual", "autograd"):
        g = r.sources.get(s)
        if g is None or g.spread is None:
            continue
        largest = max((float(v.max()) for v in g.spread.values() if v.size), default=0.0)
        tol = r.settings.nondet_tol if r.settings is not None else 0.0
        notes.append(f"{s}: {g.runs} runs, run-to-run spread up to {largest:.2e} (nondet_tol {tol:g})")
    return notes
