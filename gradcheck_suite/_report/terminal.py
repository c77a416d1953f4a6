"""The terminal table: one row per case and input, and per-element detail for failures."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from .._compare import InputResult
from .._console import Paint
from .._engine import CaseResult, Report
from .kernels import render_devices, render_low_precision, spread_notes
from .layout import fits, simple_table, stacked, wrap

__all__ = [
    "format_value",
    "render_table",
    "render_case_detail",
    "render_errors",
    "render_summary",
    "summary_text",
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


def row_verdict(r: CaseResult, i: InputResult) -> str:
    """An input's verdict cell. A sweep's rows show its worst point: they say which point when
    it is not the case's own, and never read as a verdict the case does not have (a sweep
    whose other points pass is a pass, as the summary and report.json count it)."""
    text = _verdict_text(r, i)
    if r.samples is None or i.verdict == "pass":
        return text
    k = r.samples.worst
    if r.verdict == "pass":  # the shown point is inconclusive, the sweep as a whole passes
        return f"pass; point {k} {text}"
    return text if k == 0 else f"{text} at point {k}"


def _group(r: CaseResult) -> str:
    return r.case.file.parent.as_posix().rstrip("/") + "/"


def _abbreviate(g: np.ndarray | None, dtype: str = "float64") -> str:
    """format_value with fewer digits: what a narrow terminal has room for."""
    if g is None:
        return "-"
    g = np.asarray(g)
    if g.ndim == 0 or g.size == 1 and g.ndim <= 1:
        return f"{float(g.reshape(())):.6g}"
    text = format_value(g, dtype)
    return text.replace(" max|.| ", " max ")


_HEADERS = ["case", "input", "manual", "autograd", "numeric", "check", "max rel diff", "verdict"]


def _rows(report: Report, compact: bool) -> list[list[str]]:
    rows = []
    value = _abbreviate if compact else format_value
    several = len({r.device for r in report.results}) > 1  # --device cpu,cuda: say which ran
    for r in report.results:
        dtypes = {s: g.dtype for s, g in r.sources.items()}
        label = r.case.name + (f" [{r.kind}]" if r.kind else "") + (f" ({r.device})" if several else "")
        for n, i in enumerate(r.inputs):
            numeric = _numeric_text(r, i)
            if compact and numeric == format_value(i.grads.get("numeric")):
                numeric = _abbreviate(i.grads.get("numeric"))
            rows.append(
                [
                    label if n == 0 else "",
                    i.name,
                    value(i.grads.get("manual"), dtypes.get("manual", "float64")),
                    value(i.grads.get("autograd"), dtypes.get("autograd", "float64")),
                    numeric,
                    r.check_label or check_text(r, i.name),
                    f"{i.max_rel:.2e}",
                    row_verdict(r, i),
                ]
            )
    return rows


def _layouts(report: Report) -> Iterator[tuple[list[str], list[list[str]]]]:
    """Tables from widest to narrowest: every value whole; abbreviated values (and no check
    column when every input had the full check); no values (``-v`` and ``show`` have them)."""
    full = _rows(report, compact=False)
    yield list(_HEADERS), full
    compact = _rows(report, compact=True)
    headers = list(_HEADERS)
    if all(row[5] == "full" for row in compact):  # the column would say nothing
        headers.pop(5)
        compact = [row[:5] + row[6:] for row in compact]
    headers[headers.index("max rel diff")] = "max rel"
    yield headers, compact
    yield [headers[0], headers[1], *headers[5:]], [row[:2] + row[5:] for row in compact]


def _table_lines(report: Report, width: int | None, paint: Paint) -> tuple[list[str], list[int]]:
    """The widest layout that fits, else a block per input; and the index of each case's first line."""
    for headers, rows in _layouts(report):
        lines = simple_table(headers, rows)
        if fits(lines, width):
            return _paint_last_column(lines, paint), _first_rows(rows, offset=2)
    out: list[str] = []
    starts: list[int] = []
    for r, rows in zip(report.results, _by_case(report, _rows(report, compact=False)), strict=True):
        starts.append(len(out))
        out.append(paint(r.case.name, "bold"))
        pad = max(len(i.name) for i in r.inputs)
        for _, name, manual, autograd, numeric, check, rel, verdict in rows:
            fields = [("", paint.verdict(verdict)), ("max rel diff", rel)]
            fields += [("manual", manual), ("autograd", autograd), ("numeric", numeric), ("check", check)]
            out += stacked("", fields, width, indent=" " * (pad + 4), first=f"  {name:{pad}}  ")
    return out, starts


