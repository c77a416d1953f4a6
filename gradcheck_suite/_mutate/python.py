"""Mutants of a backward written in Python, when its source is available.

The backward is the case's ``[backward]`` callable, or the ``backward`` of a
``torch.autograd.Function`` forward. Its module's source is parsed, one node inside the
function is edited (:mod:`edits`, plus the statement-level ``drop +=`` and ``+= to =``), and
the whole module is compiled from the edited tree and run as a fresh temporary module, so the
mutant calls the module's helpers and imports as the original does; the edited tree keeps
the file's line numbers. The original module is never touched.

``variable`` needs shapes, which Python source does not say: the original backward runs once
at the case's point under a tracer that records the shape each local first had and the line
where it first appeared; a name is swapped for another local of its shape and kind (``d...``
or not) that appeared on an earlier line.
"""

from __future__ import annotations

import ast
import copy
import inspect
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._case import Case
from .._sources.manual import run_programs
from .edits import axis_nodes, node_edits, replace_node
from .mutant import Mutant
from .program import MAX_SWAPS

__all__ = ["python_mutants", "python_target"]


@dataclass(frozen=True)
class Target:
    """The function to mutate and how to put a mutant of it into the case."""

    fn: Any  # the function object (for a Function: its backward)
    qualname: str
    owner: Any  # what the case holds: the function, or the autograd.Function class
    kind: str  # "backward" (a [backward] callable) or "function" (an autograd.Function's backward)


def python_target(case: Case) -> Target | str:
    """The Python backward of ``case``, or why there is none to mutate."""
    backward = case.backward
    if backward is None:
        return "no backward to mutate"
    if backward.program is not None:
        return "a program backward"  # program_mutants' job
    if backward.call is not None:
        fn = backward.call.fn
        return Target(fn, getattr(fn, "__qualname__", ""), fn, "backward")
    call = case.forward.call
    assert call is not None
    cls = call.fn
    return Target(cls.backward, f"{cls.__qualname__}.backward", cls, "function")


def _source(target: Target) -> tuple[str, Path, ast.Module, ast.FunctionDef] | str:
    fn = inspect.unwrap(target.fn)
    module = inspect.getmodule(fn)
    try:
        file = inspect.getsourcefile(fn)
        source = inspect.getsource(module) if module is not None else None
    except (OSError, TypeError):
        file, source = None, None
    if module is None or file is None or source is None:
        return f"the source of `{target.qualname}` is not available"
    tree = ast.parse(source, filename=file)
    node = _find(tree, target.qualname.split("."))
    if node is None:
        return f"`{target.qualname}` is not a plain function in {file}"
    return module.__name__, Path(file), tree, node


def _find(tree: ast.AST, parts: list[str]) -> ast.FunctionDef | None:
    body = getattr(tree, "body", [])
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == parts[0]:
            if len(parts) == 1:
                return node if isinstance(node, ast.FunctionDef) else None
            return _find(node, parts[1:])
    return None


class _Locals:
    """Shapes and first lines of a function's locals, recorded while it runs once."""

    def __init__(self, code: types.CodeType) -> None:
        self.code = code
        self.first: dict[str, int] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.values: dict[str, np.ndarray] = {}

    def tracer(self, frame: types.FrameType, event: str, arg: Any) -> Any:
        if frame.f_code is not self.code:
            return None
        if event in ("line", "return"):
            for name, value in frame.f_locals.items():
                if name in self.first:
                    continue
                a = _array(value)
                if a is not None:
                    self.first[name] = frame.f_lineno if event == "line" else frame.f_code.co_firstlineno
                    self.shapes[name] = a.shape
                    self.values[name] = a
        return self.tracer


def _array(value: Any) -> np.ndarray | None:
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.detach().to("cpu", torch.float64).numpy()
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return value
    return None


def trace_locals(case: Case, target: Target) -> _Locals:
    fn = inspect.unwrap(target.fn)
    recorder = _Locals(fn.__code__)
    previous = sys.gettrace()
    sys.settrace(recorder.tracer)
    try:
        run_programs(case, case.inputs, "float64")
    finally:
        sys.settrace(previous)
    return recorder


