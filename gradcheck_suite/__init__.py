"""gradcheck-suite: check gradients three ways (hand-written, torch autograd, finite differences).

The public names are imported on first use (PEP 562), so that ``gradcheck --help`` and
``gradcheck --version`` answer without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the private module that defines it
_EXPORTS = {
    "Case": "._case",
    "load_case": "._case",
    "CheckResult": "._check",
    "GradientCheckFailed": "._check",
    "check": "._check",
    "check_module": "._check",
    "InputResult": "._compare",
    "PairDiff": "._compare",
    "CaseResult": "._engine",
    "Report": "._engine",
    "RunOptions": "._engine",
    "check_case": "._engine",
    "run": "._engine",
    "CaseError": "._errors",
    "GradcheckError": "._errors",
    "UsageError": "._errors",
    "LimitError": "._errors",
    "Limits": "._limits",
    "Trust": "._trust",
}

__all__ = [
    "Case",
    "CaseError",
    "CaseResult",
    "CheckResult",
    "GradcheckError",
    "GradientCheckFailed",
    "InputResult",
    "LimitError",
    "Limits",
    "PairDiff",
    "Report",
    "RunOptions",
    "Trust",
    "UsageError",
    "check",
    "check_case",
    "check_module",
    "load_case",
    "run",
    "__version__",
]

if TYPE_CHECKING:
    from ._case import Case, load_case
    from ._check import CheckResult, GradientCheckFailed, check, check_module
    from ._compare import InputResult, PairDiff
    from ._engine import CaseResult, Report, RunOptions, check_case, run
    from ._errors import CaseError, GradcheckError, LimitError, UsageError
    from ._limits import Limits
    from ._trust import Trust


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
