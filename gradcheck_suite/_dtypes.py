"""The dtypes a check runs in, and how values are rounded to them.

numpy has no bfloat16, so every value is carried between sources as a float64 numpy array that
holds exactly the numbers the check's dtype can represent: rounding goes through torch (whose
bfloat16 and float16 round to nearest even, as the kernels under test do), and a low-precision
tensor converts to float64 without loss. The low-precision dtypes run on torch only (see
``gradcheck_suite._devices``); ``ml_dtypes`` would give numpy a bfloat16, but numpy code is
not where bfloat16 kernels live, and torch's bfloat16 kernels (float32 accumulation in its
reductions and matmuls) are the ones a reference is written with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = [
    "DTYPES",
    "LOW_PRECISION",
    "TF32_UNIT_ROUNDOFF",
    "is_low_precision",
    "round_to",
    "to_float64",
    "torch_dtype",
    "unit_roundoff",
]

# float64 and float32 are judged by the rounding rule; the two below by the low-precision rule
# (a multiple of the reference's own error at the same dtype, gradcheck_suite._lowprecision)
LOW_PRECISION = ("bfloat16", "float16")
DTYPES = ("float64", "float32", *LOW_PRECISION)

# TF32 keeps 10 of float32's 23 mantissa bits in a tensor core's matmul: its unit roundoff
TF32_UNIT_ROUNDOFF = 2.0**-11

# The unit roundoff of each: half the distance from 1 to the next number (52, 23, 7 and 10
# stored mantissa bits). Numbers, not torch.finfo: the command line's parser reads this module
# (--dtype's choices) without importing torch.
_UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24, "bfloat16": 2.0**-8, "float16": 2.0**-11}


def torch_dtype(name: str) -> torch.dtype:
    import torch

    return {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[
        name
    ]


def is_low_precision(dtype: str) -> bool:
    return dtype in LOW_PRECISION


def unit_roundoff(dtype: str) -> float:
    """Half the distance from 1 to the next number: the largest relative error of one rounding."""
    return _UNIT_ROUNDOFF[dtype]


def round_to(value: Any, dtype: str) -> np.ndarray:
    """``value`` rounded to ``dtype``, returned as float64 (every number of ``dtype`` is one)."""
    import numpy as np
    import torch

    a = np.asarray(value, dtype=np.float64)
    if dtype == "float64":
        return a
    if dtype in ("float32", "float16"):
        return a.astype(dtype).astype(np.float64)
    return torch.from_numpy(np.ascontiguousarray(a)).to(torch_dtype(dtype)).to(torch.float64).numpy().reshape(a.shape)


def to_float64(value: Any) -> np.ndarray:
    """A source's result (numpy array, number or tensor of any float dtype, any device) as a
    float64 numpy array; exact for every dtype the check runs in."""
    import numpy as np
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float64).numpy()
    return np.asarray(value).astype(np.float64)
