"""Static shapes: a case's programs run once on torch "meta" tensors before anything real runs.

A meta tensor has a shape and a dtype but no storage, so this pass computes the shape of every
intermediate (``x @ x.T``, ``one_hot(y, 10 ** 9)``, ``arange(n)``) without allocating it, and
refuses a case whose arrays would be larger than ``--max-elements``, or whose values at one
point would together hold more than HELD times that, with the statement's file and line. Programs only:
a Python callable's shapes are unknown until it runs (the timeout bounds it instead).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from ._backends import Backend, TorchBackend
from ._case import Case
from ._errors import CaseError, LimitError
from ._limits import Limits

__all__ = ["HELD", "check_shapes", "meta_check"]

# The values the programs keep at one point (every statement's result stays in scope) may
# together hold this many times --max-elements: 1 GiB of float64 at the default.
HELD = 8


class _SizeGuard(TorchFunctionMode):
    """Refuses every torch result (a whole statement's or an operand's inside it) that holds
    more than ``max_elements`` elements."""

    def __init__(self, limits: Limits) -> None:
        super().__init__()
        self.limits = limits

    def __torch_function__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.numel() > self.limits.max_elements:
                raise LimitError(
                    f"an intermediate of shape {list(t.shape)} holds {t.numel()} elements,"
                    f" over --max-elements {self.limits.max_elements}"
                )
        return out


def _meta(shape: tuple[int, ...]) -> torch.Tensor:
    return torch.empty(shape, dtype=torch.float64, device="meta")


def _held(values: Mapping[str, Any]) -> int:
    return sum(v.numel() for v in values.values() if isinstance(v, torch.Tensor))


def check_shapes(case: Case, limits: Limits) -> None:
    """Raise LimitError, located at the statement, when a program of ``case`` would build an
    array past the limits; every other failure is left to the real run to report."""
    if case.forward.program is None or _proven_small(case, limits):
        return
    meta_check(case, limits)


def meta_check(case: Case, limits: Limits) -> None:
    """The programs of ``case`` on meta tensors (check_shapes without its shortcut)."""
    be = TorchBackend(torch.float64, "meta")
    env = {k: _meta(tuple(v.shape)) for k, v in case.inputs.items()}
    try:
        with _SizeGuard(limits):
            values = case.forward.run(env, be)
            if case.reference is not None and case.reference.program is not None:
                case.reference.run(env, be)
            if case.backward is not None and case.backward.program is not None:
                douts = {f"d{o}": _meta(tuple(be._t(values[o]).shape)) for o in case.outputs if o in values}
                values = case.backward.run({**values, **douts}, be)
    except LimitError:
        raise
    except (CaseError, RuntimeError, ValueError, TypeError, IndexError, KeyError):
        # a shape error or an operation meta tensors lack: the real run reports or does it
        return
    held = _held(values)
    if held > HELD * limits.max_elements:
        raise LimitError(
            f"the programs hold {held} elements at one point, over {HELD} x --max-elements {limits.max_elements}",
            file=case.file,
            key="forward",
            case=case.name,
        )


# -- a proof without torch: shapes alone ------------------------------------------------------
#
# The meta pass needs torch's Python reference kernels, and their first call imports
# torch._dynamo (0.3 to 1.8 s on the project's machine: more than the rest of a run of the five
# seed cases). Most programs need no meta tensors to be proven small: walking their statements
# with shapes alone (numpy's broadcasting and reduction rules, exact Python integers for the
# static arguments) finds every intermediate's size. Where this walk is sure that every value
# is within the limits, the meta pass is skipped; anything it does not model (an advanced index
# other than a plain gather, an unexpected argument, any error) leaves the decision to the
# meta pass, which also words every refusal.


class _Unsure(Exception):
    """The shape walk cannot decide: the meta pass will."""


def _broadcast(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise _Unsure from None


class _Shape:
    """An array of which only the shape is known."""

    __array_priority__ = 1000  # numpy scalars defer to these operators

    def __init__(self, shape: tuple[int, ...], limit: int) -> None:
        self.shape = tuple(int(d) for d in shape)
        self.limit = limit
        if math.prod(self.shape) > limit:
            raise _Unsure  # the meta pass refuses it, with the statement's line

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def _new(self, shape: tuple[int, ...]) -> _Shape:
        return _Shape(shape, self.limit)

    def _binary(self, other: Any) -> _Shape:
        if isinstance(other, _Shape):
            return self._new(_broadcast(self.shape, other.shape))
        if isinstance(other, (int, float)) and not isinstance(other, bool):
            return self
        raise _Unsure

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _binary
    __truediv__ = __rtruediv__ = __pow__ = __rpow__ = __floordiv__ = _binary
    __lt__ = __le__ = __gt__ = __ge__ = _binary  # type: ignore[assignment]
    __eq__ = __ne__ = _binary  # type: ignore[assignment]
    __hash__ = None  # type: ignore[assignment]

    def __neg__(self) -> _Shape:
        return self

    def __matmul__(self, other: Any) -> _Shape:
        if not isinstance(other, _Shape):
            raise _Unsure
        return self._new(_matmul(self.shape, other.shape))

    def __getitem__(self, key: Any) -> _Shape:
        keys = key if isinstance(key, tuple) else (key,)
        if any(isinstance(k, _Shape) for k in keys):
            # a plain gather: every key an index array or an integer, none of them a slice
            if not all(isinstance(k, (_Shape, int)) for k in keys) or len(keys) > len(self.shape):
                raise _Unsure
            index = _broadcast(*(k.shape if isinstance(k, _Shape) else () for k in keys))
            return self._new(index + self.shape[len(keys) :])
        try:  # basic indexing on a view of the shape that holds no memory
            view = np.lib.stride_tricks.as_strided(np.zeros(1), self.shape, (0,) * len(self.shape))
            return self._new(view[key].shape)
        except (IndexError, TypeError, ValueError):
            raise _Unsure from None


def _matmul(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    if not a or not b:
        raise _Unsure
    left = a if len(a) > 1 else (1, *a)
    right = b if len(b) > 1 else (*b, 1)
    if left[-1] != right[-2]:
        raise _Unsure
    shape = (*_broadcast(left[:-2], right[:-2]), left[-2], right[-1])
    if len(a) == 1:
        shape = shape[:-2] + shape[-1:]
    if len(b) == 1:
        shape = shape[:-1]
    return shape


def _axes(shape: tuple[int, ...], axis: Any) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(len(shape)))
    axes = axis if isinstance(axis, tuple) else (axis,)
    if not all(isinstance(a, int) and -len(shape) <= a < len(shape) for a in axes):
        raise _Unsure
    return tuple(a % len(shape) for a in axes)


class _ShapeBackend(Backend):
    """The program language on shapes (:class:`_Shape`): every function's shape rule."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

        def same(a: Any) -> Any:
            return self._f(a)

        def reduce(a: Any, axis: Any = None, keepdims: bool = False) -> Any:
            a = self._f(a)
            gone = _axes(a.shape, axis)
            kept = tuple(1 if i in gone else d for i, d in enumerate(a.shape) if keepdims or i not in gone)
            return a._new(kept)

        def dot(a: Any, b: Any) -> Any:
            a, b = self._f(a), self._f(b)
            if len(a.shape) == 1 and len(b.shape) == 1:
                if a.shape != b.shape:
                    raise _Unsure
                return a._new(())
            if len(a.shape) > 2 or len(b.shape) > 2:
                raise _Unsure  # np.dot and torch differ there; the real run reports it
            return a._new(_matmul(a.shape, b.shape))

        def reshape(a: Any, shape: Any) -> Any:
            a = self._f(a)
            dims = shape if isinstance(shape, tuple) else (shape,)
            if not all(isinstance(d, int) for d in dims) or list(dims).count(-1) > 1:
                raise _Unsure
            known = math.prod(d for d in dims if d != -1)
            if -1 in dims:
                if known == 0 or a.size % known:
                    raise _Unsure
                dims = tuple(a.size // known if d == -1 else d for d in dims)
            if math.prod(dims) != a.size:
                raise _Unsure
            return a._new(dims)

        def transpose(a: Any, axes: Any = None) -> Any:
            a = self._f(a)
            if axes is None:
                return a._new(a.shape[::-1])
            if sorted(_axes(a.shape, axes)) != list(range(len(a.shape))):
                raise _Unsure
            return a._new(tuple(a.shape[i] for i in _axes(a.shape, axes)))

        def concat(*parts: Any, axis: int = 0) -> Any:
            arrays = [self._f(p) for p in parts]
            first = arrays[0].shape
            if not isinstance(axis, int) or not first or not -len(first) <= axis < len(first):
                raise _Unsure
            k = axis % len(first)
            if any(
                len(p.shape) != len(first) or p.shape[:k] + p.shape[k + 1 :] != first[:k] + first[k + 1 :]
                for p in arrays
            ):
                raise _Unsure
            return arrays[0]._new(first[:k] + (sum(p.shape[k] for p in arrays),) + first[k + 1 :])

        def one_hot(y: Any, n: Any) -> Any:
            if not isinstance(n, int) or n < 0:
                raise _Unsure
            return self._f(y)._new((*self._f(y).shape, n))

        def arange(n: Any) -> Any:
            if not isinstance(n, int):
                raise _Unsure
            return _Shape((max(n, 0),), self.limit)

        def size(a: Any, axis: Any) -> int:
            shape = self._f(a).shape
            if not isinstance(axis, int) or not -len(shape) <= axis < len(shape):
                raise _Unsure
            return shape[axis]

        super().__init__(
            name="shapes",
            functions={
                **{
                    f: same for f in ("exp", "log", "sqrt", "tanh", "sigmoid", "abs", "sign", "ones_like", "zeros_like")
                },
                **{f: reduce for f in ("sum", "mean", "max", "min", "logsumexp")},
                "maximum": lambda a, b: self._f(a)._binary(self._f(b)),
                "minimum": lambda a, b: self._f(a)._binary(self._f(b)),
                "where": lambda c, a, b: self._f(c)._new(
                    _broadcast(self._f(c).shape, self._f(a).shape, self._f(b).shape)
                ),
                "dot": dot,
                "reshape": reshape,
                "transpose": transpose,
                "concat": concat,
                "one_hot": one_hot,
                "arange": arange,
                "size": size,
                "shape": lambda a: self._f(a).shape,
            },
        )

    def _f(self, a: Any) -> _Shape:
        if isinstance(a, _Shape):
            return a
        if isinstance(a, (int, float)) and not isinstance(a, bool):
            return _Shape((), self.limit)
        raise _Unsure

    def asarray(self, value: Any) -> _Shape:
        return _Shape(np.shape(value), self.limit)

    def asindex(self, value: Any) -> _Shape:
        return self._f(value) if isinstance(value, _Shape) else _Shape(np.shape(value), self.limit)

    def matmul(self, a: Any, b: Any) -> Any:
        return self._f(a) @ self._f(b)

    def transpose(self, a: Any) -> _Shape:
        a = self._f(a)
        return a._new(a.shape[::-1])

    def ones_like(self, a: Any) -> _Shape:
        return self._f(a)


def _proven_small(case: Case, limits: Limits) -> bool:
    """True when the shape walk shows every value of the programs within the limits."""
    be = _ShapeBackend(limits.max_elements)
    try:
        env = {k: be.asarray(v) for k, v in case.inputs.items()}
        values = case.forward.run(env, be)
        if case.reference is not None and case.reference.program is not None:
            case.reference.run(env, be)
        if case.backward is not None and case.backward.program is not None:
            douts = {f"d{o}": be._f(values[o]) for o in case.outputs if o in values}
            values = case.backward.run({**values, **douts}, be)
    except (_Unsure, CaseError, ArithmeticError, RecursionError, TypeError, ValueError, IndexError, KeyError):
        return False
    held = sum(v.size for v in values.values() if isinstance(v, _Shape))
    return held <= HELD * limits.max_elements
