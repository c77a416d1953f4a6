"""What a dtype's arithmetic can explain: first-order rounding bounds of programs.

A program's statements are evaluated once more on :class:`Bounded` values: each carries its
float64 value and a bound on its rounding error, in units of the unit roundoff ``u`` of the
dtype the check runs in (``u = eps / 2``). Every operation adds its own rounding (one ``u``
of its result for ``+ - * /`` and ``sqrt``; a few for ``exp``, ``log``, ``tanh``, whose library
implementations are within a few ulps) to the propagated errors of its operands (first-order
error analysis, as in Higham, "Accuracy and Stability of Numerical Algorithms", ch. 3). The
bound therefore sees the magnitudes of the terms that cancel inside a program: ``1 - t * t``
with ``t`` near 1 keeps an absolute error of a few ``u`` although its value is tiny, and
``mean(x * x) - mean(x) ** 2`` of values near 1000 an error of about 10^6 ``u``.

Three bounds come out of one evaluation:

* ``phi``: of phi = sum(upstream * output), from the forward program: the rounding noise
  of every evaluation the numeric source makes;
* ``manual``: of each ``d<input>`` the backward program computes;
* ``autograd``: of the gradient reverse mode computes through the forward program (the
  autograd source, and the complex step, which propagates derivatives through the same
  operations): a reverse pass over a tape of the forward, each step in Bounded arithmetic
  with the formulas torch's backward uses.

A sum of ``n`` terms is charged ``gamma(n) = min(n - 1, 4 sqrt(n) + 8)`` roundings of the sum of
their magnitudes: ``n - 1`` is the worst case of a sequential sum, ``sqrt(n)`` times a small
constant what rounding errors of random sign reach with overwhelming probability (Higham and
Mary, "A new approach to probabilistic rounding error analysis", 2019); the sums here are
pairwise or blocked, below both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._backends import Backend

__all__ = ["Bounded", "BoundedBackend", "ProgramBounds", "program_bounds", "unit_roundoff"]

# Roundings a library function (exp, log, tanh, sigmoid) may add, in u: glibc and SLEEF are
# within 1 to 3.5 ulps (2 u per ulp).
LIBM = 8.0


def unit_roundoff(dtype: str) -> float:
    return float(np.finfo(np.dtype(dtype)).eps) / 2


def gamma(n: int) -> float:
    if n <= 1:
        return 0.0
    return float(min(n - 1, 4 * math.sqrt(n) + 8))


def _unbroadcast(a: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, int]:
    """Sum ``a`` down to ``shape`` (the reverse of broadcasting); also how many terms met."""
    terms = 1
    while a.ndim > len(shape):
        terms *= a.shape[0]
        a = a.sum(axis=0)
    for axis, n in enumerate(shape):
        if n == 1 and a.shape[axis] != 1:
            terms *= a.shape[axis]
            a = a.sum(axis=axis, keepdims=True)
    return a, terms


class Bounded:
    """A float64 value and a bound on its rounding error in units of u (same shape)."""

    __array_priority__ = 1000  # numpy arrays on the left defer to our operators
    __slots__ = ("v", "e", "tape")

    def __init__(self, v: Any, e: Any = None, tape: _Tape | None = None) -> None:
        self.v = np.asarray(v, dtype=np.float64)
        self.e = np.zeros_like(self.v) if e is None else np.broadcast_to(np.asarray(e, np.float64), self.v.shape)
        self.tape = tape

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.v.shape)

    @property
    def ndim(self) -> int:
        return int(self.v.ndim)

    def __len__(self) -> int:
        return len(self.v)

    # --- arithmetic: each result's error is the propagated error plus its own rounding ---
    def __add__(self, other: Any) -> Bounded:
        o = _lift(other, self.tape)
        v = self.v + o.v
        return _record(v, self.e + o.e + np.abs(v), (self, o), lambda g: (g, g))

    __radd__ = __add__

    def __sub__(self, other: Any) -> Bounded:
        o = _lift(other, self.tape)
        v = self.v - o.v
        return _record(v, self.e + o.e + np.abs(v), (self, o), lambda g: (g, -g))

    def __rsub__(self, other: Any) -> Bounded:
        return _lift(other, self.tape) - self

    def __mul__(self, other: Any) -> Bounded:
        o = _lift(other, self.tape)
        v = self.v * o.v
        e = np.abs(o.v) * self.e + np.abs(self.v) * o.e + np.abs(v)
        return _record(v, e, (self, o), lambda g: (g * o, g * self))

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> Bounded:
        o = _lift(other, self.tape)
        with np.errstate(divide="ignore", invalid="ignore"):
            v = self.v / o.v
            e = self.e / np.abs(o.v) + np.abs(v) * o.e / np.abs(o.v) + np.abs(v)
        out: Bounded

        def vjp(g: Bounded) -> tuple[Bounded, Bounded]:
            # torch: grad / other, and -grad * (self / other) / other
            return g / o, -(g * out.detached()) / o

        out = _record(v, e, (self, o), vjp)
        return out

    def __rtruediv__(self, other: Any) -> Bounded:
        return _lift(other, self.tape) / self

    def __neg__(self) -> Bounded:
        return _record(-self.v, self.e, (self,), lambda g: (-g,))

    def __pos__(self) -> Bounded:
        return self

    def __pow__(self, other: Any) -> Bounded:
        if isinstance(other, Bounded):
            return _pow_tensor(self, other)
        c = float(np.asarray(other))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            v = self.v**c
            slope = np.abs(c * self.v ** (c - 1)) if c != 0 else np.zeros_like(self.v)
            # squaring is one multiplication; other powers go through the library's pow
            own = 1.0 if c in (1.0, 2.0) else LIBM
            e = slope * self.e + own * np.abs(v)

        def vjp(g: Bounded) -> tuple[Bounded]:
            # torch: grad * exponent * self.pow(exponent - 1)
            return (g * (_detached(self) ** (c - 1)) * c,)

        return _record(v, e, (self,), vjp)

    def __rpow__(self, other: Any) -> Bounded:
        return _pow_tensor(_lift(other, self.tape), self)

    def __matmul__(self, other: Any) -> Bounded:
        return matmul(self, _lift(other, self.tape))

    def __rmatmul__(self, other: Any) -> Bounded:
        return matmul(_lift(other, self.tape), self)

    # --- comparisons give plain masks (only `where` takes them) ---
    def __lt__(self, other: Any) -> Any:
        return self.v < _plain(other)

    def __le__(self, other: Any) -> Any:
        return self.v <= _plain(other)

    def __gt__(self, other: Any) -> Any:
        return self.v > _plain(other)

    def __ge__(self, other: Any) -> Any:
        return self.v >= _plain(other)

    def __eq__(self, other: Any) -> Any:  # type: ignore[override]
        return self.v == _plain(other)

    def __ne__(self, other: Any) -> Any:  # type: ignore[override]
        return self.v != _plain(other)

    __hash__ = None  # type: ignore[assignment]

    def __getitem__(self, key: Any) -> Bounded:
        key = _plain_key(key)
        shape = self.shape

        def vjp(g: Bounded) -> tuple[Bounded]:
            v = np.zeros(shape)
            e = np.zeros(shape)
            np.add.at(v, key, g.v)
            # indices may repeat: every accumulation rounds once
            np.add.at(e, key, g.e + np.abs(g.v))
            return (Bounded(v, e),)

        return _record(self.v[key], self.e[key], (self,), vjp)

    @property
    def T(self) -> Bounded:
        return transpose(self)

    def detached(self) -> Bounded:
        return Bounded(self.v, self.e)


def _detached(b: Bounded) -> Bounded:
    return b.detached()


def _plain(x: Any) -> Any:
    return x.v if isinstance(x, Bounded) else x


def _plain_key(key: Any) -> Any:
    if isinstance(key, tuple):
        return tuple(_plain(k) for k in key)
    return _plain(key)


def _lift(x: Any, tape: _Tape | None) -> Bounded:
    """Constants (Python numbers, arrays) are exact in the check's dtype: no error of their own."""
    if isinstance(x, Bounded):
        return x
    return Bounded(np.asarray(x, dtype=np.float64), tape=tape)


