"""The restricted statement language of forward and backward programs.

A program is parsed with :mod:`ast` and checked against a whitelist before anything runs:
assignments and ``+=``/``-=`` to plain names, arithmetic (``+ - * / ** @``, unary minus),
``.T``, numeric literals, the program's own names and calls to the functions in
``_backends.FUNCTIONS``. Evaluation walks the checked tree itself, so a case file can never
reach Python's ``eval``, an import or an attribute other than ``.T``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._backends import FUNCTIONS, NON_ANALYTIC, Backend
from ._errors import CaseError

__all__ = ["Program", "Statement", "parse_program"]

_BINOPS: dict[type[ast.operator], str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.Pow: "**",
    ast.MatMult: "@",
}
_AUGOPS: dict[type[ast.operator], str] = {ast.Add: "+=", ast.Sub: "-="}

_FORBIDDEN_WORDS = {
    ast.Lambda: "a lambda",
    ast.Import: "an import",
    ast.ImportFrom: "an import",
    ast.FunctionDef: "a function definition",
    ast.ClassDef: "a class definition",
    ast.Attribute: "attribute access",
    ast.Subscript: "indexing",
    ast.ListComp: "a comprehension",
    ast.GeneratorExp: "a comprehension",
    ast.If: "an if statement",
    ast.IfExp: "a conditional expression",
    ast.For: "a loop",
    ast.While: "a loop",
    ast.Compare: "a comparison",
    ast.BoolOp: "a boolean operator",
    ast.Starred: "star arguments",
}


@dataclass(frozen=True)
class Statement:
    target: str
    op: str  # "=", "+=" or "-="
    expr: ast.expr
    line: int  # line in the case file
    text: str


@dataclass(frozen=True)
class Program:
    statements: tuple[Statement, ...]
    file: Path | None
    key: str  # "forward" or "backward"
    functions: frozenset[str]

    @property
    def assigned(self) -> list[str]:
        seen: dict[str, None] = {}
        for s in self.statements:
            seen.setdefault(s.target, None)
        return list(seen)

    @property
    def analytic(self) -> bool:
        """True when every function it calls is analytic (complex step applies, no kinks)."""
        return not (self.functions & NON_ANALYTIC)

    def error(self, message: str, line: int | None) -> CaseError:
        return CaseError(message, file=self.file, line=line, key=f"{self.key}")

    def run(
        self, env: Mapping[str, Any], backend: Backend, trace: list[tuple[Statement, Any]] | None = None
    ) -> dict[str, Any]:
        """Evaluate on ``backend``; returns the environment extended by every assignment.

        ``trace``, when given, receives each statement with the value its target then holds.
        """
        values = dict(env)
        for s in self.statements:
            try:
                value = _Evaluator(values, backend).eval(s.expr)
                if s.op == "=":
                    values[s.target] = value
                elif s.op == "+=":
                    values[s.target] = values[s.target] + value
                else:
                    values[s.target] = values[s.target] - value
                if trace is not None:
                    trace.append((s, values[s.target]))
            except CaseError:
                raise
            except (ValueError, RuntimeError, TypeError, IndexError, ZeroDivisionError) as exc:
                raise self.error(f"`{s.text}` failed: {_short(exc)}", s.line) from None
        return values


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "broadcast" in text or "must match" in text or "shape" in text or "size" in text:
        return f"shape mismatch: {text}"
    return text


class _Evaluator:
    def __init__(self, env: Mapping[str, Any], backend: Backend) -> None:
        self.env = env
        self.b = backend

    def eval(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return self.env[node.id]
        if isinstance(node, ast.UnaryOp):
            v = self.eval(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp):
            a, b = self.eval(node.left), self.eval(node.right)
            op = type(node.op)
            if op is ast.Add:
                return a + b
            if op is ast.Sub:
                return a - b
            if op is ast.Mult:
                return a * b
            if op is ast.Div:
                return a / b
            if op is ast.Pow:
                return a**b
            return self.b.matmul(a, b)
        if isinstance(node, ast.Attribute):  # only .T survives the checker
            return self.b.transpose(self.eval(node.value))
        if isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Name)
            return self.b.functions[node.func.id](*(self.eval(a) for a in node.args))
        raise AssertionError(f"unchecked node {ast.dump(node)}")  # the checker rejects it first


def parse_program(
    source: str,
    *,
    key: str,
    known: Iterable[str],
    file: Path | None = None,
    first_line: int = 1,
) -> Program:
    """Parse and check ``source``; ``known`` are the names defined before it runs.

    ``first_line`` is the case-file line of the program's first line, so every error
    points into the case file.
    """

    def err(message: str, lineno: int | None) -> CaseError:
        line = None if lineno is None else first_line + lineno - 1
        return CaseError(message, file=file, line=line, key=f"{key}")

    try:
        tree = ast.parse(source, mode="exec")
    except SyntaxError as exc:
        raise err(f"syntax error: {exc.msg}", exc.lineno) from None

    lines = source.splitlines()
    defined = set(known)
    used_functions: set[str] = set()
    statements: list[Statement] = []
    for node in tree.body:
        text = lines[node.lineno - 1].strip() if node.lineno - 1 < len(lines) else ""
        if isinstance(node, ast.Assign):
            if len(node.targets) != 1 or not isinstance(node.targets[0], ast.Name):
                raise err("only `name = expression` assignments are allowed", node.lineno)
            target, op, value = node.targets[0].id, "=", node.value
        elif isinstance(node, ast.AugAssign):
            if not isinstance(node.target, ast.Name) or type(node.op) not in _AUGOPS:
                raise err("only `name += expression` and `name -= expression` are allowed", node.lineno)
            target, op, value = node.target.id, _AUGOPS[type(node.op)], node.value
            if target not in defined:
                raise err(f"`{target} {op} ...` before `{target}` is assigned", node.lineno)
        elif isinstance(node, ast.Expr):
            raise err("a statement must assign its value to a name", node.lineno)
        else:
            raise err(f"forbidden syntax: {_describe(node)} is not allowed", node.lineno)
        _check_name(target, node.lineno, err)
        _check_expr(value, defined, used_functions, err)
        defined.add(target)
        statements.append(Statement(target, op, value, first_line + node.lineno - 1, text))
    if not statements:
        raise err("the program is empty", 1)
    return Program(tuple(statements), file, key, frozenset(used_functions))


def _describe(node: ast.AST) -> str:
    for kind, words in _FORBIDDEN_WORDS.items():
        if isinstance(node, kind):
            return words
    return f"`{type(node).__name__}`"


def _check_name(name: str, lineno: int, err: Any) -> None:
    if name.startswith("_"):
        raise err(f"forbidden syntax: names starting with '_' (`{name}`) are not allowed", lineno)


def _check_expr(node: ast.expr, defined: set[str], used: set[str], err: Any) -> None:
    lineno = getattr(node, "lineno", None)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise err(f"forbidden syntax: only numeric literals are allowed, not {node.value!r}", lineno)
        return
    if isinstance(node, ast.Name):
        _check_name(node.id, lineno or 0, err)
        if node.id not in defined and node.id in FUNCTIONS:
            raise err(f"`{node.id}` is a function; call it as `{node.id}(...)`", lineno)
        if node.id not in defined:
            raise err(f"name `{node.id}` is used before it is assigned", lineno)
        return
    if isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, (ast.USub, ast.UAdd)):
            raise err("forbidden syntax: only unary minus and plus are allowed", lineno)
        _check_expr(node.operand, defined, used, err)
        return
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _BINOPS:
            raise err(f"forbidden syntax: operator `{type(node.op).__name__}` is not allowed", lineno)
        _check_expr(node.left, defined, used, err)
        _check_expr(node.right, defined, used, err)
        return
    if isinstance(node, ast.Attribute):
        if node.attr != "T":
            raise err(f"forbidden syntax: attribute access (`.{node.attr}`) is not allowed; only `.T` is", lineno)
        _check_expr(node.value, defined, used, err)
        return
    if isinstance(node, ast.Call):
        if isinstance(node.func, ast.Attribute):
            raise err(f"forbidden syntax: attribute access (`.{node.func.attr}(...)`) is not allowed", lineno)
        if not isinstance(node.func, ast.Name):
            raise err(f"forbidden syntax: {_describe(node.func)} cannot be called", lineno)
        name = node.func.id
        _check_name(name, lineno or 0, err)
        if name not in FUNCTIONS:
            allowed = ", ".join(sorted(FUNCTIONS))
            raise err(f"unknown function `{name}` (allowed: {allowed})", lineno)
        if node.keywords:
            raise err(f"`{name}` takes no keyword arguments", lineno)
        lo, hi = FUNCTIONS[name]
        if not lo <= len(node.args) <= hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            raise err(f"`{name}` takes {want} argument(s), got {len(node.args)}", lineno)
        used.add(name)
        for a in node.args:
            if isinstance(a, ast.Starred):
                raise err("forbidden syntax: star arguments are not allowed", lineno)
            _check_expr(a, defined, used, err)
        return
    raise err(f"forbidden syntax: {_describe(node)} is not allowed", lineno)