def _statements(fn: ast.FunctionDef) -> Iterator[ast.stmt]:
    """Every statement inside ``fn`` (not the docstring)."""
    for node in ast.walk(fn):
        if isinstance(node, ast.stmt) and node is not fn:
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                continue
            yield node


def _header(stmt: ast.stmt) -> str:
    text = ast.unparse(stmt).splitlines()
    return text[0] if text else ""


def _sites(fn: ast.FunctionDef, locals_: _Locals) -> Iterator[tuple[ast.stmt, ast.AST, str, ast.AST | None]]:
    """(statement, node, operator, replacement) for every edit inside ``fn``; replacement None
    drops the statement."""
    axis_ids = axis_nodes(fn)
    for stmt in _statements(fn):
        if isinstance(stmt, ast.AugAssign) and isinstance(stmt.op, (ast.Add, ast.Sub)):
            yield stmt, stmt, "drop +=", None
            assign = ast.Assign(targets=[stmt.target], value=stmt.value, lineno=stmt.lineno)
            yield stmt, stmt, "+= to =", ast.copy_location(assign, stmt)
            flipped = ast.AugAssign(
                target=stmt.target, op=ast.Sub() if isinstance(stmt.op, ast.Add) else ast.Add(), value=stmt.value
            )
            yield stmt, stmt, "flip sign", ast.copy_location(flipped, stmt)
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and _gradient_value(stmt.targets[0], stmt.value):
            negated = ast.UnaryOp(op=ast.USub(), operand=stmt.value)
            yield stmt, stmt.value, "flip sign", ast.copy_location(negated, stmt.value)

        def candidates(name: ast.Name, at: int = stmt.lineno) -> list[str]:
            return _swaps(locals_, name, at)

        for node in _own_nodes(stmt):
            for operator, new in node_edits(node, axis_ids, candidates):
                yield stmt, node, operator, new


def _gradient_value(target: ast.expr, value: ast.expr) -> bool:
    """A gradient computed from something (negating a fresh zeros array changes nothing)."""
    base = target.value if isinstance(target, ast.Subscript) else target
    if not (isinstance(base, ast.Name) and base.id.startswith("d")):
        return False
    if isinstance(value, ast.Call):
        func = value.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        return name not in ("zeros", "zeros_like", "empty", "empty_like")
    return not isinstance(value, ast.Tuple)


def _own_nodes(stmt: ast.stmt) -> Iterator[ast.AST]:
    """The nodes of ``stmt`` that belong to no statement nested inside it."""
    stack: list[ast.AST] = [stmt]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                continue
            yield child
            stack.append(child)


def _swaps(locals_: _Locals, node: ast.Name, line: int) -> list[str]:
    name = node.id
    if name not in locals_.shapes:
        return []
    kind = name.startswith("d")
    found = [
        n
        for n, first in locals_.first.items()
        if n != name and first < line and locals_.shapes[n] == locals_.shapes[name] and n.startswith("d") == kind
    ]
    found.sort(key=lambda n: -locals_.first[n])
    return found[:MAX_SWAPS]