@dataclass
class _Step:
    out: Bounded
    parents: tuple[Bounded, ...]
    vjp: Callable[[Bounded], Sequence[Bounded | None]]


class _Tape:
    """The operations of a forward evaluation in order, for the reverse pass."""

    def __init__(self) -> None:
        self.steps: list[_Step] = []
        self.recording = True

    def gradients(
        self, outputs: Sequence[tuple[Bounded, Bounded]], leaves: Mapping[str, Bounded]
    ) -> dict[str, Bounded]:
        """Reverse mode from (output, its upstream gradient) pairs to the leaves."""
        self.recording = False
        grads: dict[int, Bounded] = {}
        for out, up in outputs:
            grads[id(out)] = _accumulate(grads.get(id(out)), up)
        for step in reversed(self.steps):
            g = grads.pop(id(step.out), None)
            if g is None:
                continue
            for parent, pg in zip(step.parents, step.vjp(g), strict=True):
                if pg is None or parent.tape is None:
                    continue
                pv, terms = _unbroadcast(pg.v, parent.shape)
                if terms > 1:
                    pe, _ = _unbroadcast(pg.e, parent.shape)
                    absum, _ = _unbroadcast(np.abs(pg.v), parent.shape)
                    pg = Bounded(pv, pe + gamma(terms) * absum)
                grads[id(parent)] = _accumulate(grads.get(id(parent)), pg)
        return {k: grads.get(id(leaf), Bounded(np.zeros(leaf.shape))) for k, leaf in leaves.items()}


