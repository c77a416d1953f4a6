"""What report.html draws, as plain data: per case its circuit, its heatmaps and its sweep.

report.json keeps per input only each pair's largest difference; the page draws more (every
element's difference over its tolerance, every forward step's value and gradient), so these
views are built from the engine's objects when the reports are written, keyed like
report.json's cases (``case[device-dtype]``). Plain lists, strings and numbers only, so a
test can build or edit one by hand.

The circuit is the course's picture of backprop: one node per forward statement, a wire per
use of a value, labelled with the value (forward) and with its gradient from each source
(backward). The gradients of intermediates come from running the programs again at the
point the table shows: the manual backward program's ``d<name>``, and autograd's gradient of
the output with respect to each statement's result (``retain_grad``).
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .._backends import NumpyBackend, TorchBackend
from .._case import Case
from .._compare import judge_input
from .._engine import CaseResult, Report
from .._sources import Gradients
from .._sources.autograd import torch_dtype
from .._sources.manual import upstream_gradients
from .json_report import case_key

__all__ = ["MAX_CELLS", "views", "case_view", "circuit", "heatmaps", "sweep", "short"]

MAX_CELLS = 64  # a heatmap keeps at most this many rows and columns; larger arrays are pooled by max


def short(v: Any) -> str:
    """A value as a wire label shows it: a scalar to 5 digits, an array by shape and size."""
    a = np.asarray(v, dtype=np.float64)
    if a.size == 1:
        return f"{float(a.reshape(())):.5g}"
    finite = a[np.isfinite(a)]
    big = f"{np.max(np.abs(finite)):.4g}" if finite.size else "nan"
    return f"[{'x'.join(map(str, a.shape))}] max|.| {big}"


def views(report: Report) -> dict[str, dict[str, Any]]:
    return {_key(r): case_view(r) for r in report.results}


def _key(r: CaseResult) -> str:
    return case_key({"case": r.case.name, "device": r.device, "dtype": r.dtype})


def case_view(r: CaseResult) -> dict[str, Any]:
    try:
        drawn = circuit(r)
    except Exception as exc:  # noqa: BLE001 - a picture that cannot be drawn must not cost the reports
        drawn = {"error": f"{type(exc).__name__}: {exc}"}
    return {"circuit": drawn, "heatmaps": heatmaps(r), "sweep": sweep(r)}


# ---------------------------------------------------------------------------------------------
# circuit


def _names_used(s: Any) -> list[str]:
    """The names a statement reads, in order of first use (not the functions it calls)."""
    called = {id(n.func) for n in ast.walk(s.expr) if isinstance(n, ast.Call)}
    seen: dict[str, None] = {}
    if s.op != "=":
        seen[s.target] = None  # `a += b` reads a
    for n in ast.walk(s.expr):
        if isinstance(n, ast.Name) and id(n) not in called:
            seen.setdefault(n.id, None)
    return list(seen)


def _autograd_steps(case: Case, point: Mapping[str, np.ndarray], dtype: str) -> tuple[list[Any], dict[str, Any]]:
    """Autograd's gradient of the output with respect to each forward statement's result (in
    trace order) and to each input."""
    be = TorchBackend(torch_dtype(dtype), "cpu")
    leaves = {k: be.asarray(v).requires_grad_(True) for k, v in point.items()}
    trace: list[tuple[Any, Any]] = []
    values = case.forward.run(leaves, be, trace)
    for _, v in trace:
        if isinstance(v, torch.Tensor) and v.requires_grad and not v.is_leaf:
            v.retain_grad()
    terms = []
    for o in case.outputs:
        out = be._t(values[o])
        if out.requires_grad:
            up = case.upstreams.get(o)
            terms.append(torch.sum((be.asarray(up) if up is not None else torch.ones_like(out)) * out))
    if terms:
        torch.stack(terms).sum().backward()

    def grad(t: Any) -> Any:
        g = getattr(t, "grad", None)
        return None if g is None else g.detach().to(torch.float64).numpy()

    return [grad(v) for _, v in trace], {k: grad(t) for k, t in leaves.items()}


def _status(name: str, manual: Any, autograd: Any, dtype: str, scale: float) -> str:
    """manual's d<name> against autograd's by the rule that judges inputs (their rounding bounds)."""
    if manual is None or autograd is None:
        return "unknown"
    m = np.asarray(manual, dtype=np.float64)
    a = np.asarray(autograd, dtype=np.float64)
    if m.shape != a.shape:
        return "wrong"
    sources = [Gradients("manual", {name: m}, dtype), Gradients("autograd", {name: a}, dtype)]
    big = float(np.max(np.abs(a[np.isfinite(a)]), initial=0.0))
    verdict = judge_input(name, sources, dtype, max(scale, big)).verdict
    return {"pass": "right", "fail": "wrong"}.get(verdict, "unknown")


def circuit(r: CaseResult) -> dict[str, Any] | None:
    """Nodes and wires of a program case at the point its table shows (None: not a program)."""
    case = r.case
    program = getattr(case.forward, "program", None)
    if program is None:
        return None
    point = {k: np.asarray(v, dtype=np.float64) for k, v in r.point.items()}
    be = NumpyBackend(r.dtype)
    trace: list[tuple[Any, Any]] = []
    with np.errstate(all="ignore"):
        values = case.forward.run({k: be.asarray(v) for k, v in point.items()}, be, trace)
        manual: dict[str, Any] = {}
        if getattr(case.backward, "program", None) is not None:
            assert case.backward is not None
            manual = case.backward.run({**values, **upstream_gradients(case, values, be)}, be)
    auto_steps: list[Any] = []
    auto_inputs: dict[str, Any] = {}
    if case.autograd_forward is case.forward:
        auto_steps, auto_inputs = _autograd_steps(case, point, r.dtype)
    by_input = {i.name: i for i in r.inputs}
    scale = max((float(np.max(np.abs(g[np.isfinite(g)]), initial=0.0)) for g in _input_grads(r)), default=0.0)

    nodes: list[dict[str, Any]] = []
    uses: list[tuple[str, str, str]] = []  # (name, producing node, consuming node), in program order
    produced: dict[str, str] = {}  # name -> the node whose value it now holds
    value_of: dict[str, tuple[Any, Any]] = {}  # producing node -> (forward value, autograd gradient)
    for name in point:
        nodes.append({"id": f"in_{name}", "kind": "input", "label": name, "line": None, "target": name})
        produced[name] = f"in_{name}"
        value_of[f"in_{name}"] = (point[name], auto_inputs.get(name))
    constants = set(getattr(case, "constants", {}) or {})
    for k, (s, value) in enumerate(trace):
        node = f"s{k}"
        nodes.append({"id": node, "kind": "step", "label": s.text, "line": s.line, "target": s.target})
        for name in _names_used(s):
            if name in produced:
                uses.append((name, produced[name], node))
            elif name in constants:
                if f"c_{name}" not in {n["id"] for n in nodes}:
                    nodes.append({"id": f"c_{name}", "kind": "constant", "label": name, "line": None, "target": name})
                uses.append((name, f"c_{name}", node))
        produced[s.target] = node
        value_of[node] = (value, auto_steps[k] if k < len(auto_steps) else None)
    for o in case.outputs:
        if o in produced:
            nodes.append({"id": f"out_{o}", "kind": "output", "label": o, "line": None, "target": o})
            uses.append((o, produced[o], f"out_{o}"))

    def label(name: str, tail: str) -> dict[str, Any]:
        if tail.startswith("c_"):  # a constant: no gradient flows back along it
            return {"name": name, "value": "", "grads": {}, "status": "none"}
        value, auto = value_of[tail]
        if name in by_input:
            i = by_input[name]
            grads = {src: short(g) for src, g in i.grads.items()}
            status = {"pass": "right", "fail": "wrong"}.get(i.verdict, "inconclusive")
        else:
            m = manual.get(f"d{name}")
            grads = {src: short(g) for src, g in (("manual", m), ("autograd", auto)) if g is not None}
            status = _status(name, m, auto, r.dtype, scale)
        return {"name": name, "value": short(value), "grads": grads, "status": status}

    # A value used by several statements is one wire that branches, as the course draws it:
    # its label once, on the wire into a junction, and plain branches from there.
    wires: list[dict[str, Any]] = []
    fanout: dict[tuple[str, str], list[str]] = {}
    for name, tail, head in uses:
        fanout.setdefault((name, tail), []).append(head)
    for (name, tail), heads in fanout.items():
        text = label(name, tail)
        if len(heads) == 1 or text["status"] == "none":
            wires += [{"from": tail, "to": head, **text} for head in heads]
            continue
        junction = f"j_{tail}_{name}"
        nodes.append({"id": junction, "kind": "junction", "label": "", "line": None, "target": name})
        wires.append({"from": tail, "to": junction, **text})
        wires += [{"from": junction, "to": head, **text, "branch": True} for head in heads]
    return {"nodes": nodes, "wires": wires, "point": r.samples.worst if r.samples else 0, "dtype": r.dtype}


def _input_grads(r: CaseResult) -> list[np.ndarray]:
    return [np.asarray(g, dtype=np.float64) for i in r.inputs for g in i.grads.values()]


def apply_blame(drawn: dict[str, Any], blame: Mapping[str, Any] | None) -> dict[str, Any]:
    """The circuit with issue 14's line blame on it: each intermediate's status from the blame
    (its ``d<name>`` judged right or wrong), and the blamed statement's node marked.

    A blamed line of the backward program names the forward node whose value's gradient it
    computes (``dsigx = ...`` blames the node that computes ``sigx``)."""
    if not blame or not drawn or "nodes" not in drawn:
        return drawn
    status = {str(i.get("name", "")): i.get("status") for i in blame.get("intermediates") or []}
    wires = []
    for w in drawn["wires"]:
        s = status.get(f"d{w['name']}")
        wires.append({**w, "status": s} if s in ("right", "wrong", "unknown") else w)
    target = _target_of(str(blame.get("statement", "")))
    line = blame.get("line")
    nodes = []
    for n in drawn["nodes"]:
        hit = n["kind"] == "step" and (n["line"] == line or (target is not None and f"d{n['target']}" == target))
        nodes.append({**n, "blamed": True} if hit else n)
    if not any(n.get("blamed") for n in nodes) and target is not None:
        nodes = [{**n, "blamed": True} if n["kind"] == "input" and f"d{n['target']}" == target else n for n in nodes]
    return {**drawn, "nodes": nodes, "wires": wires}


def _target_of(statement: str) -> str | None:
    try:
        tree = ast.parse(statement.strip())
    except SyntaxError:
        return None
    body = tree.body[0] if tree.body else None
    if isinstance(body, ast.Assign) and len(body.targets) == 1 and isinstance(body.targets[0], ast.Name):
        return body.targets[0].id
    if isinstance(body, ast.AugAssign) and isinstance(body.target, ast.Name):
        return body.target.id
    return None


# ---------------------------------------------------------------------------------------------
# heatmaps


def _grid(a: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """A 2-D view of ``a`` (leading axes as rows), pooled by max to at most MAX_CELLS a side."""
    a = np.asarray(a, dtype=np.float64)
    m = a.reshape(1, -1) if a.ndim <= 1 else a.reshape(-1, a.shape[-1])
    rows, cols = m.shape
    bh, bw = math.ceil(rows / MAX_CELLS), math.ceil(cols / MAX_CELLS)
    if bh == 1 and bw == 1:
        return m, (1, 1)
    R, C = math.ceil(rows / bh), math.ceil(cols / bw)
    padded = np.full((R * bh, C * bw), np.nan)
    padded[:rows, :cols] = m
    blocks = padded.reshape(R, bh, C, bw).transpose(0, 2, 1, 3).reshape(R, C, bh * bw)
    with np.errstate(all="ignore"):
        all_nan = np.all(np.isnan(blocks), axis=2)
        pooled = np.where(all_nan, np.nan, np.nanmax(np.where(np.isnan(blocks), -np.inf, blocks), axis=2))
    return pooled, (bh, bw)


def _cells(m: np.ndarray) -> list[list[float | None]]:
    return [[None if not math.isfinite(x) else float(x) for x in row] for row in m.tolist()]


def heatmaps(r: CaseResult) -> list[dict[str, Any]]:
    """Per array input, per pair: each element's difference over its tolerance (None: not
    compared, or undecided)."""
    out = []
    for i in r.inputs:
        if int(np.prod(i.shape)) <= 1:
            continue
        for p in i.pairs:
            if p.ratios is None or tuple(p.ratios.shape) != tuple(i.shape):
                continue  # a projection pair's ratios are per direction, not per element
            grid, block = _grid(p.ratios)
            out.append(
                {
                    "input": i.name,
                    "shape": list(i.shape),
                    "pair": p.name,
                    "cells": _cells(grid),
                    "block": list(block),
                    "worst": list(p.worst),
                    "ratio": float(p.ratio),
                    "disagree": int(p.disagree),
                }
            )
    return out


# ---------------------------------------------------------------------------------------------
# sweeps


def sweep(r: CaseResult) -> dict[str, Any] | None:
    s = r.samples
    if s is None:
        return None
    domain = dict(r.case.sweep.domain) if getattr(r.case, "sweep", None) and r.case.sweep else {}
    return {
        "verdicts": list(s.verdicts),
        "ratios": [float(x) if math.isfinite(x) else None for x in s.ratios],
        "coordinates": [dict(c) for c in s.coordinates],
        "worst": s.worst,
        "domain": {k: [float(lo), float(hi)] for k, (lo, hi) in domain.items()},
    }
