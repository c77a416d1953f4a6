"""The array libraries a program can run on: numpy (the hand-written source) and torch.

Every whitelisted function of the program language has one entry per backend here; the
whitelist itself is the key set of ``FUNCTIONS``. ``KEYWORDS`` says which keyword arguments
a function takes and ``STATIC`` which positional arguments must be known before the program
runs (an axis, a shape, a length): those never depend on the data, so the same program runs
unchanged inside ``torch.func.vmap``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["FUNCTIONS", "KEYWORDS", "NON_ANALYTIC", "STATIC", "Backend", "NumpyBackend", "TorchBackend"]

_REDUCE = frozenset({"axis", "keepdims"})

# name -> number of positional arguments it takes (min, max)
FUNCTIONS: dict[str, tuple[int, int]] = {
    "exp": (1, 1),
    "log": (1, 1),
    "sqrt": (1, 1),
    "tanh": (1, 1),
    "sigmoid": (1, 1),
    "abs": (1, 1),
    "sign": (1, 1),
    "maximum": (2, 2),
    "minimum": (2, 2),
    "sum": (1, 1),
    "mean": (1, 1),
    "max": (1, 1),
    "min": (1, 1),
    "logsumexp": (1, 1),
    "dot": (2, 2),
    "where": (3, 3),
    "reshape": (2, 2),
    "transpose": (1, 2),
    "concat": (1, 16),
    "ones_like": (1, 1),
    "zeros_like": (1, 1),
    "one_hot": (2, 2),
    "arange": (1, 1),
    "size": (2, 2),
    "shape": (1, 1),
}

# name -> the keyword arguments it accepts; every other function takes none.
KEYWORDS: dict[str, frozenset[str]] = {
    "sum": _REDUCE,
    "mean": _REDUCE,
    "max": _REDUCE,
    "min": _REDUCE,
    "logsumexp": _REDUCE,
    "concat": frozenset({"axis"}),
}

# name -> indices of positional arguments that must be static: integers (or tuples of them)
# computed from literals, integer constants and shapes, never from array values.
STATIC: dict[str, frozenset[int]] = {
    "reshape": frozenset({1}),
    "transpose": frozenset({1}),
    "one_hot": frozenset({1}),
    "arange": frozenset({0}),
    "size": frozenset({1}),
}

# Functions with points where no derivative exists: their programs can have kinks, and the
# complex step does not apply to them (nor do comparisons, which `where` hides).
NON_ANALYTIC = frozenset({"abs", "sign", "maximum", "minimum", "max", "min", "where"})


@dataclass
class Backend:
    name: str
    functions: dict[str, Callable[..., Any]] = field(default_factory=dict)

    def asarray(self, value: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def asindex(self, value: Any) -> Any:  # pragma: no cover - abstract
        """An integer array (class labels, indices) in this library; never differentiated."""
        raise NotImplementedError

    def matmul(self, a: Any, b: Any) -> Any:
        return a @ b

    def transpose(self, a: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def ones_like(self, a: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def settle(self, value: Any) -> Any:
        """A statement's result in this backend's precision (see NumpyBackend)."""
        return value


def _squeeze_np(a: Any, axis: Any) -> Any:
    return np.squeeze(a, axis=axis)


class NumpyBackend(Backend):
    def __init__(self, dtype: str = "float64") -> None:
        self.dtype = np.dtype(dtype)
        f = self._f
        sig = lambda a: 1.0 / (1.0 + np.exp(-a))  # noqa: E731

        def logsumexp(a: Any, axis: Any = None, keepdims: bool = False) -> Any:
            a = f(a)
            # shifting by the max keeps exp from overflowing; it cancels exactly in the result
            m = np.max(a, axis=axis, keepdims=True)
            s = np.sum(np.exp(a - m), axis=axis, keepdims=keepdims)
            return (m if keepdims else _squeeze_np(m, axis)) + np.log(s)

        def where(c: Any, a: Any, b: Any) -> Any:
            # literal branches take the program's dtype: np.where(c, 1, 0) would be int64
            return np.where(c, f(a), f(b))

        super().__init__(
            name=f"numpy/{dtype}",
            functions={
                "exp": np.exp,
                "log": np.log,
                "sqrt": np.sqrt,
                "tanh": np.tanh,
                "sigmoid": sig,
                "abs": np.abs,
                "sign": np.sign,
                "maximum": lambda a, b: np.maximum(f(a), f(b)),
                "minimum": lambda a, b: np.minimum(f(a), f(b)),
                "sum": lambda a, axis=None, keepdims=False: np.sum(a, axis=axis, keepdims=keepdims),
                "mean": lambda a, axis=None, keepdims=False: np.mean(a, axis=axis, keepdims=keepdims),
                "max": lambda a, axis=None, keepdims=False: np.max(a, axis=axis, keepdims=keepdims),
                "min": lambda a, axis=None, keepdims=False: np.min(a, axis=axis, keepdims=keepdims),
                "logsumexp": logsumexp,
                "dot": np.dot,
                "where": where,
                "reshape": lambda a, shape: np.reshape(a, shape),
                "transpose": lambda a, axes=None: np.transpose(a, axes),
                "concat": lambda *a, axis=0: np.concatenate(a, axis=axis),
                "ones_like": lambda a: np.ones_like(f(a)),
                "zeros_like": lambda a: np.zeros_like(f(a)),
                "one_hot": self._one_hot,
                "arange": lambda n: np.arange(n),
                "size": lambda a, axis: int(np.shape(a)[axis]),
                "shape": lambda a: tuple(int(s) for s in np.shape(a)),
            },
        )

    def _f(self, a: Any) -> Any:
        return a if isinstance(a, np.ndarray) else np.asarray(a, dtype=self.dtype)

    def _one_hot(self, y: Any, n: int) -> Any:
        # compared with arange, not np.eye(n)[y]: that builds an n x n matrix first
        y = np.asarray(y)
        if y.size and (y.min() < 0 or y.max() >= n):
            raise IndexError(f"one_hot: a label is outside 0..{n - 1}")
        return (y[..., None] == np.arange(n)).astype(self.dtype)

    def settle(self, value: Any) -> Any:
        # numpy promotes float32 * int64 (an index or mask constant) to float64; a float32 check
        # whose statements drift into float64 would measure nothing of float32 (torch keeps
        # the float operand's dtype, so only numpy needs this)
        if isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind == "f" and value.dtype != self.dtype:
            if self.dtype.kind == "f":
                return value.astype(self.dtype)
        return value

    def asarray(self, value: Any) -> np.ndarray:
        return np.asarray(value, dtype=self.dtype)

    def asindex(self, value: Any) -> np.ndarray:
        a = np.asarray(value)
        if a.dtype.kind not in "iu":
            # truncating a float index would silently pick other elements
            raise TypeError(f"an index array must hold integers, not {a.dtype}")
        return a

    def transpose(self, a: Any) -> Any:
        return np.asarray(a).T

    def ones_like(self, a: Any) -> Any:
        return np.ones_like(np.asarray(a, dtype=self.dtype))


class TorchBackend(Backend):
    def __init__(self, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu") -> None:
        self.dtype = dtype
        self.device = torch.device(device)
        t = self._t

        def dot(a: Any, b: Any) -> Any:
            a, b = t(a), t(b)
            if a.ndim == 1 and b.ndim == 1:
                return torch.dot(a, b)
            return torch.matmul(a, b)

        def dims(a: torch.Tensor, axis: Any) -> tuple[int, ...]:
            # an explicit tuple of every dimension: torch reads dim=() as "all" in some
            # reductions and "none" in others
            if axis is None:
                return tuple(range(a.ndim))
            return tuple(axis) if isinstance(axis, tuple) else (axis,)

        def reduction(op: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
            def reduce(a: Any, axis: Any = None, keepdims: bool = False) -> torch.Tensor:
                a = t(a)
                d = dims(a, axis)
                return a if not d else op(a, dim=d, keepdim=keepdims)

            return reduce

        def logsumexp(a: Any, axis: Any = None, keepdims: bool = False) -> torch.Tensor:
            a = t(a)
            d = dims(a, axis)
            if not d:
                return a
            # The shift is detached: its exact derivative is zero, and a real shift keeps the
            # formula analytic, so the complex step goes through it.
            m = torch.amax(torch.real(a) if a.is_complex() else a, dim=d, keepdim=True).detach()
            s = torch.sum(torch.exp(a - m), dim=d, keepdim=keepdims)
            return (m if keepdims else m.squeeze(d)) + torch.log(s)

        def transpose(a: Any, axes: Any = None) -> torch.Tensor:
            a = t(a)
            return self.transpose(a) if axes is None else a.permute(*axes)

        def one_hot(y: Any, n: int) -> torch.Tensor:
            return torch.nn.functional.one_hot(self._index(y), n).to(self.dtype)

        super().__init__(
            name=f"torch/{dtype}/{self.device}",
            functions={
                "exp": lambda a: torch.exp(t(a)),
                "log": lambda a: torch.log(t(a)),
                "sqrt": lambda a: torch.sqrt(t(a)),
                "tanh": lambda a: torch.tanh(t(a)),
                "sigmoid": lambda a: torch.sigmoid(t(a)),
                "abs": lambda a: torch.abs(t(a)),
                "sign": lambda a: torch.sign(t(a)),
                "maximum": lambda a, b: torch.maximum(t(a), t(b)),
                "minimum": lambda a, b: torch.minimum(t(a), t(b)),
                "sum": reduction(torch.sum),
                "mean": reduction(torch.mean),
                "max": reduction(torch.amax),
                "min": reduction(torch.amin),
                "logsumexp": logsumexp,
                "dot": dot,
                "where": lambda c, a, b: torch.where(t(c) if not isinstance(c, torch.Tensor) else c, t(a), t(b)),
                "reshape": lambda a, shape: t(a).reshape(shape),
                "transpose": transpose,
                "concat": lambda *a, axis=0: torch.cat([t(x) for x in a], dim=axis),
                "ones_like": lambda a: torch.ones_like(t(a)),
                "zeros_like": lambda a: torch.zeros_like(t(a)),
                "one_hot": one_hot,
                "arange": lambda n: torch.arange(n, device=self.device),
                "size": lambda a, axis: int(t(a).shape[axis]),
                "shape": lambda a: tuple(int(s) for s in t(a).shape),
            },
        )

    def _t(self, a: Any) -> torch.Tensor:
        if isinstance(a, torch.Tensor):
            return a
        return torch.as_tensor(a, dtype=self.dtype, device=self.device)

    def _index(self, a: Any) -> torch.Tensor:
        if not isinstance(a, torch.Tensor):
            a = torch.as_tensor(np.asarray(a), device=self.device)
        if a.is_floating_point() or a.is_complex():
            # truncating a float index would silently pick other elements
            raise TypeError(f"an index array must hold integers, not {a.dtype}")
        return a

    def asarray(self, value: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(value), dtype=self.dtype, device=self.device)

    def asindex(self, value: Any) -> torch.Tensor:
        return self._index(value)

    def transpose(self, a: Any) -> Any:
        a = self._t(a)
        # x.T is deprecated for ndim != 2; reversing the dimensions is what numpy's .T does.
        return a.permute(*range(a.ndim - 1, -1, -1)) if a.ndim != 2 else a.transpose(0, 1)

    def ones_like(self, a: Any) -> Any:
        return torch.ones_like(self._t(a))