def _accumulate(a: Bounded | None, b: Bounded) -> Bounded:
    if a is None:
        return Bounded(b.v, b.e)
    v = a.v + b.v
    return Bounded(v, a.e + b.e + np.abs(v))


def _record(
    v: np.ndarray, e: np.ndarray, parents: tuple[Bounded, ...], vjp: Callable[[Bounded], Sequence[Bounded | None]]
) -> Bounded:
    tape = next((p.tape for p in parents if p.tape is not None), None)
    out = Bounded(v, e, tape if tape is not None and tape.recording else None)
    if out.tape is not None:
        assert tape is not None
        tape.steps.append(_Step(out, parents, vjp))
    return out


def _pow_tensor(a: Bounded, b: Bounded) -> Bounded:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        v = a.v**b.v
        log_a = np.log(np.abs(a.v))
        e = np.abs(b.v * a.v ** (b.v - 1)) * a.e + np.abs(v * log_a) * b.e + LIBM * np.abs(v)
    out: Bounded

    def vjp(g: Bounded) -> tuple[Bounded, Bounded]:
        return g * b.detached() * (a.detached() ** (b.detached() - 1)), g * out.detached() * elementwise_log(
            a.detached()
        )

    out = _record(v, e, (a, b), vjp)
    return out


def matmul(a: Bounded, b: Bounded) -> Bounded:
    k = a.shape[-1] if a.ndim else 1
    v = a.v @ b.v
    e = np.abs(a.v) @ b.e + a.e @ np.abs(b.v) + gamma(k) * (np.abs(a.v) @ np.abs(b.v)) + np.abs(v)

    def vjp(g: Bounded) -> tuple[Bounded, Bounded]:
        ad, bd = a.detached(), b.detached()
        if a.ndim == 1 and b.ndim == 1:
            return g * bd, g * ad
        if a.ndim == 1:  # (k,) @ (k, n) -> (n,)
            return matmul(bd, g), outer(ad, g)
        if b.ndim == 1:  # (m, k) @ (k,) -> (m,)
            return outer(g, bd), matmul(transpose(ad), g)
        return matmul(g, swap(bd)), matmul(swap(ad), g)

    return _record(v, e, (a, b), vjp)


def outer(a: Bounded, b: Bounded) -> Bounded:
    v = np.multiply.outer(a.v, b.v)
    e = np.multiply.outer(a.e, np.abs(b.v)) + np.multiply.outer(np.abs(a.v), b.e) + np.abs(v)
    return Bounded(v, e)


def swap(a: Bounded) -> Bounded:
    """The last two axes exchanged (a batch of matrices transposed)."""
    return _record(np.swapaxes(a.v, -1, -2), np.swapaxes(a.e, -1, -2), (a,), lambda g: (swap(g),))


def transpose(a: Bounded, axes: Any = None) -> Bounded:
    a = _lift(a, None)
    order = tuple(range(a.ndim - 1, -1, -1)) if axes is None else tuple(axes)
    inverse = tuple(np.argsort(order))
    return _record(np.transpose(a.v, order), np.transpose(a.e, order), (a,), lambda g: (transpose(g, inverse),))