def python_mutants(case: Case) -> tuple[list[Mutant], int, str | None, dict[str, np.ndarray]]:
    """The mutants of ``case``'s Python backward, how many were stillborn, why there are none
    when its source is not available, and the original's locals at the case's point."""
    target = python_target(case)
    if isinstance(target, str):
        return [], 0, target, {}
    found = _source(target)
    if isinstance(found, str):
        return [], 0, found, {}
    module_name, file, tree, fn_node = found
    locals_ = trace_locals(case, target)
    lines = file.read_text(encoding="utf-8").splitlines()
    values = dict(locals_.values)
    count = len(list(_sites(fn_node, locals_)))
    mutants: list[Mutant] = []
    stillborn = 0
    seen: set[tuple[int, str]] = set()
    for k in range(count):
        # each mutant edits a fresh copy of the module; its k-th site is the same edit
        fresh = copy.deepcopy(tree)
        fn_fresh = _find(fresh, target.qualname.split("."))
        assert fn_fresh is not None
        stmt, node, operator, new = list(_sites(fn_fresh, locals_))[k]
        original_text = lines[stmt.lineno - 1].strip() if stmt.lineno - 1 < len(lines) else _header(stmt)
        before = ast.unparse(stmt)
        reads = _names(stmt)
        swapped = (node.id, new.id) if isinstance(node, ast.Name) and isinstance(new, ast.Name) else None
        axes = _axes(fn_fresh, node, new) if operator == "axis" else None
        if new is None:
            replace_node(fresh, stmt, ast.copy_location(ast.Pass(), stmt))
            mutated_text, after = "", ""
        elif node is stmt:
            replace_node(fresh, stmt, new)
            mutated_text = after = _header(_as_stmt(new))
            after = ast.unparse(new)
        else:
            replace_node(fresh, node, new)
            mutated_text, after = _header(stmt), ast.unparse(stmt)
        if after == before or (stmt.lineno, mutated_text) in seen:
            continue
        seen.add((stmt.lineno, mutated_text))
        ast.fix_missing_locations(fresh)
        try:
            mutant = _load(fresh, file, module_name, target)
        except Exception:  # noqa: BLE001 - an edit that does not compile or import is stillborn
            stillborn += 1
            continue
        mutant_case = _with(case, target, mutant)
        where = _shown(file)
        mutants.append(
            Mutant(operator, where, stmt.lineno, original_text, mutated_text, mutant_case, reads, swapped, axes)
        )
    return mutants, stillborn, None, values


def _axes(fn: ast.FunctionDef, node: ast.AST, new: ast.AST | None) -> tuple[str, int, int] | None:
    """(array, old axis, new axis) of an `axis` edit, read before the edit is applied."""
    array = axis_nodes(fn).get(id(node))
    if array is None or not isinstance(node, ast.Constant) or not isinstance(new, ast.Constant):
        return None
    if not isinstance(node.value, int) or not isinstance(new.value, int):
        return None
    return array, node.value, new.value


def _shown(file: Path) -> str:
    """The module's path as a user would type it: relative to the working folder when inside."""
    try:
        return file.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return file.as_posix()


def _as_stmt(node: ast.AST) -> ast.stmt:
    assert isinstance(node, ast.stmt)
    return node


def _names(stmt: ast.stmt) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for n in _own_nodes(stmt):
        if isinstance(n, ast.Name):
            seen.setdefault(n.id, None)
    return tuple(seen)


_counter = [0]


def _load(tree: ast.Module, file: Path, module_name: str, target: Target) -> Any:
    """The mutated function (or Function class) from ``tree`` run as a fresh module."""
    _counter[0] += 1
    name = f"_gradcheck_mutant_{_counter[0]}"
    code = compile(tree, f"{file} (mutant)", "exec")
    module = types.ModuleType(name)
    module.__file__ = str(file)
    module.__package__ = module_name.rpartition(".")[0]
    sys.modules[name] = module  # dataclasses and typing look their module up while it runs
    try:
        exec(code, module.__dict__)  # noqa: S102 - the user's own module, edited in one node
    finally:
        del sys.modules[name]
    obj: Any = module
    parts = target.qualname.split(".")
    for part in parts if target.kind == "backward" else parts[:-1]:
        obj = getattr(obj, part)
    return obj


def _with(case: Case, target: Target, mutant: Any) -> Case:
    backward = case.backward
    assert backward is not None
    if target.kind == "backward":
        assert backward.call is not None
        return replace(case, backward=replace(backward, call=replace(backward.call, fn=mutant)))
    call = case.forward.call
    assert call is not None
    forward = replace(case.forward, call=replace(call, fn=mutant))
    return replace(case, forward=forward, backward=replace(backward, forward=forward))
