"""The terminal table: one row per case and input, and per-element detail for failures."""

from __future__ import annotations

import numpy as np
from tabulate import tabulate

from .._compare import InputResult
from .._engine import CaseResult, Report
from .kernels import render_devices, render_low_precision, spread_notes

__all__ = [
    "format_value",
    "render_table",
    "render_case_detail",
    "render_errors",
    "render_summary",
    "case_notes",
    "check_text",
]

DETAIL_ROWS = 10


def format_value(g: np.ndarray | None, dtype: str = "float64") -> str:
    """A scalar shown whole (every digit its dtype holds); a tensor summarised."""
    if g is None:
        return "-"
    g = np.asarray(g)
    if g.ndim == 0 or g.size == 1 and g.ndim <= 1:
        v = float(g.reshape(()))
        return str(np.float32(v)) if dtype == "float32" else repr(v)
    shape = "x".join(str(s) for s in g.shape)
    finite = g[np.isfinite(g)]
    big = f"{np.max(np.abs(finite)):.4g}" if finite.size else "nan"
    bad = "" if finite.size == g.size else f", {g.size - finite.size} non-finite"
    return f"[{shape}] max|.| {big}{bad}"


def _verdict_text(r: CaseResult, i: InputResult | None = None) -> str:
    v = i.verdict if i is not None else r.verdict
    if v == "fail":
        odd = i.odd_one_out if i is not None else r.odd_one_out
        text = f"FAIL: {odd} is the odd one out" if odd else "FAIL"
    elif v == "inconclusive":
        text = "inconclusive"
        if i is not None and i.kinks:
            text += " (kink)"
    else:
        text = "pass"
    return text


def _at_point(r: CaseResult, i: InputResult) -> str:
    """A sweep's rows show its worst point: say which, when it is not the case's own and the
    row would otherwise read as the case's verdict."""
    if r.samples is None or r.samples.worst == 0 or i.verdict == "pass":
        return ""
    return f" at point {r.samples.worst}"


def render_table(report: Report) -> str:
    rows = []
    for r in report.results:
        dtypes = {s: g.dtype for s, g in r.sources.items()}
        for n, i in enumerate(r.inputs):
            rows.append(
                [
                    (r.case.name + (f" [{r.kind}]" if r.kind else "")) if n == 0 else "",
                    i.name,
                    format_value(i.grads.get("manual"), dtypes.get("manual", "float64")),
                    format_value(i.grads.get("autograd"), dtypes.get("autograd", "float64")),
                    _numeric_text(r, i),
                    r.check_label or check_text(r, i.name),
                    f"{i.max_rel:.2e}",
                    _verdict_text(r, i) + _at_point(r, i),
                ]
            )
    headers = ["case", "input", "manual", "autograd", "numeric", "check", "max rel diff", "verdict"]
    table = tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)
    notes = [f"{r.case.name}: {n}" for r in report.results for n in case_notes(r)]
    extra = [t for t in (render_low_precision(report.results), render_devices(report)) if t]
    return "\n".join([table, *notes, *extra])


def check_text(r: CaseResult, name: str) -> str:
    """Which numeric check ran on one input: full, sample K/N or projection xK."""
    g = r.sources.get("numeric")
    if g is None:
        return "-"
    if g.projections and name in g.projections:
        return f"projection x{len(g.projections[name].values)}"
    if g.checked and name in g.checked:
        mask = g.checked[name]
        return f"sample {int(mask.sum())}/{mask.size}"
    return "full"


def _numeric_text(r: CaseResult, i: InputResult) -> str:
    g = r.sources.get("numeric")
    if g is not None and g.projections and i.name in g.projections:
        return f"{len(g.projections[i.name].values)} directional derivatives"
    if g is not None and g.checked and i.name in g.checked and not g.checked[i.name].all():
        values = i.grads["numeric"][g.checked[i.name]]
        finite = values[np.isfinite(values)]
        big = f"{np.max(np.abs(finite)):.4g}" if finite.size else "nan"
        return f"[{values.size} sampled] max|.| {big}"
    return format_value(i.grads.get("numeric"))