def elementwise_log(a: Bounded) -> Bounded:
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.log(a.v)
        e = a.e / np.abs(a.v) + LIBM * np.abs(v) + LIBM
    return _record(v, e, (a,), lambda g: (g / a.detached(),))


def _unary(
    fn: Callable[[np.ndarray], np.ndarray],
    slope: Callable[[np.ndarray, np.ndarray], np.ndarray],
    vjp: Callable[[Bounded, Bounded, Bounded], Bounded],
    own: float = LIBM,
) -> Callable[[Any], Bounded]:
    """An elementwise library function: error = |f'| e + own roundings of the result."""

    def apply(a: Any) -> Bounded:
        a = _lift(a, None)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            v = fn(a.v)
            e = slope(a.v, v) * a.e + own * np.abs(v)
        out: Bounded

        def back(g: Bounded) -> tuple[Bounded]:
            return (vjp(g, a.detached(), out.detached()),)

        out = _record(v, e, (a,), back)
        return out

    return apply


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def _reduce_axes(a: Bounded, axis: Any) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(a.ndim))
    axes = axis if isinstance(axis, tuple) else (axis,)
    return tuple(ax % a.ndim for ax in axes)


def _expand(g: Bounded, shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool) -> Bounded:
    """Broadcast a reduction's gradient back over the reduced axes (no rounding)."""
    v, e = g.v, g.e
    if not keepdims:
        for ax in sorted(axes):
            v, e = np.expand_dims(v, ax), np.expand_dims(e, ax)
    return Bounded(np.broadcast_to(v, shape), np.broadcast_to(e, shape))


def bsum(a: Any, axis: Any = None, keepdims: bool = False) -> Bounded:
    a = _lift(a, None)
    axes = _reduce_axes(a, axis)
    n = int(np.prod([a.shape[ax] for ax in axes])) if axes else 1
    v = np.sum(a.v, axis=axes, keepdims=keepdims)
    e = np.sum(a.e, axis=axes, keepdims=keepdims) + gamma(n) * np.sum(np.abs(a.v), axis=axes, keepdims=keepdims)
    shape = a.shape
    return _record(v, e, (a,), lambda g: (_expand(g, shape, axes, keepdims),))


def bmean(a: Any, axis: Any = None, keepdims: bool = False) -> Bounded:
    a = _lift(a, None)
    axes = _reduce_axes(a, axis)
    n = int(np.prod([a.shape[ax] for ax in axes])) if axes else 1
    return bsum(a, axis, keepdims) / float(n)


def _extreme(op: Callable[..., np.ndarray]) -> Callable[..., Bounded]:
    def reduce(a: Any, axis: Any = None, keepdims: bool = False) -> Bounded:
        a = _lift(a, None)
        axes = _reduce_axes(a, axis)
        v = op(a.v, axis=axes, keepdims=keepdims)
        e = np.max(a.e, axis=axes, keepdims=keepdims)
        shape = a.shape

        def vjp(g: Bounded) -> tuple[Bounded]:
            # torch's amax/amin share the gradient evenly among ties
            hit = a.v == op(a.v, axis=axes, keepdims=True)
            count = np.sum(hit, axis=axes, keepdims=True)
            spread = _expand(g, shape, axes, keepdims)
            return (
                Bounded(
                    np.where(hit, spread.v / count, 0.0),
                    np.where(hit, spread.e / count + np.abs(spread.v / count), 0.0),
                ),
            )

        return _record(v, e, (a,), vjp)

    return reduce


def blogsumexp(a: Any, axis: Any = None, keepdims: bool = False) -> Bounded:
    # the same composition as the torch backend: a detached max shift, then exp, sum and log
    a = _lift(a, None)
    axes = _reduce_axes(a, axis)
    m = Bounded(np.max(a.v, axis=axes, keepdims=True))
    s = bsum(bexp(a - m), axis=axes, keepdims=keepdims)
    mm = m if keepdims else Bounded(np.squeeze(m.v, axis=axes))
    return mm + elementwise_log(s)


