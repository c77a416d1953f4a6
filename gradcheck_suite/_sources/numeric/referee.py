"""The high-precision referee: the program language on mpmath, at 50 digits by default.

When the float sources disagree, something must say who is wrong without being one of them.
The program language is small enough to evaluate exactly as written at any precision:
``MpmathBackend`` runs every function of ``_backends.FUNCTIONS`` on numpy object arrays of
``mpmath.mpf`` in a private context (the global ``mpmath.mp`` is never touched).

* ``referee_gradient`` differentiates phi = sum(upstream * output) from the **forward program
  alone** (the backward may be the buggy source): central differences with one Richardson
  step at a step of about ``10^(-digits/3)`` relative to the element, so truncation
  (``h^4``) and rounding (``10^-digits / h``) both sit near ``10^(-2 digits/3)`` of the
  derivative: about 1e-33 at 50 digits. One-sided extrapolations on either side decide kinks:
  they agree to that order where phi is differentiable (a jump in the second derivative
  included) and differ by the slope's jump where a kink lies within two steps of the point.
* ``referee_backward`` evaluates the backward program at ``digits``: a float64 or float32
  formula that is correct but loses precision (``1 - t * t`` at saturation) has exactly the
  true gradient as its high-precision value; a wrong formula does not.

Inputs, constants and upstreams are float64 (or float32) values; ``mpmath.mpf`` converts them
exactly, and numeric literals in a program are Python floats, converted exactly too: the
referee differentiates the very function the float program computes, without its rounding.
The long double middle step is ``NumpyBackend("longdouble")``, used by the manual source.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np
from mpmath import libmp
from mpmath.ctx_mp_python import _mpf

from ..._backends import Backend, NumpyBackend
from ..._case import Case

__all__ = [
    "DEFAULT_DIGITS",
    "MpmathBackend",
    "RefereeGradient",
    "referee_available",
    "referee_cost",
    "referee_backward",
    "referee_gradient",
    "referee_kink_distance",
]

DEFAULT_DIGITS = 50
# The noise of phi is measured against a rerun this many digits finer.
_EXTRA_DIGITS = 20


class MpmathBackend(Backend):
    """The program language on numpy object arrays of ``mpf`` at ``digits`` significant digits."""

    def __init__(self, digits: int = DEFAULT_DIGITS, branches: list[bytes] | None = None) -> None:
        """``branches``, when given, receives the branch each non-analytic call takes (which
        side of abs, maximum, where, ... every element is on), in call order."""
        if digits < 20:
            raise ValueError(f"the referee needs at least 20 digits, not {digits}")
        self.digits = digits
        ctx = mpmath.MPContext()
        ctx.dps = digits
        self.ctx = ctx
        self.zero = ctx.mpf(0)
        self.one = ctx.mpf(1)
        o = self._obj
        unary = {name: self._map(fn) for name, fn in _unary(ctx).items()}

        def reduce(op: Callable[..., Any]) -> Callable[..., Any]:
            return lambda a, axis=None, keepdims=False: op(o(a), axis=axis, keepdims=keepdims)

        def mean(a: Any, axis: Any = None, keepdims: bool = False) -> Any:
            a = o(a)
            total = np.sum(a, axis=axis, keepdims=keepdims)
            count = a.size // max(np.size(total), 1) if axis is not None else a.size
            return total / count

        def logsumexp(a: Any, axis: Any = None, keepdims: bool = False) -> Any:
            a = o(a)
            m = np.max(a, axis=axis, keepdims=True)
            s = np.sum(unary["exp"](a - m), axis=axis, keepdims=keepdims)
            return (m if keepdims else np.squeeze(m, axis=axis)) + unary["log"](s)

        def one_hot(y: Any, n: int) -> Any:
            eye = np.where(np.eye(n, dtype=bool), self.one, self.zero).astype(object)
            return eye[np.asarray(y)]

        super().__init__(
            name=f"mpmath/{digits}",
            functions={
                **unary,
                "sigmoid": lambda a: 1 / (1 + unary["exp"](-o(a))),
                "abs": lambda a: np.abs(o(a)),
                "maximum": lambda a, b: np.maximum(o(a), o(b)),
                "minimum": lambda a, b: np.minimum(o(a), o(b)),
                "sum": reduce(np.sum),
                "mean": mean,
                "max": reduce(np.max),
                "min": reduce(np.min),
                "logsumexp": logsumexp,
                "dot": lambda a, b: np.dot(o(a), o(b)),
                "where": lambda c, a, b: np.where(c, o(a), o(b)),
                "reshape": lambda a, shape: np.reshape(o(a), shape),
                "transpose": lambda a, axes=None: np.transpose(o(a), axes),
                "concat": lambda *a, axis=0: np.concatenate([o(x) for x in a], axis=axis),
                "ones_like": lambda a: np.full(np.shape(a), self.one, dtype=object),
                "zeros_like": lambda a: np.full(np.shape(a), self.zero, dtype=object),
                "one_hot": one_hot,
                "arange": lambda n: np.arange(n),
                "size": lambda a, axis: int(np.shape(a)[axis]),
                "shape": lambda a: tuple(int(s) for s in np.shape(a)),
            },
        )
        if branches is not None:
            for fname, sides in _BRANCHES.items():
                self.functions[fname] = _traced(self.functions[fname], sides, branches)

    def mpf(self, value: Any) -> Any:
        """``value`` (a Python or numpy number) as this context's mpf, exactly."""
        if isinstance(value, self.ctx.mpf):
            return value
        if isinstance(value, (bool, np.bool_)):
            return self.one if value else self.zero
        if isinstance(value, (int, np.integer)):
            return self.ctx.mpf(int(value))
        if isinstance(value, (float, np.floating)):
            if not math.isfinite(float(value)):
                return self.ctx.mpf(float(value))
            # as_integer_ratio is exact for every binary float, long double included
            p, q = value.as_integer_ratio()
            return self.ctx.mpf(p) / q  # q is a power of two: exact
        if isinstance(value, _mpf):  # another context's: its exact binary value
            return self.ctx.mpf(value)
        raise TypeError(f"the referee cannot take a {type(value).__name__}")

    def _obj(self, a: Any) -> Any:
        """``a`` as an object array of this context's mpf (arrays it made pass through)."""
        if isinstance(a, np.ndarray) and a.dtype == object:
            return a
        if isinstance(a, self.ctx.mpf):
            return a
        arr = np.asarray(a)
        out = np.empty(arr.shape, dtype=object)
        for i, v in enumerate(arr.reshape(-1)):
            out.reshape(-1)[i] = self.mpf(v)
        return out

    def _map(self, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        vectorized = np.frompyfunc(fn, 1, 1)
        return lambda a: vectorized(self._obj(a))

    def asarray(self, value: Any) -> Any:
        return self._obj(np.asarray(value))

    def asindex(self, value: Any) -> np.ndarray:
        a = np.asarray(value)
        if a.dtype.kind not in "iu":
            # truncating a float index would silently pick other elements
            raise TypeError(f"an index array must hold integers, not {a.dtype}")
        return a

    def transpose(self, a: Any) -> Any:
        return np.asarray(self._obj(a)).T

    def ones_like(self, a: Any) -> Any:
        return np.full(np.shape(a), self.one, dtype=object)

    def settle(self, value: Any) -> Any:
        # Static integers (N = size(x, 0)) stay Python integers; every real value becomes mpf,
        # so a literal such as `c = 0.1` joins later arithmetic at this precision.
        if isinstance(value, (float, np.floating, np.ndarray)) and not (
            isinstance(value, np.ndarray) and value.dtype.kind in "iub"
        ):
            return self._obj(value)
        return value

    def to_float(self, value: Any) -> float:
        """The float64 nearest to ``value`` (``float(mpf)`` rounds toward zero)."""
        v = self.mpf(value) if not isinstance(value, self.ctx.mpf) else value
        return float(libmp.to_float(v._mpf_, rnd=libmp.round_nearest))


def _unary(ctx: Any) -> dict[str, Callable[[Any], Any]]:
    def real(name: str, fn: Callable[[Any], Any], low: float) -> Callable[[Any], Any]:
        def f(v: Any) -> Any:
            if v < low:  # mpmath would continue into the complex plane
                raise ValueError(f"{name} of a negative number ({mpmath.nstr(v, 8)})")
            return fn(v)

        return f

    return {
        "exp": ctx.exp,
        "log": real("log", ctx.log, 0.0),
        "sqrt": real("sqrt", ctx.sqrt, 0.0),
        "tanh": ctx.tanh,
        "sign": ctx.sign,
    }


def _sides(a: Any, b: Any) -> tuple[Any, ...]:
    return (a > b, a < b)


def _extreme(reduce: Callable[..., Any]) -> Callable[..., tuple[Any, ...]]:
    return lambda a, axis=None, keepdims=False: (a == reduce(a, axis=axis, keepdims=True),)


# For each non-analytic function, the comparisons that decide its branch: phi is analytic
# along a segment on which none of them changes.
_BRANCHES: dict[str, Callable[..., tuple[Any, ...]]] = {
    "abs": lambda a: _sides(a, 0),
    "sign": lambda a: _sides(a, 0),
    "maximum": _sides,
    "minimum": _sides,
    "max": _extreme(np.max),
    "min": _extreme(np.min),
    "where": lambda c, a, b: (c,),
}


def _traced(fn: Callable[..., Any], sides: Callable[..., tuple[Any, ...]], out: list[bytes]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        out.append(b"|".join(np.asarray(c, dtype=bool).tobytes() for c in sides(*args, **kwargs)))
        return fn(*args, **kwargs)

    return call


@dataclass
class RefereeGradient:
    """The referee's gradient of every input (float64 arrays shaped like the inputs).

    ``values`` are the float64 numbers nearest to the high-precision ones in ``exact`` (object
    arrays of mpf), ``error`` an estimate of the absolute error of ``exact``, ``kinks`` the
    elements within two steps of a point where phi has no derivative (their ``values`` are
    then the mean of the two one-sided slopes, no derivative, with an error of half their gap).
    Elements not asked for are NaN (``exact``: None).
    """

    values: dict[str, np.ndarray]
    error: dict[str, np.ndarray]
    kinks: dict[str, np.ndarray]
    exact: dict[str, np.ndarray]
    digits: int
    source: str  # "forward" (differences of phi) or "backward" (the backward program)
    seconds: float = 0.0

    def true_error(self, name: str, values: np.ndarray) -> np.ndarray:
        """|values - exact| per element, computed at the referee's precision (NaN where unknown)."""
        ctx = mpmath.MPContext()
        ctx.dps = self.digits
        flat = np.asarray(values, dtype=np.float64).reshape(-1)
        exact = self.exact[name].reshape(-1)
        out = np.full(flat.shape, np.nan)
        for i, (v, e) in enumerate(zip(flat, exact, strict=True)):
            if e is not None and math.isfinite(v):
                out[i] = float(abs(ctx.mpf(float(v)) - e))
            elif e is not None:
                out[i] = math.inf
        return out.reshape(np.shape(values))


def referee_available(case: Case) -> str | None:
    """None when the referee can judge ``case``; else why not."""
    if case.forward.program is None:
        return f"the referee needs programs: the forward is the callable `{case.forward.label}`"
    return None


def _need(case: Case, backward: bool = False) -> None:
    why = referee_available(case)
    if why is None and backward and (case.backward is None or case.backward.program is None):
        label = "missing" if case.backward is None else f"the callable `{case.backward.label}`"
        why = f"the referee needs programs: the backward is {label}"
    if why is not None:
        raise case.error(why, key="backward" if backward and case.forward.program is not None else "forward")


class _Phi:
    """phi = sum over outputs of sum(upstream * output), at one precision."""

    def __init__(self, case: Case, be: MpmathBackend) -> None:
        self.case = case
        self.be = be
        self.upstreams = {o: None if u is None else be.asarray(u) for o, u in case.upstreams.items()}

    def outputs(self, env: Mapping[str, Any]) -> dict[str, Any]:
        return self.case.forward.run(env, self.be)

    def __call__(self, env: Mapping[str, Any]) -> Any:
        values = self.outputs(env)
        phi = self.be.zero
        for o, up in self.upstreams.items():
            out = self.be._obj(values[o])
            phi = phi + np.sum(out if up is None else up * out)
        if not isinstance(phi, self.be.ctx.mpf):  # mpc: a power left the real line
            raise self.case.error("the forward leaves the real numbers at this point", key="forward")
        return phi


def _step(be: MpmathBackend, x: Any, scale: Any) -> Any:
    """A power of two near 10^(-digits/3) of the element (of the input's scale where it is 0)."""
    size = abs(x) if x != 0 else scale
    if size == 0:
        size = be.one
    exponent = int(be.ctx.floor(be.ctx.log(size, 2))) - round(be.digits / 3 * math.log2(10))
    return be.ctx.ldexp(be.one, exponent)


class _Stencil:
    """phi at x + k h, k = -2..2, along one element, at the referee's precision and finer."""

    def __init__(self, phis: tuple[_Phi, _Phi], bases: tuple[dict[str, Any], dict[str, Any]], f0: tuple[Any, Any]):
        self.phis, self.bases, self.f0 = phis, bases, f0

    def values(self, name: str, j: int, h: Any) -> list[list[Any]]:
        """For each precision: [f(-2h), f(-h), f(0), f(h), f(2h)]."""
        out = []
        for phi, base, f0 in zip(self.phis, self.bases, self.f0, strict=True):
            x = np.asarray(base[name], dtype=object).reshape(-1)[j]
            step = phi.be.mpf(h)
            row = []
            for k in (-2, -1, 1, 2):
                arr = np.array(base[name], dtype=object, copy=True)
                arr.reshape(-1)[j] = x + k * step  # exact: h is a power of two within x's precision
                row.append(phi({**base, name: arr}))
            out.append([row[0], row[1], f0, row[2], row[3]])
        return out


def _derivatives(f: list[Any], h: Any) -> tuple[Any, Any, Any]:
    """The two one-sided extrapolations (error O(h^2)) and the central one (O(h^4))."""
    fm2, fm1, f0, fp1, fp2 = f
    two = 2 * h
    right = (-fp2 + 4 * fp1 - 3 * f0) / two
    left = (fm2 - 4 * fm1 + 3 * f0) / two
    c1 = (fp1 - fm1) / two
    c2 = (fp2 - fm2) / (2 * two)
    return right, left, (4 * c1 - c2) / 3


def referee_gradient(
    case: Case,
    point: Mapping[str, np.ndarray],
    elements: Mapping[str, Any] | None = None,
    digits: int = DEFAULT_DIGITS,
) -> RefereeGradient:
    """The true gradient of phi at ``point`` from the forward program alone, at ``digits``.

    ``elements``: input name -> flat indices to differentiate (None: every element of every
    input; an input left out: none of its elements). Each element costs four evaluations of
    phi at ``digits`` and four `_EXTRA_DIGITS` finer, whose difference measures the rounding
    (terms that cancel inside the program show there, whatever their size).
    """
    _need(case)
    start = time.perf_counter()
    be, fine = MpmathBackend(digits), MpmathBackend(digits + _EXTRA_DIGITS)
    phis = (_Phi(case, be), _Phi(case, fine))
    bases = tuple({k: b.asarray(np.asarray(v)) for k, v in point.items()} for b in (be, fine))
    stencil = _Stencil(phis, (bases[0], bases[1]), (phis[0](bases[0]), phis[1](bases[1])))
    values, errors, kinks, exact = {}, {}, {}, {}
    chosen: Mapping[str, Any] = elements if elements is not None else dict.fromkeys(point)
    for name, x in bases[1].items():
        shape = np.shape(x)
        flat = np.asarray(x, dtype=object).reshape(-1)
        asked: Any = chosen.get(name, [])
        idx = np.arange(flat.size) if asked is None else np.asarray(asked, dtype=np.int64).reshape(-1)
        scale = max((abs(v) for v in flat), default=fine.zero)
        vals = np.full(flat.size, np.nan)
        errs = np.full(flat.size, np.nan)
        kink = np.zeros(flat.size, dtype=bool)
        ex = np.full(flat.size, None, dtype=object)
        for j in idx:
            d, e, k = _element(stencil, name, int(j), fine.mpf(_step(be, flat[j], scale)), fine, digits)
            ex[j], vals[j], errs[j], kink[j] = d, fine.to_float(d), fine.to_float(e), k
        values[name], errors[name] = vals.reshape(shape), errs.reshape(shape)
        kinks[name], exact[name] = kink.reshape(shape), ex.reshape(shape)
    return RefereeGradient(values, errors, kinks, exact, digits, "forward", time.perf_counter() - start)


# A step shrinks by this factor to tell a kink (the one-sided slopes keep their gap) from a
# smooth function (the gap falls as h^3) or a second-derivative jump (as h).
_SHRINK = 2**-10


def _element(stencil: _Stencil, name: str, j: int, h: Any, fine: MpmathBackend, digits: int) -> tuple[Any, Any, bool]:
    """Derivative, error estimate and kink flag of phi along element j of ``name``.

    Where the one-sided values differ by more than the smooth model allows, the step shrinks
    1024-fold: a kink at the point keeps the gap (it is the slope's jump); anything else loses
    it (a smooth phi whose slope vanishes at the point, a kink within 2h but not within the
    new step), and the smaller step's values are the answer.
    """
    value, err, jump, suspect = _one_step(stencil, name, j, h, fine, digits)
    if not suspect:
        return value, err, False
    value2, err2, jump2, _ = _one_step(stencil, name, j, h * _SHRINK, fine, digits)
    return value2, err2, bool(jump2 > jump / 4)


def _one_step(
    stencil: _Stencil, name: str, j: int, h: Any, fine: MpmathBackend, digits: int
) -> tuple[Any, Any, Any, bool]:
    """Value, error estimate, one-sided gap and whether the gap suggests a kink, at step h.

    The value is the mean of the one-sided extrapolations: each sees one side of the point
    only, so it stays O(h^2)-accurate where the second derivative jumps at the point itself
    (ELU at 0), where the central extrapolation is only O(h). Where phi is smooth the central
    one is O(h^4), so twice the gap between the two bounds the mean's truncation; where a
    second derivative jumps, the gap is O(h) and the bound generous. The one-sided values
    differ by the slope's jump where a kink lies within 2h.
    """
    coarse, f = stencil.values(name, j, h)
    right, left, central = _derivatives(f, fine.mpf(h))
    r_c, l_c, c_c = (fine.mpf(v) for v in _derivatives(coarse, stencil.phis[0].be.mpf(h)))
    value = (right + left) / 2
    jump = abs(right - left)
    # rounding at `digits`, measured against the finer run: it bounds the finer run's by far
    rounding = abs(r_c - right) + abs(l_c - left) + abs(c_c - central)
    size = max(abs(right), abs(left), abs(central))
    # never below a unit in the last digit: exact arithmetic measures no rounding at all
    err = 2 * abs(value - central) + jump / 2 + rounding + fine.ctx.mpf(10) ** (-digits) * size
    suspect = bool(jump > fine.ctx.mpf(10) ** (-digits / 4) * size + 4 * rounding)
    return value, err, jump, suspect


def referee_backward(case: Case, point: Mapping[str, np.ndarray], digits: int = DEFAULT_DIGITS) -> RefereeGradient:
    """The backward program evaluated at ``digits`` (after the forward program at ``digits``).

    Its error is measured against the same programs `_EXTRA_DIGITS` finer; a kink is never
    flagged (the backward is a formula, not a difference)."""
    _need(case, backward=True)
    start = time.perf_counter()
    grads = _backward_at(case, point, MpmathBackend(digits))
    fine_be = MpmathBackend(digits + _EXTRA_DIGITS)
    fine = _backward_at(case, point, fine_be)
    be = MpmathBackend(digits)
    values, errors, kinks, exact = {}, {}, {}, {}
    for name, g in grads.items():
        pairs = zip(g.reshape(-1), fine[name].reshape(-1), strict=True)
        diff = np.array([be.to_float(abs(fine_be.mpf(a) - b)) for a, b in pairs])
        values[name] = np.array([be.to_float(v) for v in g.reshape(-1)]).reshape(g.shape)
        errors[name] = diff.reshape(g.shape)
        kinks[name] = np.zeros(g.shape, dtype=bool)
        exact[name] = g
    return RefereeGradient(values, errors, kinks, exact, digits, "backward", time.perf_counter() - start)


def _backward_at(case: Case, point: Mapping[str, np.ndarray], be: MpmathBackend) -> dict[str, np.ndarray]:
    assert case.backward is not None
    values = case.forward.run({k: be.asarray(np.asarray(v)) for k, v in point.items()}, be)
    douts = {}
    for o, up in case.upstreams.items():
        douts[f"d{o}"] = be.asarray(up) if up is not None else be.ones_like(values[o])
    values = case.backward.run({**values, **douts}, be)
    grads = {}
    for name, x in point.items():
        g = np.asarray(be._obj(values[f"d{name}"]), dtype=object)
        if g.shape != np.shape(x):
            raise case.error(
                f"shape mismatch: `d{name}` has shape {g.shape} but input `{name}` has shape {np.shape(x)}",
                key="backward",
            )
        grads[name] = g
    return grads


def referee_kink_distance(
    case: Case,
    point: Mapping[str, np.ndarray],
    name: str,
    j: int,
    radius: float,
    digits: int = DEFAULT_DIGITS,
) -> float | None:
    """How far along element ``j`` of ``name`` the nearest true kink of phi lies, if within ``radius``.

    On each side, the branches of every non-analytic call (abs, maximum, where, ...) are compared
    at the point and at ``radius``; where they differ, bisection finds a point where a branch
    switches to 2^-90 of the radius, and the referee's one-sided test decides whether the slope
    jumps there (a kink) or only the second derivative (ELU at 0: differentiable, not counted).
    A segment whose branches switch and switch back on one side is taken as smooth: the test
    sees the ends only. None: no true kink found within ``radius``.
    """
    _need(case)
    branches: list[bytes] = []
    be = MpmathBackend(digits, branches)
    phi = _Phi(case, be)
    base = {k: be.asarray(np.asarray(v)) for k, v in point.items()}
    x = np.asarray(base[name], dtype=object).reshape(-1)[j]
    r = be.ctx.ldexp(be.one, int(math.floor(math.log2(radius))))  # a power of two: x + t stays exact

    def signature(t: Any) -> tuple[bytes, ...]:
        arr = np.array(base[name], dtype=object, copy=True)
        arr.reshape(-1)[j] = x + t
        branches.clear()
        phi({**base, name: arr})
        return tuple(branches)

    here = signature(be.zero)
    found: list[float] = []
    for side in (1, -1):
        if signature(side * r) == here:
            continue
        lo, hi = be.zero, r  # the branches at x + side * lo are the point's, at x + side * hi not
        for _ in range(90):
            mid = (lo + hi) / 2
            if signature(side * mid) == here:
                lo = mid
            else:
                hi = mid
        if _kink_at(case, point, name, j, x + side * hi, r * be.ctx.ldexp(be.one, -60), digits):
            found.append(float(hi))
    return min(found) if found else None


def _kink_at(case: Case, point: Mapping[str, np.ndarray], name: str, j: int, at: Any, h: Any, digits: int) -> bool:
    """The one-sided test of `_element` with element j of ``name`` moved to ``at`` (an mpf)."""
    be, fine = MpmathBackend(digits), MpmathBackend(digits + _EXTRA_DIGITS)
    phis = (_Phi(case, be), _Phi(case, fine))
    bases = []
    for b in (be, fine):
        base = {k: b.asarray(np.asarray(v)) for k, v in point.items()}
        arr = np.array(base[name], dtype=object, copy=True)
        arr.reshape(-1)[j] = b.mpf(at)  # exact: `at` has fewer bits than either precision
        base[name] = arr
        bases.append(base)
    stencil = _Stencil(phis, (bases[0], bases[1]), (phis[0](bases[0]), phis[1](bases[1])))
    return _element(stencil, name, j, fine.mpf(h), fine, digits)[2]


class _CountingBackend(NumpyBackend):
    """float64 numpy that counts the scalar operations a 50-digit evaluation repeats one by one:
    every statement's result, and the multiply-adds of each matmul and dot."""

    def __init__(self) -> None:
        super().__init__("float64")
        self.ops = 0
        dot = self.functions["dot"]

        def counted_dot(a: Any, b: Any) -> Any:
            out = dot(a, b)
            self.ops += _multiply_adds(a, out)
            return out

        self.functions = {**self.functions, "dot": counted_dot}

    def matmul(self, a: Any, b: Any) -> Any:
        out = super().matmul(a, b)
        self.ops += _multiply_adds(a, out)
        return out

    def settle(self, value: Any) -> Any:
        self.ops += int(np.size(value))
        return super().settle(value)


def _multiply_adds(a: Any, out: Any) -> int:
    """Of a product of ``a`` with something giving ``out``: each output element sums over a's
    last axis."""
    return max(1, int(np.size(out))) * (int(np.shape(a)[-1]) if np.ndim(a) else 1)


def referee_cost(case: Case, point: Mapping[str, np.ndarray]) -> int:
    """About how many scalar operations one evaluation of the forward program at ``point``
    takes; the referee does each in mpmath (some microseconds apiece), eight times per element
    it is asked about."""
    be = _CountingBackend()
    assert case.forward.program is not None
    case.forward.run({k: be.asarray(np.asarray(v)) for k, v in point.items()}, be)
    return be.ops
