"""The small edits a mutant makes, on a Python AST: a program statement's expression or a
callable's source alike.

Each operator is a bug people write by hand:

==================  ==========================================================================
operator            edit
==================  ==========================================================================
``drop +=``         an accumulation line left out (the notebook's warning)
``+= to =``         an accumulation that overwrites (cs231n's max-pool backward)
``flip sign``       ``+`` and ``-`` swapped, a unary minus dropped, a whole term negated
``drop .T``         a transpose left out
``constant``        a numeric literal changed (``c`` to ``c + 1``)
``axis``            another axis (``axis=``, ``axes=``, ``x.shape[k]``, ``size(x, k)``)
``variable``        another variable of the same shape read instead
==================  ==========================================================================

:func:`expression_edits` yields every single edit of one expression as ``(operator, new
expression)``; the callers add the statement-level ones (``drop +=``, ``+= to =``).
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Callable, Collection, Iterator

__all__ = ["OPERATORS", "axis_change", "axis_nodes", "expression_edits", "negate", "node_edits", "replace_node"]

OPERATORS = ("drop +=", "+= to =", "flip sign", "drop .T", "constant", "axis", "variable")
AXIS_KEYWORDS = frozenset({"axis", "axes", "dim"})

# name of a variable read at some node -> the other variables of its shape it may be swapped for
Candidates = Callable[[ast.Name], list[str]]


def negate(expr: ast.expr) -> ast.expr:
    """``-(expr)``, or ``expr``'s operand when it already is a negation."""
    if isinstance(expr, ast.UnaryOp) and isinstance(expr.op, ast.USub):
        return expr.operand
    return ast.copy_location(ast.UnaryOp(op=ast.USub(), operand=expr), expr)


def replace_node(root: ast.AST, old: ast.AST, new: ast.AST) -> ast.AST:
    """``root`` with ``old`` (a node inside it, or root itself) replaced by ``new``."""
    if root is old:
        return new
    for parent in ast.walk(root):
        for name, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, name, new)
                return root
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if item is old:
                        value[i] = new
                        return root
    raise ValueError("node not found")


def axis_nodes(root: ast.AST) -> dict[int, str | None]:
    """The nodes that name an axis, by id, with the array whose axis it is (None: unknown):
    inside ``axis=``/``axes=`` keywords, ``x.shape[k]`` and ``size(x, k)``. `axis` edits them,
    not `constant`."""
    inside: dict[int, str | None] = {}
    for node in ast.walk(root):
        if isinstance(node, ast.Call):
            first = node.args[0] if node.args else None
            array = first.id if isinstance(first, ast.Name) else None
            for k in node.keywords:
                if k.arg in AXIS_KEYWORDS:
                    inside.update((id(n), array) for n in ast.walk(k.value))
            if isinstance(node.func, ast.Name) and node.func.id == "size" and len(node.args) == 2:
                inside[id(node.args[1])] = array
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "shape"
            and _is_number(node.slice)
        ):
            owner = node.value.value
            inside[id(node.slice)] = owner.id if isinstance(owner, ast.Name) else None
    return inside


def axis_change(original: ast.AST, mutated: ast.AST) -> tuple[str, int, int] | None:
    """(array, old axis, new axis) when ``mutated`` is ``original`` with one axis of a named
    array changed, else None."""
    a_axes, b_axes = axis_nodes(original), axis_nodes(mutated)
    a_nodes = [n for n in ast.walk(original) if id(n) in a_axes]
    b_nodes = [n for n in ast.walk(mutated) if id(n) in b_axes]
    if len(a_nodes) != len(b_nodes):
        return None
    for x, y in zip(a_nodes, b_nodes, strict=True):
        if isinstance(x, ast.Constant) and isinstance(y, ast.Constant) and x.value != y.value:
            array = a_axes[id(x)]
            if array is None or not isinstance(x.value, int) or not isinstance(y.value, int):
                return None
            return array, x.value, y.value
    return None


def _is_number(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) in (int, float)


def _axis_values(value: int) -> list[int]:
    return [v for v in (value + 1, value - 1) if v >= 0] if value >= 0 else [value - 1, value + 1]


def node_edits(
    node: ast.AST, axis_ids: Collection[int], candidates: Candidates | None
) -> Iterator[tuple[str, ast.AST]]:
    """Every replacement of ``node`` itself, as ``(operator, new node)``."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
        new_op: ast.operator = ast.Sub() if isinstance(node.op, ast.Add) else ast.Add()
        yield "flip sign", ast.copy_location(ast.BinOp(left=node.left, op=new_op, right=node.right), node)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        yield "flip sign", node.operand
    elif isinstance(node, ast.Attribute) and node.attr == "T":
        yield "drop .T", node.value
    elif _is_number(node) and id(node) in axis_ids:
        assert isinstance(node, ast.Constant)
        if isinstance(node.value, int) and not isinstance(node.value, bool):
            for v in _axis_values(node.value):
                yield "axis", ast.copy_location(ast.Constant(v), node)
    elif isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and _is_number(node):
        yield "constant", ast.copy_location(ast.Constant(node.value + 1), node)
    elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and candidates is not None:
        for other in candidates(node):
            yield "variable", ast.copy_location(ast.Name(id=other, ctx=ast.Load()), node)


def expression_edits(expr: ast.expr, candidates: Candidates | None = None) -> Iterator[tuple[str, ast.expr]]:
    """Each single edit of ``expr`` (a fresh copy each time), the whole term negated first."""
    yield "flip sign", negate(copy.deepcopy(expr))
    originals = list(ast.walk(expr))
    for k, original in enumerate(originals):
        count = len(list(node_edits(original, axis_nodes(expr), candidates)))
        for e in range(count):
            fresh = copy.deepcopy(expr)
            node = list(ast.walk(fresh))[k]
            operator, new = list(node_edits(node, axis_nodes(fresh), candidates))[e]
            result = replace_node(fresh, node, new)
            assert isinstance(result, ast.expr)
            yield operator, result
