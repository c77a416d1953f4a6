"""Mutants of a backward program: one edit of one statement each (see :mod:`edits`).

A mutant is checked by the program language's own parser before it is used, so a mutant
that is no program (a static integer swapped for an array, say) is *stillborn* and counted
apart, never run. ``variable`` swaps a name for another of the same shape and the same kind
(a gradient ``d...`` for a gradient, a value for a value) defined before the statement, the
nearest ones first.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace

import numpy as np

from .._backends import FUNCTIONS
from .._case import Case
from .._errors import CaseError
from .._program import Program, Statement, parse_program
from .._sources.manual import run_programs
from .edits import axis_change, expression_edits
from .mutant import Mutant

__all__ = ["program_context", "program_mutants"]

# a name read at a statement may be swapped for at most this many others (nearest first)
MAX_SWAPS = 6


@dataclass(frozen=True)
class _Context:
    known: list[str]
    integers: list[str]
    shapes: Mapping[str, tuple[int, ...]]
    order: Mapping[str, int]  # name -> where it is defined: -1 before the backward, else statement index
    gradients: frozenset[str]


def program_context(case: Case) -> _Context:
    """The names a backward program may read, their shapes at the case's point, and kinds."""
    backward = case.backward
    assert backward is not None and backward.program is not None
    consts = [k for k, v in case.constants.items() if not isinstance(v, dict)]
    douts = [f"d{o}" for o in case.outputs]
    known = [*case.inputs, *consts, *case.forward.assigned, *douts]
    integers = [k for k, v in case.constants.items() if isinstance(v, int)]
    if case.forward.program is not None:
        integers += list(case.forward.program.integers)
    values = run_programs(case, case.inputs, "float64")
    shapes: dict[str, tuple[int, ...]] = {}
    for name, value in values.items():
        if isinstance(value, (int, dict, tuple)) or name in integers:
            continue
        a = np.asarray(value)
        if a.dtype.kind == "f":
            shapes[name] = a.shape
    order: dict[str, int] = {n: -1 for n in known}
    for k, s in enumerate(backward.program.statements):
        order.setdefault(s.target, k)
    gradients = frozenset([*douts, *(s.target for s in backward.program.statements if s.target.startswith("d"))])
    return _Context(known, integers, shapes, order, gradients)


def _swaps(ctx: _Context, k: int, name: str) -> list[str]:
    if name not in ctx.shapes or name in FUNCTIONS:
        return []
    kind = name in ctx.gradients
    found = [
        n
        for n, at in ctx.order.items()
        if n != name and at < k and ctx.shapes.get(n) == ctx.shapes[name] and (n in ctx.gradients) == kind
    ]
    found.sort(key=lambda n: -ctx.order[n])  # the nearest definitions first
    return found[:MAX_SWAPS]


def _statement_edits(s: Statement, ctx: _Context, k: int) -> Iterator[tuple[str, str | None, ast.expr | None]]:
    """(operator, new op or None to drop, new expression)."""
    if s.op != "=":
        yield "drop +=", None, None
        yield "+= to =", "=", s.expr
        yield "flip sign", "-=" if s.op == "+=" else "+=", s.expr
    for operator, expr in expression_edits(s.expr, lambda node: _swaps(ctx, k, node.id)):
        yield operator, s.op, expr


def _text(target: str, op: str, expr: ast.expr) -> str:
    return f"{target} {op} {ast.unparse(expr)}"


def _reads(*exprs: ast.expr | None) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for e in exprs:
        if e is None:
            continue
        for node in ast.walk(e):
            if isinstance(node, ast.Name) and node.id not in FUNCTIONS:
                seen.setdefault(node.id, None)
    return tuple(seen)


def _swapped(original: ast.expr, mutated: ast.expr) -> tuple[str, str] | None:
    a = [n.id for n in ast.walk(original) if isinstance(n, ast.Name)]
    b = [n.id for n in ast.walk(mutated) if isinstance(n, ast.Name)]
    diff = [(x, y) for x, y in zip(a, b, strict=False) if x != y]
    return diff[0] if len(diff) == 1 and len(a) == len(b) else None


def program_mutants(case: Case, only: Iterable[int] | None = None) -> tuple[list[Mutant], int]:
    """The mutants of ``case``'s backward program (of the statements ``only`` lists, else all)
    and how many were stillborn."""
    backward = case.backward
    assert backward is not None and backward.program is not None
    program = backward.program
    ctx = program_context(case)
    wanted = set(range(len(program.statements))) if only is None else set(only)
    mutants: list[Mutant] = []
    seen: set[tuple[int, str]] = set()
    stillborn = 0
    for k, s in enumerate(program.statements):
        if k not in wanted:
            continue
        for operator, op, expr in _statement_edits(s, ctx, k):
            text = "" if op is None or expr is None else _text(s.target, op, expr)
            if (k, text) in seen or text == _text(s.target, s.op, s.expr):
                continue
            seen.add((k, text))
            try:
                new_program = _rebuild(program, k, op, expr, ctx)
            except CaseError:
                stillborn += 1
                continue
            mutant_case = replace(case, backward=replace(backward, program=new_program))
            swapped = _swapped(s.expr, expr) if operator == "variable" and expr is not None else None
            axes = axis_change(s.expr, expr) if operator == "axis" and expr is not None else None
            file = (program.file or case.file).as_posix()
            reads = _reads(s.expr, expr)
            mutants.append(Mutant(operator, file, s.line, s.text, text, mutant_case, reads, swapped, axes))
    return mutants, stillborn


def _rebuild(program: Program, k: int, op: str | None, expr: ast.expr | None, ctx: _Context) -> Program:
    """The program with statement k replaced (or dropped), through the language's own checks."""
    first = program.statements[0].line
    last = program.statements[-1].line
    lines = [""] * (last - first + 1)
    for j, s in enumerate(program.statements):
        if j == k:
            lines[s.line - first] = "" if op is None or expr is None else _text(s.target, op, expr)
        else:
            lines[s.line - first] = _text(s.target, s.op, s.expr)
    checked = parse_program(
        "\n".join(lines),
        key=program.key,
        known=ctx.known,
        file=program.file,
        first_line=first,
        integers=ctx.integers,
    )
    # the untouched statements keep the case file's own text
    by_line = {s.line: s for j, s in enumerate(program.statements) if j != k}
    statements = tuple(by_line.get(s.line, s) for s in checked.statements)
    return replace(checked, statements=statements)
