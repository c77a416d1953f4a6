"""report.html: one self-contained page (inline CSS, SVG and a few lines of script; nothing
fetched), written beside the other reports and by ``gradcheck show CASE --html FILE``.

At the top the terminal's summary line and an index of the cases; then per case its verdict,
each input's pairs, the circuit (Graphviz, or a table where ``dot`` is missing, which the page
says), a heatmap per array input and pair of each element's difference over its tolerance,
and for a sweep each point's worst ratio to tolerance against where in the domain it lies.

Built from report.json's data (so the two agree) plus the views of :mod:`.visual` (the arrays
report.json does not keep); a case's ``diagnostics.blame`` (issue 14's line blame), when
present, marks the blamed statement and the wires it judged.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .circuit import STATUS_COLOURS, Drawing, draw_all, table_html
from .json_report import case_key
from .terminal import summary_text
from .visual import apply_blame

__all__ = ["render", "views", "summary_line"]

VERDICT_COLOURS = {"pass": "#1a7f37", "fail": "#d1242f", "inconclusive": "#9a6700", "error": "#d1242f"}


def views(report: Any) -> dict[str, dict[str, Any]]:
    """:func:`.visual.views`, imported on use (it needs torch, which rendering does not)."""
    from .visual import views as build

    return build(report)


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _slug(key: str) -> str:
    return "case-" + re.sub(r"[^A-Za-z0-9_-]+", "-", key).strip("-")


def summary_line(data: Mapping[str, Any]) -> str:
    """The terminal's summary line, from report.json's data."""
    o = data["options"]
    cases = data["cases"]
    devices = ",".join(dict.fromkeys(c["device"] for c in cases)) or o["device"]
    dtypes = ",".join(dict.fromkeys(c["dtype"] for c in cases)) or o["dtype"]
    s = data["summary"]
    return summary_text(
        s, s.get("points"), float(data["timings"]["total_seconds"]), devices, dtypes, o["numeric"], o["mode"]
    )


CSS = """
:root { --fg:#1f2328; --muted:#57606a; --line:#d0d7de; --bg:#ffffff; --soft:#f6f8fa; }
* { box-sizing: border-box; }
body { font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: var(--fg);
       background: var(--bg); margin: 0 auto; padding: 1.5em 2em 3em; max-width: 1200px; }
h1 { font-size: 1.6em; margin: 0 0 .2em; }
h2 { font-size: 1.25em; margin: 0; display: flex; gap: .6em; align-items: baseline; flex-wrap: wrap; }
h3 { font-size: 1em; margin: 1.2em 0 .4em; color: var(--muted); }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .92em; }
#summary { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: var(--soft);
           border: 1px solid var(--line); border-radius: 6px; padding: .6em .9em; white-space: pre-wrap; }