bexp = _unary(np.exp, lambda x, v: np.abs(v), lambda g, a, out: g * out)
blog = elementwise_log
bsqrt = _unary(np.sqrt, lambda x, v: 0.5 / np.abs(v), lambda g, a, out: g / (2 * out), own=1.0)
btanh = _unary(np.tanh, lambda x, v: 1 - v * v, lambda g, a, out: g * (1 - out * out))
bsigmoid = _unary(_sigmoid, lambda x, v: v * (1 - v), lambda g, a, out: g * (1 - out) * out)
babs = _unary(np.abs, lambda x, v: np.ones_like(v), lambda g, a, out: g * Bounded(np.sign(a.v)), own=0.0)


def bsign(a: Any) -> Bounded:
    a = _lift(a, None)
    return Bounded(np.sign(a.v))


def _select(pick_a: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[[Any, Any], Bounded]:
    """maximum/minimum: the chosen operand's value and error; torch splits the gradient of a tie."""

    def apply(a: Any, b: Any) -> Bounded:
        tape = a.tape if isinstance(a, Bounded) else (b.tape if isinstance(b, Bounded) else None)
        a, b = _lift(a, tape), _lift(b, tape)
        av, bv = np.broadcast_arrays(a.v, b.v)
        first = pick_a(av, bv)
        tie = av == bv
        v = np.where(first, av, bv)
        e = np.where(first, np.broadcast_to(a.e, v.shape), np.broadcast_to(b.e, v.shape))

        def vjp(g: Bounded) -> tuple[Bounded, Bounded]:
            wa = np.where(tie, 0.5, np.where(first, 1.0, 0.0))
            return g * Bounded(wa), g * Bounded(1.0 - wa)

        return _record(v, e, (a, b), vjp)

    return apply


def bwhere(c: Any, a: Any, b: Any) -> Bounded:
    tape = a.tape if isinstance(a, Bounded) else (b.tape if isinstance(b, Bounded) else None)
    a, b = _lift(a, tape), _lift(b, tape)
    cond = np.asarray(_plain(c), dtype=bool)
    v = np.where(cond, a.v, b.v)
    e = np.where(cond, a.e, b.e)
    return _record(v, e, (a, b), lambda g: (g * Bounded(cond.astype(float)), g * Bounded((~cond).astype(float))))


def breshape(a: Any, shape: Any) -> Bounded:
    a = _lift(a, None)
    old = a.shape
    return _record(np.reshape(a.v, shape), np.reshape(a.e, shape), (a,), lambda g: (breshape(g, old),))


def bconcat(*parts: Any, axis: int = 0) -> Bounded:
    tape = next((p.tape for p in parts if isinstance(p, Bounded) and p.tape is not None), None)
    bs = [_lift(p, tape) for p in parts]
    v = np.concatenate([b.v for b in bs], axis=axis)
    e = np.concatenate([b.e for b in bs], axis=axis)
    sizes = np.cumsum([b.shape[axis] for b in bs])[:-1]

    def vjp(g: Bounded) -> list[Bounded]:
        return [
            Bounded(pv, pe)
            for pv, pe in zip(np.split(g.v, sizes, axis=axis), np.split(g.e, sizes, axis=axis), strict=True)
        ]

    return _record(v, e, tuple(bs), vjp)


def bdot(a: Any, b: Any) -> Bounded:
    return matmul(_lift(a, None), _lift(b, None))


class BoundedBackend(Backend):
    """The program language on Bounded values (see the module docstring)."""

    def __init__(self, tape: _Tape | None = None) -> None:
        self.tape = tape
        super().__init__(
            name="bounded",
            functions={
                "exp": bexp,
                "log": blog,
                "sqrt": bsqrt,
                "tanh": btanh,
                "sigmoid": bsigmoid,
                "abs": babs,
                "sign": bsign,
                "maximum": _select(lambda a, b: a >= b),
                "minimum": _select(lambda a, b: a <= b),
                "sum": bsum,
                "mean": bmean,
                "max": _extreme(np.max),
                "min": _extreme(np.min),
                "logsumexp": blogsumexp,
                "dot": bdot,
                "where": bwhere,
                "reshape": breshape,
                "transpose": lambda a, axes=None: transpose(_lift(a, None), axes),
                "concat": bconcat,
                "ones_like": lambda a: Bounded(np.ones(np.shape(_plain(a)))),
                "zeros_like": lambda a: Bounded(np.zeros(np.shape(_plain(a)))),
                "one_hot": lambda y, n: Bounded(np.eye(n)[np.asarray(y)]),
                "arange": lambda n: np.arange(n),
                "size": lambda a, axis: int(np.shape(_plain(a))[axis]),
                "shape": lambda a: tuple(int(s) for s in np.shape(_plain(a))),
            },
        )

    def asarray(self, value: Any) -> Bounded:
        return Bounded(np.asarray(value, dtype=np.float64), tape=self.tape)

    def asindex(self, value: Any) -> np.ndarray:
        a = np.asarray(_plain(value))
        if a.dtype.kind not in "iu":
            raise TypeError(f"an index array must hold integers, not {a.dtype}")
        return a

    def matmul(self, a: Any, b: Any) -> Any:
        return matmul(_lift(a, self.tape), _lift(b, self.tape))

    def transpose(self, a: Any) -> Any:
        return transpose(_lift(a, self.tape))

    def ones_like(self, a: Any) -> Any:
        return Bounded(np.ones(np.shape(_plain(a))))

    def settle(self, value: Any) -> Any:
        if isinstance(value, Bounded) or isinstance(value, (int, tuple)):
            return value
        return _lift(value, None)


@dataclass
class ProgramBounds:
    """Rounding bounds at one point, in units of u (multiply by :func:`unit_roundoff`).

    ``phi``: of phi = sum(upstream * output) as the forward computes it (None when the
    forward is not a program); ``manual``: of each input's gradient from the backward program;
    ``autograd``: of each input's gradient by reverse mode through the program autograd
    differentiates; ``derivative``: the same through the forward program itself (what the
    complex step propagates). A source that is not a program has no bound (None)."""

    phi_value: float | None
    phi: float | None
    manual: dict[str, np.ndarray] | None
    autograd: dict[str, np.ndarray] | None
    derivative: dict[str, np.ndarray] | None = None


def _objective(
    case: Any, values: Mapping[str, Any], tape: _Tape | None
) -> tuple[Bounded, list[tuple[Bounded, Bounded]]]:
    pairs = []
    phi: Bounded | None = None
    for o in case.outputs:
        out = _lift(values[o], tape)
        up = case.upstreams.get(o)
        upb = Bounded(np.ones(out.shape) if up is None else np.asarray(up, dtype=np.float64))
        pairs.append((out, upb))
        term = bsum(out * upb) if up is not None else bsum(out)
        phi = term if phi is None else phi + term
    assert phi is not None
    return phi, pairs


def _reverse(
    case: Any, forward: Any, point: Mapping[str, np.ndarray]
) -> tuple[dict[str, Any], Bounded, dict[str, Bounded]]:
    tape = _Tape()
    be = BoundedBackend(tape)
    leaves = {k: be.asarray(v) for k, v in point.items()}
    values = forward.run(leaves, be)
    phi, pairs = _objective(case, values, tape)
    tape.recording = False
    return values, phi, tape.gradients(pairs, leaves)


def program_bounds(case: Any, point: Mapping[str, np.ndarray]) -> ProgramBounds | None:
    """The bounds of ``case`` at ``point`` (float64 values, already rounded to the check's dtype),
    or None when neither the forward nor the program autograd differentiates is a program."""
    forward, backward, auto = case.forward, case.backward, case.autograd_forward
    phi_value = phi_err = None
    manual = autograd = derivative = None
    if forward.program is not None:
        with np.errstate(all="ignore"):
            values, phi, grads = _reverse(case, forward, point)
        phi_value, phi_err = float(phi.v), float(phi.e)
        derivative = {k: g.e for k, g in grads.items()}
        if auto is forward:
            autograd = derivative
        if backward is not None and backward.program is not None:
            env = dict(values)
            for o in case.outputs:
                up = case.upstreams.get(o)
                shape = np.shape(_plain(values[o]))
                env[f"d{o}"] = Bounded(np.ones(shape) if up is None else np.asarray(up, dtype=np.float64))
            with np.errstate(all="ignore"):
                out = backward.run(env, BoundedBackend())
            manual = {k: _lift(out[f"d{k}"], None).e for k in point}
    if autograd is None and auto is not None and auto.program is not None:
        with np.errstate(all="ignore"):
            _, _, grads = _reverse(case, auto, point)
        autograd = {k: g.e for k, g in grads.items()}
    if phi_err is None and manual is None and autograd is None:
        return None
    return ProgramBounds(phi_value, phi_err, manual, autograd, derivative)
