"""The hand-written source: the case's backward program, run on numpy in the check's dtype."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._backends import NumpyBackend
from .._case import Case
from . import Gradients

__all__ = ["manual_gradients", "run_programs", "higher_precision", "LONGDOUBLE_MAX_ELEMENTS"]

# The float64 rounding is measured by a long double rerun only up to this many input elements
# in all (the size where --mode auto stops checking every element).
LONGDOUBLE_MAX_ELEMENTS = 1 << 14


def run_programs(case: Case, point: Mapping[str, np.ndarray], dtype: str = "float64") -> dict[str, Any]:
    """Every value the forward and backward programs compute, as the notebook's cells print them."""
    be = NumpyBackend(dtype)
    env = {k: be.asarray(v) for k, v in point.items()}
    values = case.forward.run(env, be)
    out = np.asarray(values[case.output])
    if case.backward is None:
        return values
    if case.upstream is not None:
        if case.upstream.shape != out.shape:
            raise case.error(
                f"upstream gradient has shape {case.upstream.shape} but output `{case.output}` has shape {out.shape}",
                key="upstream",
            )
        dout = be.asarray(case.upstream)
    else:
        dout = be.ones_like(out)
    return case.backward.run({**values, f"d{case.output}": dout}, be)


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
    if hi == "longdouble" and size > LONGDOUBLE_MAX_ELEMENTS:
        # numpy has no BLAS for long double: a 1024x1024 matmul takes 10 s instead of 16 ms.
        hi = None
        notes.append(f"no long double rerun above {LONGDOUBLE_MAX_ELEMENTS} input elements")
    reference = _gradients(case, point, hi) if hi else None
    return Gradients(
        "manual",
        grads,
        dtype,
        "cpu",
        method="backward program",
        seconds=time.perf_counter() - start,
        reference=reference,
        reference_dtype=hi or "",
        notes=notes,
    )


def _gradients(case: Case, point: Mapping[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    assert case.backward is not None
    values = run_programs(case, point, dtype)
    grads: dict[str, np.ndarray] = {}
    for name, x in point.items():
        g = np.asarray(values[f"d{name}"])
        if g.shape != x.shape:
            line = max((s.line for s in case.backward.statements if s.target == f"d{name}"), default=None)
            raise case.error(
                f"shape mismatch: `d{name}` has shape {g.shape} but input `{name}` has shape {x.shape}",
                line=line,
                key="backward",
            )
        grads[name] = g.astype(np.float64)
    return grads
