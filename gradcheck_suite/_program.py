"""The restricted statement language of forward and backward programs.

A program is parsed with :mod:`ast` and checked against a whitelist before anything runs:
assignments and ``+=``/``-=`` to plain names, arithmetic (``+ - * / ** @``, unary minus),
``.T``, numeric literals, the program's own names and calls to the functions in
``_backends.FUNCTIONS``. Evaluation walks the checked tree itself, so a case file can never
reach Python's ``eval``, an import or an attribute other than ``.T``.

Beyond arithmetic, the language has exactly these constructs:

* keyword arguments, only those ``_backends.KEYWORDS`` lists: ``axis`` (a static integer or
  tuple of them) and ``keepdims`` (``True``/``False``), e.g. ``sum(x, axis=0, keepdims=True)``;
* comparisons (``< <= > >= == !=``, one operator) only as the first argument of ``where``:
  ``where(x > 0, dout, 0)``. A mask never leaks out as a value of its own;
* indexing ``a[...]`` by static integers, slices with static bounds (``a[:, H:2 * H]``),
  ``None`` (a new axis), and integer arrays: a name (an integer constant such as class
  labels) or ``arange(n)``, e.g. ``scores[arange(N), y]``. Indexing only reads, never assigns;
* static integer expressions: integer literals, integer scalar constants, ``size(x, k)``,
  names assigned from those, combined with ``+ - * //``. Shapes (``reshape(x, (N, -1))``,
  ``reshape(g, shape(x))``), axes and lengths must be static, so no value of an array ever
  steers the program: it runs unchanged on numpy, on torch and inside ``torch.func.vmap``.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._backends import FUNCTIONS, KEYWORDS, NON_ANALYTIC, STATIC, Backend
from ._errors import CaseError, LimitError
from ._limits import DEFAULT_LIMITS, Limits

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
_STATIC_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.FloorDiv)
_COMPARE: dict[type[ast.cmpop], str] = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
}

_FORBIDDEN_WORDS = {
    ast.Lambda: "a lambda",
    ast.Import: "an import",
    ast.ImportFrom: "an import",
    ast.FunctionDef: "a function definition",
    ast.ClassDef: "a class definition",
    ast.Attribute: "attribute access",
    ast.Subscript: "indexing",
    ast.Slice: "a slice outside indexing",
    ast.Tuple: "a tuple outside a shape, an axis or an index",
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
    integers: frozenset[str] = frozenset()  # names holding static integers (known and assigned)
    limits: Limits = DEFAULT_LIMITS  # the integer and exponent caps evaluation enforces

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
                value = _Evaluator(values, backend, self.limits).eval(s.expr)
                if s.op == "=":
                    values[s.target] = backend.settle(value)
                elif s.op == "+=":
                    values[s.target] = backend.settle(values[s.target] + value)
                else:
                    values[s.target] = backend.settle(values[s.target] - value)
                if trace is not None:
                    trace.append((s, values[s.target]))
            except CaseError as exc:
                if exc.file is None and exc.line is None:  # a limit found while evaluating: place it here
                    exc.file, exc.line, exc.key = self.file, s.line, self.key
                    exc.message = f"`{s.text}`: {exc.message}"
                raise
            except (ValueError, RuntimeError, TypeError, IndexError, ArithmeticError) as exc:
                # ArithmeticError: ZeroDivisionError, and OverflowError from a Python float
                # (10.0 ** 400) or an integer too large for an axis or a shape
                raise self.error(f"`{s.text}` failed: {_short(exc)}", s.line) from None
            except (MemoryError, RecursionError) as exc:
                raise self.error(f"`{s.text}` failed: {type(exc).__name__}", s.line) from None
        return values


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "broadcast" in text or "must match" in text or "shape" in text or "size" in text:
        return f"shape mismatch: {text}"
    return text


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _python_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class _Evaluator:
    def __init__(self, env: Mapping[str, Any], backend: Backend, limits: Limits = DEFAULT_LIMITS) -> None:
        self.env = env
        self.b = backend
        self.limits = limits

    def _power(self, a: Any, b: Any) -> Any:
        """``a ** b``, refused before it runs when Python would compute a huge integer
        (``10 ** 10 ** 10`` never finishes) or the exponent is past --max-exponent."""
        lim = self.limits
        if _python_number(b) and abs(b) > lim.max_exponent:
            raise LimitError(f"exponent {b!r} is past --max-exponent {lim.max_exponent}")
        if _is_int(a) and _is_int(b) and b > 0 and abs(a) > 1:
            bits = b * math.log2(abs(a))
            if bits > math.log2(lim.max_integer) + 1:
                raise LimitError(f"{a} ** {b} is past --max-integer {lim.max_integer}")
        return a**b

    def _integer(self, v: Any) -> Any:
        if _is_int(v) and abs(v) > self.limits.max_integer:
            raise LimitError(f"the integer {v} is past --max-integer {self.limits.max_integer}")
        return v

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
                return self._integer(a + b)
            if op is ast.Sub:
                return self._integer(a - b)
            if op is ast.Mult:
                return self._integer(a * b)
            if op is ast.Div:
                return a / b
            if op is ast.Pow:
                return self._integer(self._power(a, b))
            if op is ast.FloorDiv:  # static integers only
                return a // b
            return self.b.matmul(a, b)
        if isinstance(node, ast.Attribute):  # only .T survives the checker
            return self.b.transpose(self.eval(node.value))
        if isinstance(node, ast.Tuple):  # a static shape or axes
            return tuple(self.eval(e) for e in node.elts)
        if isinstance(node, ast.Compare):  # only as where's condition
            a, b = self.eval(node.left), self.eval(node.comparators[0])
            return _compare(type(node.ops[0]), a, b)
        if isinstance(node, ast.Subscript):
            index = node.slice
            elts = index.elts if isinstance(index, ast.Tuple) else [index]
            key = tuple(self._index(e) for e in elts)
            return self.eval(node.value)[key if len(key) != 1 else key[0]]
        if isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Name)
            kwargs = {k.arg: self.eval(k.value) for k in node.keywords if k.arg is not None}
            return self.b.functions[node.func.id](*(self.eval(a) for a in node.args), **kwargs)
        raise AssertionError(f"unchecked node {ast.dump(node)}")  # the checker rejects it first

    def _index(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Slice):
            return slice(*(None if p is None else self.eval(p) for p in (node.lower, node.upper, node.step)))
        if isinstance(node, ast.Constant) and node.value is None:
            return None
        value = self.eval(node)
        return value if isinstance(value, int) else self.b.asindex(value)


def _compare(op: type[ast.cmpop], a: Any, b: Any) -> Any:
    if op is ast.Lt:
        return a < b
    if op is ast.LtE:
        return a <= b
    if op is ast.Gt:
        return a > b
    if op is ast.GtE:
        return a >= b
    if op is ast.Eq:
        return a == b
    return a != b


def parse_program(
    source: str,
    *,
    key: str,
    known: Iterable[str],
    file: Path | None = None,
    first_line: int = 1,
    integers: Iterable[str] = (),
    limits: Limits = DEFAULT_LIMITS,
) -> Program:
    """Parse and check ``source``; ``known`` are the names defined before it runs.

    ``integers`` are the known names that hold a Python integer (an integer scalar
    constant): they may size a shape, bound a slice or pick an axis.
    ``first_line`` is the case-file line of the program's first line, so every error
    points into the case file.
    """

    def err(message: str, lineno: int | None) -> CaseError:
        line = None if lineno is None else first_line + lineno - 1
        return CaseError(message, file=file, line=line, key=f"{key}")

    def limit(message: str, lineno: int | None) -> CaseError:
        return LimitError(message, file=file, line=None if lineno is None else first_line + lineno - 1, key=key)

    tree = _parse(source, limits, err, limit)
    if len(tree.body) > limits.max_statements:
        raise limit(
            f"the program has {len(tree.body)} statements, over --max-statements {limits.max_statements}",
            tree.body[limits.max_statements].lineno,
        )
    lines = source.splitlines()
    checker = _Checker(set(known), set(integers), err, limits, limit)
    statements: list[Statement] = []
    for node in tree.body:
        _check_depth(node, limits, limit)
        text = lines[node.lineno - 1].strip() if node.lineno - 1 < len(lines) else ""
        if isinstance(node, ast.Assign):
            if len(node.targets) != 1 or not isinstance(node.targets[0], ast.Name):
                raise err("only `name = expression` assignments are allowed", node.lineno)
            target, op, value = node.targets[0].id, "=", node.value
        elif isinstance(node, ast.AugAssign):
            if not isinstance(node.target, ast.Name) or type(node.op) not in _AUGOPS:
                raise err("only `name += expression` and `name -= expression` are allowed", node.lineno)
            target, op, value = node.target.id, _AUGOPS[type(node.op)], node.value
            if target not in checker.defined:
                raise err(f"`{target} {op} ...` before `{target}` is assigned", node.lineno)
        elif isinstance(node, ast.Expr):
            raise err("a statement must assign its value to a name", node.lineno)
        else:
            raise err(f"forbidden syntax: {_describe(node)} is not allowed", node.lineno)
        _check_name(target, node.lineno, err)
        # A name keeps its kind: reassigning an integer with an array would let data reach a shape.
        static = op == "=" and target not in checker.defined and checker.is_static(value)
        if not static and target in checker.integers:
            raise err(f"`{target}` holds a static integer and cannot be reassigned", node.lineno)
        checker.expr(value)
        checker.defined.add(target)
        if static:
            checker.integers.add(target)
        statements.append(Statement(target, op, value, first_line + node.lineno - 1, text))
    if not statements:
        raise err("the program is empty", 1)
    return Program(tuple(statements), file, key, frozenset(checker.used), frozenset(checker.integers), limits)


def _parse(source: str, limits: Limits, err: Any, limit: Any) -> ast.Module:
    """``ast.parse``, whose own failures on deep or huge input (RecursionError, MemoryError,
    "too many nested parentheses") become located errors."""
    try:
        return ast.parse(source, mode="exec")
    except SyntaxError as exc:
        raise err(f"syntax error: {exc.msg}", exc.lineno) from None
    except ValueError as exc:  # a NUL character
        raise err(f"syntax error: {exc}", None) from None
    except (RecursionError, MemoryError):
        raise limit(f"the program is nested too deeply to parse (--max-depth {limits.max_depth})", 1) from None


def _check_depth(statement: ast.stmt, limits: Limits, limit: Any) -> None:
    """Refuse an expression nested deeper than --max-depth, walking the tree without
    recursion, before the checker and the evaluator recurse into it."""
    stack: list[tuple[ast.AST, int]] = [(statement, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > limits.max_depth:
            raise limit(
                f"an expression nested {depth} deep, over --max-depth {limits.max_depth}",
                getattr(node, "lineno", statement.lineno),
            )
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


def _describe(node: ast.AST) -> str:
    for kind, words in _FORBIDDEN_WORDS.items():
        if isinstance(node, kind):
            return words
    return f"`{type(node).__name__}`"


def _check_name(name: str, lineno: int, err: Any) -> None:
    if name.startswith("_"):
        raise err(f"forbidden syntax: names starting with '_' (`{name}`) are not allowed", lineno)


class _Checker:
    """Walks one expression; ``integers`` are the names known to hold a static integer."""

    def __init__(
        self, defined: set[str], integers: set[str], err: Any, limits: Limits = DEFAULT_LIMITS, limit: Any = None
    ) -> None:
        self.defined = defined
        self.integers = integers
        self.used: set[str] = set()
        self.err = err
        self.limits = limits
        self.limit = limit or err

    def is_static(self, node: ast.expr) -> bool:
        """An integer computed without looking at any array's values."""
        if isinstance(node, ast.Constant):
            return isinstance(node.value, int) and not isinstance(node.value, bool)
        if isinstance(node, ast.Name):
            return node.id in self.integers
        if isinstance(node, ast.UnaryOp):
            return isinstance(node.op, (ast.USub, ast.UAdd)) and self.is_static(node.operand)
        if isinstance(node, ast.BinOp):
            return isinstance(node.op, _STATIC_BINOPS) and self.is_static(node.left) and self.is_static(node.right)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "size":
            return True
        return False

    def static(self, node: ast.expr, what: str, *, tuple_ok: bool = False) -> None:
        lineno = getattr(node, "lineno", None)
        if tuple_ok and isinstance(node, ast.Tuple):
            if not node.elts:
                raise self.err(f"{what} must not be an empty tuple", lineno)
            for e in node.elts:
                self.static(e, what)
            return
        if tuple_ok and isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "shape":
            self.call(node, shape_ok=True)
            return
        if not self.is_static(node):
            kinds = "an integer or a tuple of integers" if tuple_ok else "an integer"
            raise self.err(
                f"{what} must be {kinds} known before the program runs (literals, integer constants, size(x, k))",
                lineno,
            )
        self.expr(node, static_ok=True)

    def expr(self, node: ast.expr, *, static_ok: bool = False) -> None:
        err = self.err
        lineno = getattr(node, "lineno", None)
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise err(f"forbidden syntax: only numeric literals are allowed, not {node.value!r:.40}", lineno)
            if isinstance(node.value, int) and abs(node.value) > self.limits.max_integer:
                digits = len(str(abs(node.value)))
                raise self.limit(
                    f"an integer literal of {digits} digits is past --max-integer {self.limits.max_integer}", lineno
                )
            return
        if isinstance(node, ast.Name):
            _check_name(node.id, lineno or 0, err)
            if node.id not in self.defined and node.id in FUNCTIONS:
                raise err(f"`{node.id}` is a function; call it as `{node.id}(...)`", lineno)
            if node.id not in self.defined:
                raise err(f"name `{node.id}` is used before it is assigned", lineno)
            return
        if isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.USub, ast.UAdd)):
                raise err("forbidden syntax: only unary minus and plus are allowed", lineno)
            self.expr(node.operand, static_ok=static_ok)
            return
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.FloorDiv) and not static_ok and not self.is_static(node):
                raise err("forbidden syntax: `//` is only allowed between static integers", lineno)
            if type(node.op) not in _BINOPS and not isinstance(node.op, ast.FloorDiv):
                raise err(f"forbidden syntax: operator `{type(node.op).__name__}` is not allowed", lineno)
            self.expr(node.left, static_ok=static_ok)
            self.expr(node.right, static_ok=static_ok)
            return
        if isinstance(node, ast.Attribute):
            if node.attr != "T":
                raise err(f"forbidden syntax: attribute access (`.{node.attr}`) is not allowed; only `.T` is", lineno)
            self.expr(node.value)
            return
        if isinstance(node, ast.Subscript):
            self.expr(node.value)
            index = node.slice
            for e in index.elts if isinstance(index, ast.Tuple) else [index]:
                self.index(e)
            return
        if isinstance(node, ast.Compare):
            raise err("forbidden syntax: a comparison is only allowed as the condition of `where(cond, a, b)`", lineno)
        if isinstance(node, ast.Call):
            self.call(node)
            return
        raise err(f"forbidden syntax: {_describe(node)} is not allowed", lineno)

    def index(self, node: ast.expr) -> None:
        lineno = getattr(node, "lineno", None)
        if isinstance(node, ast.Slice):
            for part, what in ((node.lower, "a slice's start"), (node.upper, "a slice's stop"), (node.step, "a step")):
                if part is not None:
                    self.static(part, what)
            return
        if isinstance(node, ast.Constant) and node.value is None:
            return
        if self.is_static(node):
            self.expr(node, static_ok=True)
            return
        # Integer arrays index by name (labels, indices from [constants]) or as arange(n):
        # an index computed from differentiated values would be data-dependent control flow.
        if isinstance(node, ast.Name) or (
            isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "arange"
        ):
            self.expr(node)
            return
        raise self.err(
            "forbidden syntax: an index must be a static integer, a slice, None, an integer array's name or arange(n)",
            lineno,
        )

    def call(self, node: ast.Call, *, shape_ok: bool = False) -> None:
        err = self.err
        lineno = getattr(node, "lineno", None)
        if not isinstance(node.func, ast.Name):
            raise err(f"forbidden syntax: {_describe(node.func)} cannot be called", lineno)
        name = node.func.id
        _check_name(name, lineno or 0, err)
        if name not in FUNCTIONS:
            allowed = ", ".join(sorted(FUNCTIONS))
            raise err(f"unknown function `{name}` (allowed: {allowed})", lineno)
        if name == "shape" and not shape_ok:
            raise err("`shape(x)` is only allowed as the shape argument of `reshape`", lineno)
        allowed_kw = KEYWORDS.get(name, frozenset())
        seen: set[str] = set()
        for k in node.keywords:
            if k.arg is None:
                raise err("forbidden syntax: `**` arguments are not allowed", lineno)
            if k.arg not in allowed_kw:
                if not allowed_kw:
                    raise err(f"`{name}` takes no keyword arguments", lineno)
                raise err(f"`{name}` takes no keyword `{k.arg}` (allowed: {', '.join(sorted(allowed_kw))})", lineno)
            seen.add(k.arg)
            if k.arg == "keepdims":
                if not (isinstance(k.value, ast.Constant) and isinstance(k.value.value, bool)):
                    raise err("`keepdims` must be True or False", lineno)
            else:  # axis
                self.static(k.value, "`axis`", tuple_ok=True)
        lo, hi = FUNCTIONS[name]
        if not lo <= len(node.args) <= hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            raise err(f"`{name}` takes {want} argument(s), got {len(node.args)}", lineno)
        self.used.add(name)
        static = STATIC.get(name, frozenset())
        for i, a in enumerate(node.args):
            if isinstance(a, ast.Starred):
                raise err("forbidden syntax: star arguments are not allowed", lineno)
            if i in static:
                self.static(a, f"argument {i + 1} of `{name}`", tuple_ok=name in ("reshape", "transpose"))
            elif i == 0 and name == "where" and isinstance(a, ast.Compare):
                if len(a.ops) != 1 or type(a.ops[0]) not in _COMPARE:
                    raise err("the condition of `where` must be one comparison (< <= > >= == !=)", lineno)
                self.expr(a.left)
                self.expr(a.comparators[0])
            elif name == "where" and i == 0:
                raise err("the condition of `where` must be a comparison such as `x > 0`", lineno)
            else:
                self.expr(a)
