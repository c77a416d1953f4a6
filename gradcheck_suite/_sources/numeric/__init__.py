"""The numeric source: finite differences (or the complex step) of the forward alone.

One job per module: ``steps`` (step sizes), ``noise`` (the rounding noise of phi, bounded or
measured), ``runner`` (batched evaluation of phi), ``differences`` (ladders of steps read
against their models: extrapolation, error estimates, kinks), ``elements`` (full and sample
mode), ``projection`` (directional derivatives for large inputs), ``referee`` (the forward at
high precision, for disputed elements) and ``source`` (the check modes, the public entry).
"""

from .runner import Objective, Progress, Runner, evaluation_cost
from .source import (
    AUTO_FULL_ELEMENTS,
    DEFAULT_DIRECTIONS,
    DEFAULT_ELEMENTS,
    DEFAULT_MAX_MEMORY,
    MODES,
    NumericSettings,
    PointRounding,
    numeric_gradients,
    numeric_gradients_at,
    planned_evaluations,
    resolve_mode,
)
from .steps import METHODS, resolve_method

__all__ = [
    "AUTO_FULL_ELEMENTS",
    "DEFAULT_DIRECTIONS",
    "DEFAULT_ELEMENTS",
    "DEFAULT_MAX_MEMORY",
    "METHODS",
    "MODES",
    "NumericSettings",
    "Objective",
    "PointRounding",
    "Progress",
    "Runner",
    "evaluation_cost",
    "numeric_gradients",
    "numeric_gradients_at",
    "planned_evaluations",
    "resolve_method",
    "resolve_mode",
]
