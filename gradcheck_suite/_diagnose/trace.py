"""The two sides line blame compares, one line at a time.

* :func:`forward_trace`: the forward program run on torch (float64), every statement's result
  kept as its own graph node, so one backward pass of phi = sum(upstream * output) gives
  autograd's gradient with respect to every forward variable, and each statement's local
  vector-Jacobian product gives the *edge* contributions: how much of a variable's gradient
  flows through each statement that reads it (the terms a ``d<name> += ...`` line adds).
* :func:`backward_steps`: the backward program run on numpy (float64) one statement at a time,
  keeping each statement's term and the value its target holds afterwards; a statement's
  result may be overridden on the way (line blame's repair test).

Both run at one point in float64: blame asks which line of the derivation is wrong, which the
check's dtype does not change.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from .._backends import NumpyBackend, TorchBackend
from .._case import Case
from .._case_callables import bind_constants
from .._program import Program, Statement
from .._sources.manual import run_forward, upstream_gradients

__all__ = ["BackwardSteps", "Edge", "ForwardTrace", "backward_steps", "forward_trace", "names_read"]

_TERM = "_term"  # no program name starts with '_', so this one never collides


@dataclass(frozen=True)
class Edge:
    """The part of a variable's gradient that flows through one forward statement reading it."""

    statement: Statement
    value: np.ndarray


@dataclass
class ForwardTrace:
    grads: dict[str, np.ndarray]  # input or forward variable -> d phi / d it
    edges: dict[str, list[Edge]]  # the same names -> contribution through each statement reading them
    reassigned: frozenset[str]  # forward names assigned twice: which value d<name> means is ambiguous


@dataclass
class BackwardSteps:
    values: list[np.ndarray | None]  # the target's value after each statement (None: not an array)
    terms: list[np.ndarray | None]  # each statement's expression, negated for -=
    final: dict[str, Any]  # the environment after the last statement


def names_read(statement: Statement) -> list[str]:
    """Names a statement reads, in order, without repeats (an accumulation also reads its target)."""
    seen: dict[str, None] = {}
    if statement.op != "=":
        seen[statement.target] = None
    for node in ast.walk(statement.expr):
        if isinstance(node, ast.Name):
            seen.setdefault(node.id, None)
    return list(seen)


def _one(program: Program, statement: Statement) -> Program:
    return replace(program, statements=(statement,))


def _node(value: Any) -> Any:
    """A statement's result as a graph node of its own (``a = b`` must not share b's node)."""
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        return value
    node = value.view_as(value) if value.requires_grad else value.detach().requires_grad_(True)
    if not node.is_leaf:
        node.retain_grad()
    return node


def _as_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float64).numpy()
    return np.asarray(value, dtype=np.float64)


def forward_trace(case: Case, point: Mapping[str, np.ndarray]) -> ForwardTrace:
    program = case.forward.program
    assert program is not None
    be = TorchBackend(torch.float64)
    leaves = {k: be.asarray(v).requires_grad_(True) for k, v in point.items()}
    values: dict[str, Any] = {**bind_constants(case.forward.constants, be), **leaves}
    steps: list[tuple[Statement, dict[str, Any], Any]] = []
    for s in program.statements:
        before = values
        values = _one(program, s).run(before, be)
        values[s.target] = _node(values[s.target])
        steps.append((s, before, values[s.target]))
    phi = []
    for o in case.outputs:
        out = values.get(o)
        if isinstance(out, torch.Tensor) and out.requires_grad:
            up = case.upstreams.get(o)
            phi.append(torch.sum((be.asarray(up) if up is not None else torch.ones_like(out)) * out))
    if phi:
        torch.stack(phi).sum().backward()
    counts: dict[str, int] = {}
    for s in program.statements:
        counts[s.target] = counts.get(s.target, 0) + 1
    nodes = {**leaves, **{s.target: node for s, _, node in steps}}
    grads = {
        name: _as_numpy(node.grad) if node.grad is not None else np.zeros(tuple(node.shape))
        for name, node in nodes.items()
        if isinstance(node, torch.Tensor) and node.is_floating_point()
    }
    edges: dict[str, list[Edge]] = {}
    for s, before, node in steps:
        if not isinstance(node, torch.Tensor) or node.grad is None:
            continue
        # only the names whose node here is their final one: d<name> means that node
        reads = [
            n
            for n in names_read(s)
            if isinstance(before.get(n), torch.Tensor)
            and before[n].is_floating_point()
            and before[n].requires_grad
            and nodes.get(n) is before[n]
        ]
        if not reads:
            continue
        local = {n: before[n].detach().requires_grad_(True) for n in reads}
        out = _one(program, s).run({**before, **local}, be)[s.target]
        if not isinstance(out, torch.Tensor) or not out.requires_grad:
            continue
        # a scalar to differentiate, not grad_outputs: those make torch import sympy (0.4 s)
        parts = torch.autograd.grad(torch.sum(out * node.grad), list(local.values()), allow_unused=True)
        for n, g in zip(local, parts, strict=True):
            if g is not None:
                edges.setdefault(n, []).append(Edge(s, _as_numpy(g)))
    reassigned = frozenset(n for n, c in counts.items() if c > 1)
    return ForwardTrace(grads, edges, reassigned)


def backward_steps(
    case: Case,
    point: Mapping[str, np.ndarray],
    override: tuple[int, np.ndarray] | None = None,
    forward: Mapping[str, Any] | None = None,
) -> BackwardSteps:
    """The backward program at ``point``; ``override = (k, value)`` sets statement k's target
    to ``value`` right after statement k runs. ``forward``: the forward's float64 values at
    ``point`` when they are known already (a rerun needs not recompute them)."""
    backward = case.backward
    assert backward is not None and backward.program is not None
    program = backward.program
    be = NumpyBackend("float64")
    values = dict(forward) if forward is not None else run_forward(case, point)
    env: dict[str, Any] = {
        **bind_constants(backward.constants, be),
        **values,
        **upstream_gradients(case, values, be),
    }
    after: list[np.ndarray | None] = []
    terms: list[np.ndarray | None] = []
    for k, s in enumerate(program.statements):
        term = _one(program, replace(s, op="=", target=_TERM)).run(env, be)[_TERM]
        env = dict(env)
        if s.op == "=":
            env[s.target] = term
        elif s.op == "+=":
            env[s.target] = env[s.target] + term
        else:
            env[s.target] = env[s.target] - term
        if override is not None and override[0] == k:
            env[s.target] = override[1]
        after.append(_array(env[s.target]))
        signed = _array(term)
        terms.append(-signed if signed is not None and s.op == "-=" else signed)
    return BackwardSteps(after, terms, env)


def _array(value: Any) -> np.ndarray | None:
    if isinstance(value, (int, tuple)) and not isinstance(value, bool):
        return None  # a static integer or a shape
    a = np.asarray(value)
    return a.astype(np.float64) if a.dtype.kind in "fiub" else None