def _by_case(report: Report, rows: list[list[str]]) -> list[list[list[str]]]:
    out = []
    k = 0
    for r in report.results:
        out.append(rows[k : k + len(r.inputs)])
        k += len(r.inputs)
    return out


def _first_rows(rows: list[list[str]], offset: int) -> list[int]:
    return [offset + k for k, row in enumerate(rows) if row[0]]


def _paint_last_column(lines: list[str], paint: Paint) -> list[str]:
    if not paint.enabled or len(lines) < 3:
        return lines
    start = lines[1].rstrip().rfind(" ") + 1  # the rule line's last dash run marks the column
    return lines[:2] + [line[:start] + paint.verdict(line[start:].rstrip()) for line in lines[2:]]


def render_table(report: Report, width: int | None = None, paint: Paint | None = None) -> str:
    """One row per case and input, in the order the cases ran (their files' order: a folder's
    own files, then its subfolders). ``width``: fit it (None: lines are whole); when the cases
    come from several folders, each folder's rows come under its name."""
    paint = paint or Paint()
    lines, starts = _table_lines(report, width, paint)
    groups = [_group(r) for r in report.results]
    if len(set(groups)) > 1:
        # A folder's name above its first row: the order then reads as the files' order.
        headed: list[str] = []
        at = dict(zip(starts, groups, strict=True))
        previous = None
        for k, line in enumerate(lines):
            if k in at and at[k] != previous:
                headed.append(paint(at[k], "heading"))
                previous = at[k]
            headed.append(line)
        lines = headed
    for r in report.results:
        for note in case_notes(r):
            lines += wrap(f"{r.case.name}: {note}", width, indent="    ", first="")
    # issue 12: low-precision errors side by side, devices against each other
    lines += [t for t in (render_low_precision(report.results), render_devices(report)) if t]
    return "\n".join(lines)


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
    if r.diagnostics is not None:  # a failure: its blamed line, or its first hint
        notes.append(r.diagnostics.summary())
    if r.samples is not None:
        c = r.samples.counts
        own = ", the case file's own" if r.samples.worst == 0 else ""
        notes.append(
            f"{r.verdict} over {r.samples.points} sweep points: {c['pass']} pass, {c['fail']} fail,"
            f" {c['inconclusive']} inconclusive (table shows point {r.samples.worst}{own})"
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


def render_case_detail(r: CaseResult, width: int | None = None, paint: Paint | None = None) -> str:
    """Per-element table of every input that did not pass (fitted to ``width`` when given)."""
    paint = paint or Paint()
    out: list[str] = []
    for i in r.inputs:
        if i.verdict == "pass":
            continue
        out.append("")
        kind = f" [{r.kind}]" if r.kind else ""
        out += wrap(f"{r.case.name}{kind} / {i.name}: {paint.verdict(i.verdict)} - {i.reason}", width, "    ", first="")
        for p in i.pairs:
            unit = "direction" if i.projections and "numeric" in (p.a, p.b) else "element"
            status = f"{p.disagree} {unit}(s) disagree" if p.disagree else "agree"
            line = (
                f"{p.a} vs {p.b}: {status}; max abs {p.max_abs:.3e}, max rel {p.max_rel:.3e},"
                f" worst {list(p.worst)} at {p.ratio:.3g}x its tolerance [{p.rule}]"
            )
            out += wrap(line, width, "      ", first="  ")
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
            out += fitted_table(["element", "manual", "autograd", "numeric", "numeric err", ""], rows, width)
            if len(idx) > DETAIL_ROWS:
                out.append(f"  ... {len(idx) - DETAIL_ROWS} more element(s)")
        if i.projections:
            out += _projection_table(i, width)
    if r.diagnostics is not None:
        from .._diagnose.render import detail  # only a failure pays for the import

        out.append(detail(r, width))
    return "\n".join(out)


def fitted_table(headers: list[str], rows: list[list[str]], width: int | None) -> list[str]:
    """A table when it fits ``width``, else each row as its first cell followed by the others."""
    lines = simple_table(headers, rows)
    if fits(lines, width):
        return lines
    out: list[str] = []
    for row in rows:
        fields = [(h, v) for h, v in zip(headers[1:], row[1:], strict=True) if v]
        out += stacked("", fields, width, indent="    ", first=f"{headers[0]} {row[0]}  ")
    return out


def _projection_table(i: InputResult, width: int | None = None) -> list[str]:
    rows = []
    for k in range(len(i.projections["numeric"])):
        row = [str(k)]
        for s in ("manual", "autograd", "numeric"):
            row.append(repr(float(i.projections[s][k])) if s in i.projections else "-")
        row.append(f"{float(i.projection_error[k]):.1e}" if i.projection_error is not None else "-")
        rows.append(row)
    headers = ["direction", "manual <g,w>", "autograd <g,w>", "numeric d/dw", "numeric err"]
    return fitted_table(headers, rows, width)


def render_errors(report: Report, width: int | None = None, paint: Paint | None = None) -> str:
    paint = paint or Paint()
    out: list[str] = []
    for e in report.errors:
        out += wrap(f"{paint('error', 'error')}: {e}", width, "    ", first="")
    return "\n".join(out)


def render_summary(report: Report, paint: Paint | None = None) -> str:
    """``N case(s): ... pass, ... fail, ...`` and, when cases swept, their points counted alike."""
    o = report.options
    # what ran, which the pytest plugin's lists of devices and dtypes make more than one each
    devices = ",".join(dict.fromkeys(r.device for r in report.results)) or o.device
    devices += "".join(f"; {d} unavailable" for d in report.unavailable)
    if report.devices:  # --device cpu,cuda: the cases whose gradients differ between devices
        devices += f"; {sum(d.verdict == 'fail' for d in report.devices)} differ across devices"
    dtypes = ",".join(dict.fromkeys(r.dtype for r in report.results)) or o.dtype
    return summary_text(
        report.counts(), report.point_counts(), report.seconds, devices, dtypes, o.numeric, o.mode, paint
    )


def summary_text(
    counts: Mapping[str, int],
    points: Mapping[str, int] | None,
    seconds: float,
    devices: str,
    dtypes: str,
    numeric: str,
    mode: str,
    paint: Paint | None = None,
) -> str:
    """The summary line from its parts; report.html builds the same line from report.json."""
    paint = paint or Paint()

    def count(n: int, word: str) -> str:
        return paint(f"{n} {word}", word) if n else f"{n} {word}"

    parts = [count(counts[v], v) for v in ("pass", "fail", "inconclusive", "error")]
    total = sum(counts[v] for v in ("pass", "fail", "inconclusive", "error"))
    swept = ""
    if points is not None:
        swept = f"; {points['points']} sweep point(s): " + ", ".join(
            count(points[v], v) for v in ("pass", "fail", "inconclusive")
        )
    return (
        f"{total} case(s): "
        + ", ".join(parts)
        + swept
        + f" in {seconds:.2f} s ({devices}, {dtypes}, numeric {numeric}, mode {mode})"
    )