def case_notes(r: CaseResult) -> list[str]:
    """What the table's rows cannot show: expected values, sweeps, sources left out, precision."""
    kind = f"[{r.kind}] " if r.kind else ""
    notes = [*r.case.notes, *(kind + n for n in r.notes), *(f"FAIL {e}" for e in r.expect_failures)]
    if r.samples is not None:
        c = r.samples.counts
        own = ", the case file's own" if r.samples.worst == 0 else ""
        notes.append(
            f"{r.samples.points} points: {c['pass']} pass, {c['fail']} fail, {c['inconclusive']} inconclusive"
            f" (table shows point {r.samples.worst}{own})"
        )
    if "manual" not in r.sources and not r.kind:  # a kind's own notes say why a source is missing
        notes.append("no backward program: checked two ways (autograd, numeric)")
    notes += spread_notes(r)
    for i in r.inputs:
        for src, rel in i.precision.items():
            # worth a note once half the dtype's digits are gone (1.5e-8 in float64, 3.5e-4 in float32)
            if r.dtype in ("float64", "float32") and rel > float(np.sqrt(np.finfo(np.dtype(r.dtype)).eps)):
                notes.append(f"{src} loses precision on {i.name}: rounding error up to {rel:.1e} relative in {r.dtype}")
        for src, count in i.overflow.items():
            notes.append(
                f"{src} overflows on {i.name} in {r.dtype} at {count} element(s) where its float64 rerun is finite:"
                " those elements are judged without it"
            )
    return notes


def _detail_order(grads: dict[str, np.ndarray], ix: tuple[int, ...]) -> tuple[bool, float]:
    """Elements all three sources saw first (in sample mode the numeric source saw few), then
    the largest difference between the sources first (NaN: a source did not check it)."""
    values = [float(g[ix]) for g in grads.values() if np.isfinite(g[ix])]
    unchecked = "numeric" in grads and not np.isfinite(grads["numeric"][ix])
    return unchecked, -(max(values) - min(values) if values else 0.0)


def render_case_detail(r: CaseResult) -> str:
    """Per-element table of every input that did not pass."""
    out = []
    for i in r.inputs:
        if i.verdict == "pass":
            continue
        kind = f" [{r.kind}]" if r.kind else ""
        out.append(f"\n{r.case.name}{kind} / {i.name}: {i.verdict} - {i.reason}")
        for p in i.pairs:
            unit = "direction" if i.projections and "numeric" in (p.a, p.b) else "element"
            status = f"{p.disagree} {unit}(s) disagree" if p.disagree else "agree"
            out.append(
                f"  {p.a} vs {p.b}: {status}; max abs {p.max_abs:.3e}, max rel {p.max_rel:.3e},"
                f" worst {list(p.worst)} at {p.ratio:.3g}x its tolerance [{p.rule}]"
            )
        bad = np.zeros(i.shape, dtype=bool)
        for m in i.masks.values():
            bad |= m
        for k in i.kinks:
            bad[k] = True
        idx = [tuple(int(j) for j in ix) for ix in np.argwhere(bad)]
        idx.sort(key=lambda ix: _detail_order(i.grads, ix))
        rows = []
        for ix in idx[:DETAIL_ROWS]:
            row = [str(list(ix))]
            for s in ("manual", "autograd", "numeric"):
                row.append(repr(float(i.grads[s][ix])) if s in i.grads else "-")
            row.append(f"{float(i.numeric_error[ix]):.1e}" if i.numeric_error is not None else "-")
            row.append("kink" if ix in i.kinks else "")
            rows.append(row)
        if rows:
            out.append(
                tabulate(
                    rows,
                    headers=["element", "manual", "autograd", "numeric", "numeric err", ""],
                    tablefmt="simple",
                    disable_numparse=True,
                )
            )
            if len(idx) > DETAIL_ROWS:
                out.append(f"  ... {len(idx) - DETAIL_ROWS} more element(s)")
        if i.projections:
            out.append(_projection_table(i))
    return "\n".join(out)


def _projection_table(i: InputResult) -> str:
    rows = []
    for k in range(len(i.projections["numeric"])):
        row = [str(k)]
        for s in ("manual", "autograd", "numeric"):
            row.append(repr(float(i.projections[s][k])) if s in i.projections else "-")
        row.append(f"{float(i.projection_error[k]):.1e}" if i.projection_error is not None else "-")
        rows.append(row)
    headers = ["direction", "manual <g,w>", "autograd <g,w>", "numeric d/dw", "numeric err"]
    return tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)


def render_errors(report: Report) -> str:
    return "\n".join(f"error: {e}" for e in report.errors)


def render_summary(report: Report) -> str:
    c = report.counts()
    o = report.options
    parts = [f"{c['pass']} pass", f"{c['fail']} fail", f"{c['inconclusive']} inconclusive", f"{c['error']} error"]
    total = len(report.results) + len(report.errors)
    # what ran, which the pytest plugin's lists of devices and dtypes make more than one each
    devices = ",".join(dict.fromkeys(r.device for r in report.results)) or o.device
    devices += "".join(f"; {d} unavailable" for d in report.unavailable)
    differ = sum(d.verdict == "fail" for d in report.devices)
    if report.devices:
        parts.append(f"{differ} differ across devices")
    dtypes = ",".join(dict.fromkeys(r.dtype for r in report.results)) or o.dtype
    return (
        f"{total} case(s): "
        + ", ".join(parts)
        + f" in {report.seconds:.2f} s ({devices}, {dtypes}, numeric {o.numeric}, mode {o.mode})"
    )
