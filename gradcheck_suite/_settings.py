"""How one case is checked: its dtype, the low-precision factor k, repeats and the tolerance
for run-to-run nondeterminism, from the run's options and the case file's own keys.

A value given to the run (``--dtype``, ``--k-factor``, ``--repeat``, ``--nondet-tol``; the same
keywords of ``check()``) wins over the case file's ``dtype``, ``k``, ``repeat`` and
``nondet_tol``, which win over the defaults: float64, k = 2, one run, nondet_tol = 0 (two runs
must agree exactly, as ``torch.autograd.gradcheck``'s default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ._dtypes import DTYPES, TF32_UNIT_ROUNDOFF, is_low_precision, unit_roundoff
from ._errors import UsageError

__all__ = ["DEFAULT_K", "CaseSettings", "CheckSettings", "resolve", "validate_k", "validate_nondet_tol"]

DEFAULT_K = 2.0


@dataclass(frozen=True)
class CaseSettings:
    """A case file's own ``dtype``, ``k``, ``repeat`` and ``nondet_tol`` (None: not given)."""

    dtype: str | None = None
    k: float | None = None
    repeat: int | None = None
    nondet_tol: float | None = None


@dataclass(frozen=True)
class CheckSettings:
    dtype: str
    k: float = DEFAULT_K
    repeat: int = 1
    nondet_tol: float = 0.0
    tf32: bool = False

    @property
    def low_precision(self) -> bool:
        """Judged by the low-precision rule: bfloat16, float16, or float32 with TF32."""
        return is_low_precision(self.dtype) or (self.tf32 and self.dtype == "float32")

    @property
    def unit_roundoff(self) -> float:
        if self.tf32 and self.dtype == "float32":
            return TF32_UNIT_ROUNDOFF
        return unit_roundoff(self.dtype)

    @property
    def label(self) -> str:
        return f"{self.dtype} (TF32)" if self.tf32 and self.dtype == "float32" else self.dtype


def validate_k(k: Any) -> str | None:
    """Why ``k`` is no factor of the low-precision rule, or None."""
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not math.isfinite(k) or not k >= 1:
        return f"k must be a number >= 1 (the manual's error may be k times the reference's), not {k!r}"
    return None


def validate_nondet_tol(tol: Any) -> str | None:
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not math.isfinite(tol) or tol < 0:
        return f"nondet_tol must be a number >= 0, not {tol!r}"
    return None


def resolve(
    case: CaseSettings,
    *,
    dtype: str,
    dtype_given: bool,
    k: float | None,
    repeat: int | None,
    nondet_tol: float | None,
    tf32: bool = False,
) -> CheckSettings:
    chosen = dtype if dtype_given or case.dtype is None else case.dtype
    if chosen not in DTYPES:  # the CLI, check() and case files say so earlier; a RunOptions here
        raise UsageError(f"dtype must be one of {', '.join(DTYPES)}, not {chosen!r}")
    return CheckSettings(
        dtype=chosen,
        k=k if k is not None else (case.k if case.k is not None else DEFAULT_K),
        repeat=repeat if repeat is not None else (case.repeat if case.repeat is not None else 1),
        nondet_tol=nondet_tol if nondet_tol is not None else (case.nondet_tol if case.nondet_tol is not None else 0.0),
        tf32=tf32,
    )
