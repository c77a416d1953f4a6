"""The hand-written source: the case's backward (program or callable), on numpy in the check's dtype."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._backends import NumpyBackend
from .._case import Case
from . import Gradients

__all__ = [
    "LONGDOUBLE_MAX_ELEMENTS",
    "higher_precision",
    "manual_gradients",
    "run_forward",
    "run_programs",
    "upstream_gradients",
]

# The float64 rounding is measured by a long double rerun only up to this many input elements
# in all (the size where --mode auto stops checking every element).
LONGDOUBLE_MAX_ELEMENTS = 1 << 14


def upstream_gradients(case: Case, values: Mapping[str, Any], be: NumpyBackend) -> dict[str, Any]:
    """``d<output>`` for every output: the case's upstream, or ones (a loss: 1)."""
    douts: dict[str, Any] = {}
    for o in case.outputs:
        if o not in values:
            raise case.error(f"the forward produced no output `{o}`", key="forward")
        out = np.asarray(values[o])
        up = case.upstreams.get(o)
        if up is not None:
            if up.shape != out.shape:
                raise case.error(
                    f"upstream gradient has shape {up.shape} but output `{o}` has shape {out.shape}",
                    key="upstream",
                )
            douts[f"d{o}"] = be.asarray(up)
        else:
            douts[f"d{o}"] = be.ones_like(out)
    return douts


def run_forward(case: Case, point: Mapping[str, np.ndarray], dtype: str = "float64") -> dict[str, Any]:
    be = NumpyBackend(dtype)
    return case.forward.run({k: be.asarray(v) for k, v in point.items()}, be)


def run_programs(case: Case, point: Mapping[str, np.ndarray], dtype: str = "float64") -> dict[str, Any]:
    """Every value the forward and backward compute, as the notebook's cells print them."""
    be = NumpyBackend(dtype)
    values = case.forward.run({k: be.asarray(v) for k, v in point.items()}, be)
    if case.backward is None:
        return values
    return case.backward.run({**values, **upstream_gradients(case, values, be)}, be)


def higher_precision(dtype: str) -> str | None:
    """The dtype that measures ``dtype``'s rounding: float64 for float32, long double for float64
    where it is wider than double (x86: 64-bit mantissa), else none."""
    if dtype == "float32":
        return "float64"
    if dtype == "float64" and np.finfo(np.longdouble).eps < np.finfo(np.float64).eps:
        return "longdouble"
    return None


def manual_gradients(case: Case, point: Mapping[str, np.ndarray], dtype: str) -> Gradients:
    assert case.backward is not None
    start = time.perf_counter()
    grads = _gradients(case, point, dtype)
    hi = higher_precision(dtype)
    size = sum(int(np.asarray(v).size) for v in point.values())
    notes = []
    if hi == "longdouble" and not case.backward.longdouble:
        hi = None
    elif hi == "longdouble" and size > LONGDOUBLE_MAX_ELEMENTS:
        # numpy has no BLAS for long double: a 1024x1024 matmul takes 10 s instead of 16 ms.
        hi = None
        notes.append(f"no long double rerun above {LONGDOUBLE_MAX_ELEMENTS} input elements")
    reference = _gradients(case, point, hi) if hi else None
    return Gradients(
        "manual",
        grads,
        dtype,
        "cpu",
        method=case.backward.label,
        seconds=time.perf_counter() - start,
        reference=reference,
        reference_dtype=hi or "",
        notes=notes,
    )


def _gradients(case: Case, point: Mapping[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    backward = case.backward
    assert backward is not None
    values = run_programs(case, point, dtype)
    grads: dict[str, np.ndarray] = {}
    for name, x in point.items():
        g = np.asarray(values[f"d{name}"])
        if g.dtype.kind != "f":
            # astype(float64) would drop an imaginary part, or read a mask as numbers, silently
            what = "complex" if g.dtype.kind == "c" else f"{g.dtype} (not floating-point)"
            raise case.error(
                f"backward `{backward.label}` returned d{name} as {what} values; a gradient of real inputs"
                " is a real floating-point array",
                line=_line(backward, name),
                key="backward",
            )
        if g.shape != x.shape:
            if backward.call is not None or backward.program is None:
                raise case.error(
                    f"backward `{backward.label}` returned d{name} of shape {g.shape}"
                    f" but input `{name}` has shape {x.shape}",
                    line=backward.call.line if backward.call else None,
                    key="backward",
                )
            raise case.error(
                f"shape mismatch: `d{name}` has shape {g.shape} but input `{name}` has shape {x.shape}",
                line=_line(backward, name),
                key="backward",
            )
        grads[name] = g.astype(np.float64)
    return grads


def _line(backward: Any, name: str) -> int | None:
    """Where ``d<name>`` comes from: the backward program's last assignment to it, or the call."""
    if backward.program is None:
        return backward.call.line if backward.call else None
    return max((s.line for s in backward.statements if s.target == f"d{name}"), default=None)
