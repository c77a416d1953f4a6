"""Circuits laid out by Graphviz: each wire's value above its line and its gradients below,
as the course draws them; a plain table where Graphviz's ``dot`` is not installed.

The DOT text is built with the ``graphviz`` package (it quotes names and labels correctly),
and every circuit of a report goes through a single ``dot`` process: one process per case
would add a few tens of milliseconds each to every run that writes report.html.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["Drawing", "draw_all", "dot_source", "table_html", "STATUS_COLOURS"]

# the page's palette: a value is green and a gradient red, as in the course's diagrams
VALUE = "#1a7f37"
GRADIENT = "#b3261e"
STATUS_COLOURS = {"right": "#57606a", "wrong": "#d1242f", "inconclusive": "#bf8700", "unknown": "#8c959f"}


class Drawing:
    """The SVG of each circuit, or, without ``dot``, why there is none."""

    def __init__(self, svgs: Mapping[str, str], missing: str | None) -> None:
        self.svgs = dict(svgs)
        self.missing = missing


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _wire_label(w: Mapping[str, Any]) -> str:
    """An HTML-like Graphviz label: the value on top (green), the gradients below (red)."""
    top = f"{w['name']} = {w['value']}" if w["value"] else w["name"]
    rows = [f'<tr><td><font color="{VALUE}">{_esc(top)}</font></td></tr>']
    if w["grads"]:
        grads = "  ".join(f"{s[0]} {g}" for s, g in w["grads"].items())  # m, a, n: the legend says which
        weight = ("<b>", "</b>") if w["status"] == "wrong" else ("", "")
        rows.append(f'<tr><td><font color="{GRADIENT}">{weight[0]}d: {_esc(grads)}{weight[1]}</font></td></tr>')
    return '<<table border="0" cellborder="0" cellspacing="0" cellpadding="1">' + "".join(rows) + "</table>>"


def _node_label(n: Mapping[str, Any]) -> str:
    if n["kind"] != "step":
        return n["label"]
    line = f'<br/><font point-size="9" color="#57606a">line {n["line"]}</font>' if n["line"] else ""
    return f"<{_esc(n['label'])}{line}>"


# Up to this many statements a circuit runs left to right, as the course draws it; a longer
# one runs top to bottom, as its program reads, so that it fits a page's width at full size.
LEFT_TO_RIGHT_STEPS = 4


def _direction(drawn: Mapping[str, Any]) -> str:
    steps = sum(1 for n in drawn["nodes"] if n["kind"] == "step")
    return "LR" if steps <= LEFT_TO_RIGHT_STEPS else "TB"


def dot_source(key: str, drawn: Mapping[str, Any]) -> str:
    """One circuit as DOT text."""
    import graphviz

    g = graphviz.Digraph(
        name=re.sub(r"\W", "_", key),
        graph_attr={"rankdir": _direction(drawn), "bgcolor": "transparent", "nodesep": "0.3", "ranksep": "0.35"},
        node_attr={"fontname": "Helvetica", "fontsize": "11", "shape": "box", "style": "rounded,filled"},
        edge_attr={"fontname": "Helvetica", "fontsize": "10", "arrowsize": "0.6"},
    )
    for n in drawn["nodes"]:
        kind = n["kind"]
        attrs = {
            "input": {"shape": "circle", "fillcolor": "#ddf4ff", "color": "#0969da"},
            "output": {"shape": "doublecircle", "fillcolor": "#ddf4ff", "color": "#0969da"},
            "constant": {"shape": "plaintext", "fillcolor": "transparent", "fontcolor": "#57606a"},
            "step": {"fillcolor": "#f6f8fa", "color": "#8c959f"},
            "junction": {"shape": "point", "width": "0.06", "color": "#57606a"},
        }[kind]
        classes = f"{kind}" + (" blamed" if n.get("blamed") else "")
        if n.get("blamed"):
            attrs = {**attrs, "fillcolor": "#ffebe9", "color": STATUS_COLOURS["wrong"], "penwidth": "3"}
        g.node(n["id"], label=_node_label(n), id=f"node_{n['id']}", **{"class": classes}, **attrs)
    for k, w in enumerate(drawn["wires"]):
        colour = STATUS_COLOURS.get(w["status"], "#8c959f")
        attrs = {"color": colour, "penwidth": "2.5" if w["status"] == "wrong" else "1.2"}
        if w["to"].startswith("j_"):
            attrs["arrowhead"] = "none"  # into a junction: the wire goes on through its branches
        if w["status"] == "none":  # a constant: no gradient flows back along it
            attrs["style"] = "dashed"
        if w.get("branch"):
            attrs["arrowhead"] = "normal"
        g.edge(
            w["from"],
            w["to"],
            label="" if w.get("branch") else _wire_label(w),
            id=f"wire_{k}",
            **{"class": f"wire {w['status']}"},
            **attrs,
        )
    return str(g.source)


def draw_all(circuits: Mapping[str, Mapping[str, Any]]) -> Drawing:
    """Every circuit's SVG from one ``dot`` run; without ``dot`` (or the ``graphviz``
    package), no SVG and the reason, so the page can fall back to tables and say why."""
    if not circuits:
        return Drawing({}, None)
    try:
        import graphviz
    except ImportError:
        return Drawing({}, "the Python package `graphviz` is not installed")
    keys = list(circuits)
    source = "\n".join(dot_source(k, circuits[k]) for k in keys)
    try:
        out = graphviz.pipe("dot", "svg", source.encode("utf-8"), quiet=True).decode("utf-8")
    except graphviz.ExecutableNotFound:
        return Drawing({}, "Graphviz's `dot` is not installed")
    except graphviz.CalledProcessError as exc:
        return Drawing({}, f"Graphviz's `dot` failed: {exc}")
    svgs = [s[: s.index("</svg>") + len("</svg>")] for s in re.split(r"(?=<svg\b)", out) if s.startswith("<svg")]
    if len(svgs) != len(keys):
        return Drawing({}, f"Graphviz's `dot` drew {len(svgs)} circuits for {len(keys)}")
    return Drawing(dict(zip(keys, svgs, strict=True)), None)


def table_html(drawn: Mapping[str, Any]) -> str:
    """The circuit as a table: one row per wire, its statement, value and gradients."""
    steps = {n["id"]: n for n in drawn["nodes"]}
    rows = []
    for w in drawn["wires"]:
        if w["status"] == "none" or w["to"].startswith("j_"):
            continue
        head = steps.get(w["to"], {})
        into = f"line {head['line']}: {head['label']}" if head.get("kind") == "step" else f"output {head.get('label')}"
        grads = "".join(f"<td>{_esc(w['grads'].get(s, ''))}</td>" for s in ("manual", "autograd", "numeric"))
        blamed = " blamed" if head.get("blamed") else ""
        rows.append(
            f'<tr class="wire {_esc(w["status"])}{blamed}"><td><code>{_esc(w["name"])}</code></td>'
            f"<td><code>{_esc(into)}</code></td><td>{_esc(w['value'])}</td>{grads}<td>{_esc(w['status'])}</td></tr>"
        )
    head = (
        "<tr><th>wire</th><th>into</th><th>value</th><th>d manual</th><th>d autograd</th>"
        "<th>d numeric</th><th>gradient</th></tr>"
    )
    return f'<table class="circuit-table">{head}{"".join(rows)}</table>'
