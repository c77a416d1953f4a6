"""The hand-written source: the case's backward (program or callable) in the check's dtype.

On the CPU in float64 and float32 it runs on numpy; in bfloat16 and float16 (numpy has no
bfloat16) and on any other device it runs on torch tensors on that device
(:func:`manual_backend`), so a CUDA check runs the hand-written backward on CUDA.

In bfloat16 and float16 a callable gets tensors of the dtype (a kernel decides its own
arithmetic), while a program runs as a sequence of kernels (:class:`StoredBackend`): each
statement computes in float32 from values stored in the dtype and stores its result in the
dtype, as torch's own elementwise and reduction kernels do. A program cannot say where it
accumulates, so per-operation rounding would judge the language rather than the formula.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .._backends import Backend, NumpyBackend, TorchBackend
from .._case import Case
from .._case_callables import RefusedGradient
from .._devices import get_device
from .._dtypes import is_low_precision, to_float64, torch_dtype
from . import Gradients

__all__ = [
    "LONGDOUBLE_MAX_ELEMENTS",
    "REFUSED",
    "StoredBackend",
    "higher_precision",
    "manual_backend",
    "manual_gradients",
    "run_forward",
    "run_programs",
    "upstream_gradients",
]

# The float64 rounding is measured by a long double rerun only up to this many input elements
# in all (the size where --mode auto stops checking every element).
LONGDOUBLE_MAX_ELEMENTS = 1 << 14


class StoredBackend(TorchBackend):
    """Programs in bfloat16 or float16: float32 arithmetic within a statement, every value
    (inputs, constants, each statement's result) stored in ``storage``."""

    def __init__(self, storage: torch.dtype, device: str | torch.device = "cpu") -> None:
        super().__init__(torch.float32, device)
        self.storage = storage
        self.name = f"torch/{storage} storage, float32 arithmetic/{self.device}"

    def asarray(self, value: Any) -> torch.Tensor:
        return super().asarray(value).to(self.storage).to(torch.float32)

    def settle(self, value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value.to(self.storage).to(torch.float32)
        return value


REFUSED = "manual: "  # a note of the manual source the case's notes carry


def manual_backend(dtype: str, device: str = "cpu", programs: bool = False) -> Backend:
    """numpy on the CPU in float64, float32 and long double; torch on ``device`` otherwise.
    ``programs``: the forward and the backward are both programs (see :class:`StoredBackend`)."""
    where = get_device(device)
    if where.numpy and not is_low_precision(dtype):
        return NumpyBackend(dtype)
    if dtype == "longdouble":
        raise ValueError("torch has no long double")
    if programs and is_low_precision(dtype):
        return StoredBackend(torch_dtype(dtype), where.torch)
    return TorchBackend(torch_dtype(dtype), where.torch)


def _programs(case: Case) -> bool:
    return case.forward.program is not None and case.backward is not None and case.backward.program is not None


def upstream_gradients(case: Case, values: Mapping[str, Any], be: Backend) -> dict[str, Any]:
    """``d<output>`` for every output: the case's upstream, or ones (a loss: 1)."""
    douts: dict[str, Any] = {}
    for o in case.outputs:
        if o not in values:
            raise case.error(f"the forward produced no output `{o}`", key="forward")
        out = values[o]
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else np.shape(out)
        up = case.upstreams.get(o)
        if up is not None:
            if up.shape != shape:
                raise case.error(
                    f"upstream gradient has shape {up.shape} but output `{o}` has shape {shape}",
                    key="upstream",
                )
            douts[f"d{o}"] = be.asarray(up)
        else:
            douts[f"d{o}"] = be.ones_like(out)
    return douts


def run_forward(case: Case, point: Mapping[str, np.ndarray], dtype: str = "float64") -> dict[str, Any]:
    be = NumpyBackend(dtype)
    return case.forward.run({k: be.asarray(v) for k, v in point.items()}, be)


def run_programs(
    case: Case, point: Mapping[str, np.ndarray], dtype: str = "float64", device: str = "cpu"
) -> dict[str, Any]:
    """Every value the forward and backward compute, as the notebook's cells print them."""
    be = manual_backend(dtype, device, _programs(case))
    values = case.forward.run({k: be.asarray(v) for k, v in point.items()}, be)
    if case.backward is None:
        return values
    return case.backward.run({**values, **upstream_gradients(case, values, be)}, be)


def higher_precision(dtype: str) -> str | None:
    """The dtype that measures ``dtype``'s rounding: float64 for float32 (and for bfloat16 and
    float16, where the rerun tells a wrong formula from lost precision), long double for float64
    where it is wider than double (x86: 64-bit mantissa), else none."""
    if dtype == "float32" or is_low_precision(dtype):
        return "float64"
    if dtype == "float64" and np.finfo(np.longdouble).eps < np.finfo(np.float64).eps:
        return "longdouble"
    return None


def manual_gradients(case: Case, point: Mapping[str, np.ndarray], dtype: str, device: str = "cpu") -> Gradients:
    assert case.backward is not None
    start = time.perf_counter()
    notes = []
    try:
        grads = _gradients(case, point, dtype, device)
    except RefusedGradient as exc:
        # no values to compare: NaN fails the manual source against the other two, and the
        # case's notes say why (REFUSED)
        grads = {n: np.full(np.shape(v), np.nan) for n, v in point.items()}
        notes.append(f"{REFUSED}{exc.message}")
    hi = higher_precision(dtype)
    if hi == "longdouble" and not isinstance(manual_backend(dtype, device), NumpyBackend):
        hi = None  # torch has no long double
    size = sum(int(np.asarray(v).size) for v in point.values())
    if notes:
        hi = None
    if hi == "longdouble" and not case.backward.longdouble:
        hi = None
    elif hi == "longdouble" and size > LONGDOUBLE_MAX_ELEMENTS:
        # numpy has no BLAS for long double: a 1024x1024 matmul takes 10 s instead of 16 ms.
        hi = None
        notes.append(f"no long double rerun above {LONGDOUBLE_MAX_ELEMENTS} input elements")
    reference = _gradients(case, point, hi, device) if hi else None
    get_device(device).synchronize()
    return Gradients(
        "manual",
        grads,
        dtype,
        device,
        method=case.backward.label,
        seconds=time.perf_counter() - start,
        reference=reference,
        reference_dtype=hi or "",
        notes=notes,
    )


def _gradients(case: Case, point: Mapping[str, np.ndarray], dtype: str, device: str) -> dict[str, np.ndarray]:
    backward = case.backward
    assert backward is not None
    values = run_programs(case, point, dtype, device)
    grads: dict[str, np.ndarray] = {}
    for name, x in point.items():
        g = _as_array(values[f"d{name}"])
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


def _as_array(value: Any) -> np.ndarray:
    """A returned gradient as numpy: a floating tensor of any dtype or device through float64
    (numpy has no bfloat16), anything else as it is, for the checks above to judge."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return to_float64(value) if value.is_floating_point() else value.numpy()
    return np.asarray(value)


def _line(backward: Any, name: str) -> int | None:
    """Where ``d<name>`` comes from: the backward program's last assignment to it, or the call."""
    if backward.program is None:
        return backward.call.line if backward.call else None
    return max((s.line for s in backward.statements if s.target == f"d{name}"), default=None)