table { border-collapse: collapse; margin: .4em 0; }
th, td { border-bottom: 1px solid var(--line); padding: .25em .7em; text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.verdict { font-weight: 700; border-radius: 1em; padding: .05em .7em; color: #fff; font-size: .85em; }
.verdict.pass { background: #1a7f37; } .verdict.fail, .verdict.error { background: #d1242f; }
.verdict.inconclusive { background: #9a6700; }
tr.fail td, tr.wrong td { background: #ffebe9; } tr.inconclusive td { background: #fff8c5; }
section.case { border: 1px solid var(--line); border-radius: 8px; padding: 1em 1.2em; margin: 1.2em 0; }
section.case[data-verdict="fail"] { border-left: 6px solid #d1242f; }
section.case[data-verdict="inconclusive"] { border-left: 6px solid #bf8700; }
section.case[data-verdict="pass"] { border-left: 6px solid #1a7f37; }
.meta { color: var(--muted); margin: .2em 0 .6em; }
.blame { background: #ffebe9; border: 1px solid #ff8182; border-radius: 6px; padding: .6em .9em; margin: .6em 0; }
.note { color: var(--muted); font-size: .92em; }
figure { margin: .6em 0; overflow-x: auto; }
figure svg { max-width: 100%; height: auto; }
figure.circuit svg { max-width: none; }
.legend span { display: inline-block; margin-right: 1.2em; }
.swatch { display: inline-block; width: .9em; height: .9em; border-radius: 2px; vertical-align: -1px;
          margin-right: .3em; }
.heatmaps { display: flex; flex-wrap: wrap; gap: 1.2em; }
.heatmaps figure { margin: 0; }
figcaption { font-size: .9em; color: var(--muted); }
label.filter { user-select: none; }
footer { color: var(--muted); margin-top: 2em; font-size: .9em; }
"""

SCRIPT = """
(function () {
  // says the page's script ran to its end (the browser test reads it from the DOM)
  document.documentElement.setAttribute('data-ready', 'yes');
  var box = document.getElementById('only-problems');
  if (!box) { return; }
  box.addEventListener('change', function () {
    var sections = document.querySelectorAll('section.case');
    for (var i = 0; i < sections.length; i++) {
      sections[i].hidden = box.checked && sections[i].getAttribute('data-verdict') === 'pass';
    }
  });
})();
"""


def _verdict_badge(v: str) -> str:
    return f'<span class="verdict {_e(v)}">{_e(v.upper() if v != "pass" else v)}</span>'


def _num(x: Any, fmt: str = ".3g") -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return _e(x)
    return format(v, fmt) if math.isfinite(v) else _e(x)


def _index(data: Mapping[str, Any]) -> str:
    rows = []
    for c in data["cases"]:
        key = case_key(c)
        rels = [float(p["max_rel"]) for i in c["inputs"] for p in i["pairs"]]
        rel = f"{max(rels):.2e}" if rels else "-"
        rows.append(
            f'<tr class="{_e(c["verdict"])}"><td><a href="#{_slug(key)}">{_e(c["case"])}</a></td>'
            f"<td>{_e(c['device'])}-{_e(c['dtype'])}</td><td>{_verdict_badge(c['verdict'])}</td>"
            f"<td>{_e(c.get('odd_one_out') or '')}</td><td class='num'>{rel}</td>"
            f"<td class='mono'>{_e(c.get('file', ''))}</td></tr>"
        )
    for e in data["errors"]:
        rows.append(
            f'<tr class="fail"><td>{_e(e.get("case") or e.get("file") or "?")}</td><td></td>'
            f"<td>{_verdict_badge('error')}</td><td></td><td></td><td class='mono'>{_e(e.get('file') or '')}</td></tr>"
        )
    head = (
        "<tr><th>case</th><th>device-dtype</th><th>verdict</th><th>odd one out</th><th>max rel diff</th>"
        "<th>file</th></tr>"
    )
    return f'<table id="cases">{head}{"".join(rows)}</table>'


def _inputs_table(c: Mapping[str, Any]) -> str:
    rows = []
    for i in c["inputs"]:
        pairs = i["pairs"] or [None]
        for k, p in enumerate(pairs):
            first = k == 0
            name = f"<td rowspan='{len(pairs)}'><code>{_e(i['name'])}</code></td>" if first else ""
            verdict = f"<td rowspan='{len(pairs)}'>{_verdict_badge(i['verdict'])}</td>" if first else ""
            if p is None:
                rows.append(f"<tr>{name}{verdict}<td colspan='5'>{_e(i['reason'])}</td></tr>")
                continue
            bad = "fail" if p["disagree"] else ""
            unit = p.get("unit", "element")
            rows.append(
                f"<tr class='{bad}'>{name}{verdict}<td>{_e(p['pair'])}</td>"
                f"<td class='num'>{_num(p['max_abs'])}</td><td class='num'>{_num(p['max_rel'])}</td>"
                f"<td class='num'>{_num(p['ratio'])}</td><td class='num'>{_e(p['disagree'])} {unit}(s)</td></tr>"
            )
    head = (
        "<tr><th>input</th><th>verdict</th><th>pair</th><th>max abs diff</th><th>max rel diff</th>"
        "<th>worst / tolerance</th><th>disagree</th></tr>"
    )
    return f'<table class="inputs">{head}{"".join(rows)}</table>'


def _blame(blame: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr class='{_e(i.get('status', ''))}'><td><code>{_e(i.get('name', ''))}</code></td>"
        f"<td>{_e(i.get('line') if i.get('line') is not None else '')}</td><td>{_e(i.get('status', ''))}</td>"
        f"<td class='num'>{_num(i.get('max_rel'))}</td></tr>"
        for i in blame.get("intermediates") or []
    )
    table = (
        "<table class='intermediates'><tr><th>gradient</th><th>line</th><th>manual vs autograd</th>"
        f"<th>max rel diff</th></tr>{rows}</table>"
        if rows
        else ""
    )
    return (
        f"<div class='blame'><strong>line {_e(blame.get('line'))}</strong>: "
        f"<code>{_e(blame.get('statement', ''))}</code><br>{_e(blame.get('message', ''))}{table}</div>"
    )


def _circuit(key: str, drawn: Mapping[str, Any] | None, drawing: Drawing) -> str:
    if not drawn:
        return ""
    if "error" in drawn:
        return f"<h3>circuit</h3><p class='note'>The circuit could not be drawn: {_e(drawn['error'])}</p>"
    point = drawn.get("point", 0)
    at = "the case's own point" if not point else f"sweep point {point}, the one the table shows"
    legend = (
        "<p class='legend note'>"
        f"<span><span class='swatch' style='background:#1a7f37'></span>value (forward)</span>"
        f"<span><span class='swatch' style='background:#b3261e'></span>d: gradient from m manual, a autograd,"
        " n numeric</span>"
        f"<span><span class='swatch' style='background:{STATUS_COLOURS['wrong']}'></span>thick red wire: the"
        " sources disagree on its gradient</span></p>"
    )
    svg = drawing.svgs.get(key)
    if svg is not None:
        body = svg
    else:
        why = drawing.missing or "no drawing"
        body = (
            f"<p class='note fallback-note'>{_e(why)}: the circuit is shown as a table. Install Graphviz"
            " (Debian: <code>apt-get install graphviz</code>) to draw it.</p>" + table_html(drawn)
        )
    return f"<h3>circuit at {_e(at)} ({_e(drawn.get('dtype', ''))})</h3>{legend}<figure class='circuit'>{body}</figure>"


def _cell_colour(r: float | None) -> str:
    if r is None:
        return "#eaeef2"
    if r <= 1.0:
        t = min(max((math.log10(max(r, 1e-12)) + 12) / 12, 0.0), 1.0)
        return f"hsl(140, 45%, {96 - 46 * t:.0f}%)"
    t = min(max(math.log10(r) / 4, 0.0), 1.0)
    return f"hsl(0, 80%, {62 - 32 * t:.0f}%)"


def _heatmap(h: Mapping[str, Any]) -> str:
    cells = h["cells"]
    rows, cols = len(cells), len(cells[0]) if cells else 0
    size = max(6, min(22, 360 // max(cols, 1)))
    width, height = cols * size, rows * size
    tips = rows * cols <= 4096
    bh, bw = h["block"]
    rects = []
    for i, row in enumerate(cells):
        for j, r in enumerate(row):
            tip = ""
            if tips:
                where = (
                    f"[{i}, {j}]" if (bh, bw) == (1, 1) else f"block [{i * bh}:{(i + 1) * bh}, {j * bw}:{(j + 1) * bw}]"
                )
                value = "not compared" if r is None else f"{r:.3g}x its tolerance"
                tip = f"<title>{_e(where)}: {_e(value)}</title>"
            rects.append(
                f'<rect x="{j * size}" y="{i * size}" width="{size}" height="{size}"'
                f' fill="{_cell_colour(r)}">{tip}</rect>'
            )
    pooled = "" if (bh, bw) == (1, 1) else f"; each cell the largest of a {bh}x{bw} block"
    shape = "x".join(map(str, h["shape"]))
    caption = (
        f"<code>{_e(h['input'])}</code> [{_e(shape)}] {_e(h['pair'])}: worst {_num(h['ratio'])}x its tolerance"
        f" at {_e(h['worst'])}, {_e(h['disagree'])} element(s) above{_e(pooled)}"
    )
    cls = "heatmap disagree" if h["disagree"] else "heatmap"
    return (
        f"<figure class='{cls}'><svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}'"
        f" viewBox='0 0 {width} {height}' role='img'>{''.join(rects)}</svg><figcaption>{caption}</figcaption></figure>"
    )


def _heatmaps(maps: Sequence[Mapping[str, Any]]) -> str:
    if not maps:
        return ""
    legend = (
        "<p class='legend note'><span><span class='swatch' style='background:hsl(140,45%,50%)'></span>within"
        " tolerance (darker: closer to it)</span><span><span class='swatch' style='background:hsl(0,80%,45%)'>"
        "</span>above its tolerance</span><span><span class='swatch' style='background:#eaeef2'></span>not"
        " compared or undecided</span></p>"
    )
    return (
        "<h3>per-element difference over tolerance</h3>"
        + legend
        + f"<div class='heatmaps'>{''.join(_heatmap(h) for h in maps)}</div>"
    )


def _sweep_plot(sweep: Mapping[str, Any], axis: str | None) -> str:
    W, H, left, right, top, bottom = 460, 190, 52, 12, 10, 34
    ratios = sweep["ratios"]
    logs = [math.log10(r) if r is not None and r > 0 else None for r in ratios]
    finite = [v for v in logs if v is not None]
    lo = min([-8.0, *finite]) if finite else -8.0
    lo = max(math.floor(lo), -16)
    hi = max([1.0, *finite]) if finite else 1.0
    hi = math.ceil(hi)
    if axis is not None:
        xs = [c.get(axis) for c in sweep["coordinates"]]
        dom = sweep.get("domain", {}).get(axis)
        known = [x for x in xs if x is not None]
        x0, x1 = (dom[0], dom[1]) if dom else (min(known, default=0.0), max(known, default=1.0))
        label = axis
    else:
        xs = list(range(len(ratios)))
        x0, x1 = 0, max(len(ratios) - 1, 1)
        label = "sample point"
    if x1 == x0:
        x1 = x0 + 1

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (W - left - right)

    def py(v: float | None) -> float:
        v = lo if v is None else min(max(v, lo), hi)
        return top + (hi - v) / (hi - lo) * (H - top - bottom)

    parts = [f'<rect x="{left}" y="{top}" width="{W - left - right}" height="{H - top - bottom}" fill="#f6f8fa"/>']
    for v in range(lo, hi + 1, max(1, (hi - lo) // 5)):
        parts.append(f'<text x="{left - 6}" y="{py(v) + 4:.1f}" font-size="10" text-anchor="end">1e{v}</text>')
    parts.append(
        f'<line x1="{left}" x2="{W - right}" y1="{py(0):.1f}" y2="{py(0):.1f}" stroke="#d1242f"'
        ' stroke-dasharray="4 3"/>'
        f'<text x="{W - right - 2}" y="{py(0) - 4:.1f}" font-size="10" text-anchor="end"'
        ' fill="#d1242f">tolerance</text>'
    )
    for k, (x, lg, verdict) in enumerate(zip(xs, logs, sweep["verdicts"], strict=False)):
        if x is None:
            continue
        colour = VERDICT_COLOURS.get(verdict, "#57606a")
        ring = (
            f'<circle cx="{px(x):.1f}" cy="{py(lg):.1f}" r="7" fill="none" stroke="#1f2328"/>'
            if k == sweep["worst"]
            else ""
        )
        ratio = ratios[k]
        tip = f"point {k}: {verdict}, " + ("ratio 0" if ratio is None else f"{ratio:.3g}x tolerance")
        parts.append(
            f'<circle class="point {_e(verdict)}" cx="{px(x):.1f}" cy="{py(lg):.1f}" r="3.5" fill="{colour}">'
            f"<title>{_e(tip)}</title></circle>{ring}"
        )
    parts.append(
        f'<text x="{(left + W - right) / 2}" y="{H - 6}" font-size="11" text-anchor="middle">{_e(label)}</text>'
    )
    parts.append(
        f'<text x="12" y="{(top + H - bottom) / 2}" font-size="11" text-anchor="middle"'
        f' transform="rotate(-90 12 {(top + H - bottom) / 2})">worst / tolerance</text>'
    )
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{W}' height='{H}' viewBox='0 0 {W} {H}' role='img'>"
        + "".join(parts)
        + "</svg>"
    )


def _sweep(sweep: Mapping[str, Any] | None) -> str:
    if not sweep:
        return ""
    axes = sorted({a for c in sweep["coordinates"] for a in c})[:4] or [None]
    counts = {v: sweep["verdicts"].count(v) for v in ("pass", "fail", "inconclusive")}
    text = (
        f"{len(sweep['verdicts'])} points: {counts['pass']} pass, {counts['fail']} fail,"
        f" {counts['inconclusive']} inconclusive; the ringed point is the one the tables show"
    )
    plots = "".join(f"<figure class='sweep'>{_sweep_plot(sweep, a)}</figure>" for a in axes)
    return f"<h3>sweep: each point's worst difference over its tolerance</h3><p class='note'>{_e(text)}</p>{plots}"


def _case(c: dict[str, Any], view: Mapping[str, Any], drawing: Drawing) -> str:
    key = case_key(c)
    diagnostics = c.get("diagnostics") or {}
    blame = diagnostics.get("blame") if isinstance(diagnostics, Mapping) else None
    odd = f" &middot; odd one out: <strong>{_e(c['odd_one_out'])}</strong>" if c.get("odd_one_out") else ""
    parts = [
        f"<section class='case' id='{_slug(key)}' data-verdict='{_e(c['verdict'])}'>",
        f"<h2><span>{_e(c['case'])}</span> <span class='mono'>[{_e(c['device'])}-{_e(c['dtype'])}]</span>"
        f" {_verdict_badge(c['verdict'])}</h2>",
        f"<p class='meta'><span class='mono'>{_e(c.get('file', ''))}</span> &middot;"
        f" {_e(c.get('reason', ''))}{odd}</p>",
    ]
    for e in c.get("expect_failures") or []:
        if e not in c.get("reason", ""):
            parts.append(f"<p class='meta'>expected value: {_e(e)}</p>")
    if blame:
        parts.append(_blame(blame))
    for h in diagnostics.get("hints") or [] if isinstance(diagnostics, Mapping) else []:
        parts.append(f"<p class='note hint'>hint ({_e(h.get('input', ''))}): {_e(h.get('message', ''))}</p>")
    parts.append(_inputs_table(c))
    drawn = view.get("circuit")
    if drawn and "nodes" in drawn:
        drawn = apply_blame(drawn, blame)
    parts.append(_circuit(key, drawn, drawing))
    parts.append(_heatmaps(view.get("heatmaps") or []))
    parts.append(_sweep(view.get("sweep")))
    parts.append("</section>")
    return "\n".join(p for p in parts if p)


def _errors(data: Mapping[str, Any]) -> str:
    if not data["errors"]:
        return ""
    items = "".join(f"<li><code>{_e(e['text'])}</code></li>" for e in data["errors"])
    return f"<section id='errors'><h2>errors {_verdict_badge('error')}</h2><ul>{items}</ul></section>"


def _baseline(data: Mapping[str, Any]) -> str:
    b = data.get("baseline")
    if not b:
        return ""
    if b["passed"]:
        body = f"<p>No regression in {len(b['compared'])} case(s) (max growth {_num(b['max_growth'], 'g')}x).</p>"
    else:
        body = "<ul>" + "".join(f"<li>{_e(r['message'])}</li>" for r in b["regressions"]) + "</ul>"
    extra = ""
    if b["new"]:
        extra += f"<p class='note'>new: {_e(', '.join(b['new']))}</p>"
    if b["removed"]:
        extra += f"<p class='note'>removed: {_e(', '.join(b['removed']))}</p>"
    return f"<section id='baseline'><h2>baseline <code>{_e(b['file'])}</code></h2>{body}{extra}</section>"


def render(data: Mapping[str, Any], case_views: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """The page for a report's data (json_report.to_dict) and the views of its cases."""
    case_views = case_views or {}
    circuits = {
        case_key(c): apply_blame(dict(v["circuit"]), ((c.get("diagnostics") or {}).get("blame")))
        for c in data["cases"]
        if (v := case_views.get(case_key(c))) and v.get("circuit") and "nodes" in v["circuit"]
    }
    drawing = draw_all(circuits)
    env = data.get("environment", {})
    sections = [_case(c, case_views.get(case_key(c), {}), drawing) for c in data["cases"]]
    title = "gradcheck report" if len(data["cases"]) != 1 else f"gradcheck: {data['cases'][0]['case']}"
    footer = (
        f"gradcheck-suite {_e(env.get('package', ''))} &middot; torch {_e(env.get('torch', ''))} &middot;"
        f" numpy {_e(env.get('numpy', ''))} &middot; {_e(env.get('device_name', ''))} &middot;"
        f" commit {_e((env.get('git_commit') or 'unknown')[:12])} &middot; {_e(data.get('created', ''))}"
    )
    missing = ""
    if drawing.missing:
        missing = f"<p class='note fallback-note'>{_e(drawing.missing)}: circuits are shown as tables.</p>"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>{CSS}</style>
</head>
<body>
<header>
<h1>{_e(title)}</h1>
<p id="summary">{_e(summary_line(data))}</p>
{missing}
<label class="filter"><input type="checkbox" id="only-problems"> show only the cases that did not pass</label>
{_index(data)}
</header>
<main>
{_baseline(data)}
{_errors(data)}
{"".join(sections)}
</main>
<footer>{footer}</footer>
<script>{SCRIPT}</script>
</body>
</html>
"""
