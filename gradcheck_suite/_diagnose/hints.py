"""Hints: what the shape of a disagreement says about the bug, for any pair of sources.

Given what one source computed (``got``) and what another says (``want``), a hint is a simple
model of their difference that explains it: its largest residual is at most ``EXPLAINS`` of
the largest difference, plus the pair's noise (4 x the numeric error estimate for a pair with
the numeric source). A model that explains the whole difference is named alone:

* ``zeros``: got is zero everywhere (the gradient never written);
* ``sign``: got = -want;
* ``ratio``: got = c want, with the missing or extra factor;
* ``transpose``: got is want with its last two axes swapped;
* ``missing_term``: the difference is one term (programs: a forward edge into the input, or a
  term a backward line adds);
* ``reduction_axis``: got is the upstream gradient summed (or averaged) over other axes than want.

Otherwise the partial models, as many as apply:

* ``reduction_axis``: the difference does not vary along an axis (a reduction over the wrong
  axis, or a term broadcast along it);
* ``zeros``: at (nearly) every disagreeing element got is 0 and want is not;
* ``region``: the disagreeing elements lie where the windows of a pooling or convolution case
  overlap, within a band at the border of the last two axes, or at a few indices of one axis.

For program cases, the blamed line is also tried with each single edit of ``gradcheck
mutate``; an edit that makes the failing input gradients right is a hint of its own
(``reduction_axis`` for an axis, ``transpose``, ``sign``, ``constant``, ``variable``,
``accumulation``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .geometry import Windows, coverage

__all__ = ["EXPLAINS", "Hint", "array_hints", "describe"]

EXPLAINS = 1e-3
_REGION_AT_MOST = 0.75  # a "region" covering more than this of the elements says nothing
_BORDER = 4  # the widest band called a border (wider when a case pads more)


@dataclass(frozen=True)
class Hint:
    input: str
    pair: str  # "manual-autograd", in the sources' order
    kind: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"input": self.input, "pair": self.pair, "kind": self.kind, "message": self.message}


def _number(c: float) -> str:
    f = Fraction(c).limit_denominator(64)
    if f.denominator != 1 and abs(float(f) - c) <= 1e-9 * abs(c):
        return f"{f.numerator}/{f.denominator}"
    if abs(round(c) - c) <= 1e-9 * max(abs(c), 1.0):
        return str(round(c))
    return f"{c:.6g}"


def _simple(c: float) -> bool:
    f = Fraction(c).limit_denominator(16)
    return abs(float(f) - c) <= 1e-9 * abs(c) and abs(f.numerator) <= 64


def _factor(c: float, sizes: Mapping[str, tuple[int, ...]]) -> str:
    big = abs(c) if abs(c) >= 1 else 1 / abs(c)
    text = f"an extra factor of {_number(big)}" if abs(c) >= 1 else f"a missing factor of {_number(big)}"
    n = round(big)
    if abs(n - big) <= 1e-9 * big and n > 1:
        where = [f"axis {k} of `{name}`" for name, shape in sizes.items() for k, s in enumerate(shape) if s == n]
        if where:
            text += f" ({n} is the length of {where[0]}: a sum where a mean belongs, or a mean where a sum does?)"
    if c < 0:
        text += ", and the sign is flipped"
    return text


class _Model:
    def __init__(self, got: np.ndarray, want: np.ndarray, noise: float) -> None:
        self.got, self.want = got, want
        self.diff = got - want
        self.big = float(np.max(np.abs(self.diff))) if self.diff.size else 0.0
        self.tol = EXPLAINS * self.big + noise

    def explains(self, residual: np.ndarray) -> bool:
        return bool(np.all(np.abs(residual) <= self.tol))


def _whole(
    m: _Model,
    g: str,
    w: str,
    terms: Mapping[str, np.ndarray],
    upstreams: Mapping[str, np.ndarray],
    sizes: Mapping[str, tuple[int, ...]],
) -> list[tuple[str, str]]:
    got, want = m.got, m.want
    if np.all(got == 0) and np.any(np.abs(want) > m.tol):
        return [("zeros", f"{g} is zero everywhere and {w} is not: the gradient is never written, or never reaches it")]
    if m.explains(got + want):
        return [("sign", f"{g} = -{w}: the sign is flipped")]
    found = []
    for label, t in terms.items():
        if t.size != got.size:
            continue
        t = t.reshape(got.shape)
        if m.explains(want - got - t):
            found.append(("missing_term", f"{w} - {g} is {label}: a missing term"))
        elif m.explains(got - want - t):
            found.append(("missing_term", f"{g} - {w} is {label}: a term too many"))
    if found:
        return found[:1]
    ww = float(np.sum(want * want))
    if ww > 0:
        c = float(np.sum(got * want)) / ww
        # any two numbers have a ratio: for one element only a simple one says something
        if c != 0 and abs(c - 1) > 1e-9 and m.explains(got - c * want) and (got.size > 1 or _simple(c)):
            return [("ratio", f"{g} = {_number(c)} x {w} everywhere: {_factor(c, sizes)}")]
    if got.ndim >= 2 and got.shape[-1] == got.shape[-2] > 1 and m.explains(got - np.swapaxes(want, -1, -2)):
        return [("transpose", f"{g} is {w} with its last two axes swapped: a missing or extra .T, or operands swapped")]
    return _upstream_reduction(m, g, w, upstreams)


def _reductions(u: np.ndarray) -> list[tuple[str, tuple[int, ...], np.ndarray]]:
    out = []
    for r in range(1, u.ndim):
        for axes in itertools.combinations(range(u.ndim), r):
            out.append(("sum", axes, np.sum(u, axis=axes)))
            out.append(("mean", axes, np.mean(u, axis=axes)))
    return out


def _upstream_reduction(m: _Model, g: str, w: str, upstreams: Mapping[str, np.ndarray]) -> list[tuple[str, str]]:
    for name, u in upstreams.items():
        if u.ndim < 2 or u.ndim > 5:
            continue
        options = [(op, axes, r) for op, axes, r in _reductions(u) if r.size == m.got.size]
        mine = [(op, axes) for op, axes, r in options if m.explains(m.got - r.reshape(m.got.shape))]
        if not mine:
            continue
        op, axes = mine[0]
        theirs = [(o, a) for o, a, r in options if m.explains(m.want - r.reshape(m.want.shape))]
        other = f", {w} the {theirs[0][0]} over axes {list(theirs[0][1])}" if theirs else ""
        return [
            (
                "reduction_axis",
                f"{g} is the {op} of the upstream gradient `{name}` over axes {list(axes)}{other}:"
                " a reduction over the wrong axis",
            )
        ]
    return []


def _partial(m: _Model, g: str, w: str, mask: np.ndarray, windows: Windows | None) -> list[tuple[str, str]]:
    found = []
    d = m.diff
    flat = d.ndim >= 1 and d.size > 1 and m.explains(d - d.mean())
    if flat:
        found.append(
            ("reduction_axis", f"{g} - {w} is the same at every element: a constant term (a reduction or a broadcast)")
        )
    elif d.ndim >= 2:
        axes = [k for k in range(d.ndim) if d.shape[k] > 1 and m.explains(d - d.mean(axis=k, keepdims=True))]
        if axes:
            which = ", ".join(map(str, axes))
            found.append(
                (
                    "reduction_axis",
                    f"{g} - {w} does not vary along axis {which}: a reduction (sum, mean) over the wrong axis,"
                    " or a term broadcast along it",
                )
            )
    bad = int(mask.sum())
    zero = mask & (m.got == 0) & (np.abs(m.want) > m.tol)
    if bad and zero.sum() >= max(1, int(np.ceil(0.9 * bad))):
        found.append(
            (
                "zeros",
                f"{g} is 0 at {int(zero.sum())} of the {bad} disagreeing elements, where {w} is not:"
                " never written there",
            )
        )
    region = _region(mask, windows)
    if region:
        found.append(("region", region))
    return found


def _band(shape: tuple[int, ...], b: int) -> np.ndarray:
    band = np.zeros(shape, dtype=bool)
    for axis in (-1, -2):
        n = shape[axis]
        idx = [slice(None)] * len(shape)
        idx[axis] = np.r_[0:b, n - b : n]
        band[tuple(idx)] = True
    return band


def _region(mask: np.ndarray, windows: Windows | None) -> str | None:
    bad = int(mask.sum())
    if mask.ndim < 1 or bad == 0 or bad == mask.size:
        return None
    if windows is not None and mask.ndim >= 2:
        cov = np.broadcast_to(coverage(windows, mask.shape), mask.shape)
        shared = cov >= 2
        if shared.mean() <= _REGION_AT_MOST and not np.any(mask & ~shared):
            return (
                f"every disagreeing element lies where the {windows.describe()} overlap (in 2 or more windows):"
                " an accumulation that overwrites (`=` for `+=`)?"
            )
    if mask.ndim >= 2 and min(mask.shape[-2:]) >= 4:
        # a border is a few elements wide: the padding's or a kernel's reach, not a quarter of it
        widest = max((_BORDER, *(windows.pad if windows is not None else ())))
        for b in range(1, min(min(mask.shape[-2:]) // 4, widest) + 1):
            band = _band(mask.shape, b)
            if band.mean() <= _REGION_AT_MOST and not np.any(mask & ~band):
                pad = f" (the padding is {windows.pad[0]})" if windows is not None and any(windows.pad) else ""
                return (
                    f"the disagreement is confined to the border: within {b} element(s) of the edges of the"
                    f" last two axes{pad}"
                )
    best: tuple[float, int, list[int]] | None = None
    for k in range(mask.ndim):
        n = mask.shape[k]
        if n < 2:
            continue
        idx = sorted({int(i) for i in np.nonzero(mask)[k]})
        fraction = len(idx) / n
        if fraction <= 0.5 and (best is None or fraction < best[0]):
            best = (fraction, k, idx)
    if best is not None:
        _, k, idx = best
        return f"the disagreement is confined to index(es) {idx} of axis {k} (of {mask.shape[k]})"
    return None


def array_hints(
    got: np.ndarray,
    want: np.ndarray,
    g: str,
    w: str,
    *,
    noise: float = 0.0,
    mask: np.ndarray | None = None,
    windows: Windows | None = None,
    terms: Mapping[str, np.ndarray] | None = None,
    upstreams: Mapping[str, np.ndarray] | None = None,
    sizes: Mapping[str, tuple[int, ...]] | None = None,
) -> list[tuple[str, str]]:
    """(kind, message) for each model that explains how ``got`` (named ``g``) differs from
    ``want`` (``w``). Non-finite elements (a sample's unchecked ones) are left out."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64).reshape(got.shape)
    finite = np.isfinite(got) & np.isfinite(want)
    if not finite.all():
        if not finite.any():
            return []
        got, want = np.where(finite, got, 0.0), np.where(finite, want, 0.0)
    m = _Model(got, want, noise)
    if m.big == 0:
        return []
    whole = _whole(m, g, w, terms or {}, upstreams or {}, sizes or {})
    if whole:
        return whole
    if mask is None or mask.shape != got.shape:
        mask = np.abs(m.diff) > m.tol
    return _partial(m, g, w, mask & finite, windows)


def describe(got: np.ndarray, want: np.ndarray, name: str) -> str:
    """How a wrong ``d<name>`` differs from autograd's, in a few words (line blame's detail)."""
    hints = array_hints(got, want, name, "autograd's")
    return hints[0][1] if hints else ""
