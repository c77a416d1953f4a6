"""gradcheck-suite: check gradients three ways (hand-written, torch autograd, finite differences)."""

from ._case import Case, load_case
from ._check import CheckResult, GradientCheckFailed, check, check_module
from ._compare import InputResult, PairDiff
from ._engine import CaseResult, Report, RunOptions, check_case, run
from ._errors import CaseError, GradcheckError, UsageError

__version__ = "0.1.0"

__all__ = [
    "Case",
    "CaseError",
    "CaseResult",
    "CheckResult",
    "GradcheckError",
    "GradientCheckFailed",
    "InputResult",
    "PairDiff",
    "Report",
    "RunOptions",
    "UsageError",
    "check",
    "check_case",
    "check_module",
    "load_case",
    "run",
    "__version__",
]
