"""gradcheck-suite: check gradients three ways (hand-written, torch autograd, finite differences)."""

from ._case import Case, load_case
from ._check import CheckResult, GradientCheckFailed, check
from ._compare import InputResult, PairDiff
from ._engine import CaseResult, Report, RunOptions, check_case, run
from ._errors import CaseError, GradcheckError, LimitError, UsageError
from ._limits import Limits
from ._trust import Trust

__version__ = "0.1.0"

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
    "load_case",
    "run",
    "__version__",
]
