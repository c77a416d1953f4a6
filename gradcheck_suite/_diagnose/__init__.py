"""Diagnostics of a failing check: which line is wrong (program backwards) and what the shape
of each disagreement suggests (any case). Computed only for a case that fails.

``report.json`` carries them per case as ``diagnostics``:
``{"blame": {"line", "statement", "message", "intermediates": [{"name", "line", "status",
"max_rel"}]} | null, "blame_note": str | null, "hints": [{"input", "pair", "kind", "message"}]}``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .._sources import SOURCES
from .._sources.numeric import AUTO_FULL_ELEMENTS
from .blame import Analysis, Blame, Intermediate, NoBlame, unavailable
from .geometry import windows
from .hints import Hint, array_hints, describe

if TYPE_CHECKING:
    from .._compare import InputResult
    from .._engine import CaseResult

__all__ = ["Diagnostics", "Hint", "Intermediate", "diagnose"]

# the blamed line's edits are tried up to the size a check still compares element by element
FIX_MAX_ELEMENTS = AUTO_FULL_ELEMENTS

_FIX_KINDS = {
    "axis": "reduction_axis",
    "drop .T": "transpose",
    "flip sign": "sign",
    "constant": "constant",
    "variable": "variable",
    "+= to =": "accumulation",
    "drop +=": "missing_term",
}


@dataclass(frozen=True)
class Diagnostics:
    blame: Blame | None
    blame_note: str | None  # why there is no blamed line
    hints: tuple[Hint, ...] = ()
    intermediates: tuple[Intermediate, ...] = field(default_factory=tuple)

    def summary(self) -> str:
        """One line: the blamed line, else the first hint, else why there is no blame."""
        if self.blame is not None:
            return self.blame.message
        if self.hints:
            h = self.hints[0]
            return f"{h.input} ({h.pair}): {h.message}"
        return self.blame_note or ""

    def to_dict(self) -> dict[str, Any]:
        blame = None
        if self.blame is not None:
            blame = {
                "line": self.blame.line,
                "statement": self.blame.statement,
                "message": self.blame.message,
                "intermediates": [_intermediate(i) for i in self.blame.intermediates],
            }
        return {"blame": blame, "blame_note": self.blame_note, "hints": [h.to_dict() for h in self.hints]}


def _intermediate(i: Intermediate) -> dict[str, Any]:
    rel: float | str = i.max_rel if math.isfinite(i.max_rel) else ("nan" if math.isnan(i.max_rel) else "inf")
    return {"name": i.name, "line": i.line, "status": i.status, "max_rel": rel}


def _pair(a: str, b: str) -> str:
    x, y = sorted((a, b), key=SOURCES.index)
    return f"{x}-{y}"


def _pairs(i: InputResult) -> list[tuple[str, str]]:
    """(the source described, the one it is compared with) for an input that fails."""
    present = [s for s in SOURCES if s in i.grads]
    if i.odd_one_out is not None and i.odd_one_out in present:
        others = [s for s in present if s != i.odd_one_out]
        ref = next((s for s in others if s != "numeric"), others[0] if others else None)
        return [(i.odd_one_out, ref)] if ref else []
    return [(p.a, p.b) for p in i.pairs if p.disagree and p.a in i.grads and p.b in i.grads]


def _input_hints(result: CaseResult, analysis: Analysis | None) -> list[Hint]:
    case = result.case
    w = windows(case)
    upstreams = {f"d{o}": np.asarray(u) for o, u in case.upstreams.items() if u is not None}
    sizes = {k: tuple(np.shape(v)) for k, v in case.inputs.items()}
    found: list[Hint] = []
    for i in result.inputs:
        if i.verdict != "fail":
            continue
        terms = analysis.input_terms(i.name) if analysis is not None else {}
        for a, b in _pairs(i):
            noise = 0.0
            if "numeric" in (a, b) and i.numeric_error is not None:
                finite = i.numeric_error[np.isfinite(i.numeric_error)]
                noise = 4.0 * float(finite.max()) if finite.size else 0.0
            name = _pair(a, b)
            for kind, message in array_hints(
                i.grads[a],
                i.grads[b],
                a,
                b,
                noise=noise,
                mask=i.masks.get(name),
                windows=w if w is not None and w.input == i.name else None,
                terms=terms if a == "manual" else {},
                upstreams=upstreams,
                sizes=sizes,
            ):
                found.append(Hint(i.name, name, kind, f"d{i.name}: {message}"))
    return found


def _fixes(result: CaseResult, analysis: Analysis, blame: Blame) -> list[Hint]:
    """Single edits of the blamed variable's lines that make every failing input right."""
    from .._mutate.program import program_mutants  # the mutation operators, only when a line is blamed

    failing = [i for i in result.inputs if i.verdict == "fail" and i.odd_one_out in ("manual", None)]
    if not failing or sum(int(np.size(v)) for v in result.point.values()) > FIX_MAX_ELEMENTS:
        return []
    mutants, _ = program_mutants(result.case, only=analysis.lines.get(blame.variable, []))
    found: list[Hint] = []
    for m in mutants:
        try:
            with np.errstate(all="ignore"):
                steps = analysis.rerun(m.case)
        except Exception:  # noqa: BLE001 - an edit that breaks the program is no fix
            continue
        if analysis.wrong_inputs(steps.final):
            continue
        change = f"`{m.mutated}`" if m.mutated else "without it"
        for i in failing:
            ref = "autograd" if "autograd" in i.grads else "numeric"
            message = f"d{i.name}: line {m.line} as {change} gives the gradient {ref} gives"
            found.append(Hint(i.name, _pair("manual", ref), _FIX_KINDS.get(m.operator, m.operator), message))
        break  # one edit that fixes it is the hint; others are the same fix written otherwise
    return found


def _safely(step: Callable[[], list[Hint]]) -> list[Hint]:
    try:
        with np.errstate(all="ignore"):
            return step()
    except Exception:  # noqa: BLE001 - a hint that cannot be worked out is left out, the check stands
        return []


def diagnose(result: CaseResult) -> Diagnostics | None:
    """Blame and hints for a case that fails on some input (None when none fails). Nothing
    here may hide the check's own result: a step that raises is reported or left out."""
    if not any(i.verdict == "fail" for i in result.inputs):
        return None
    case = result.case
    note = unavailable(case)
    analysis: Analysis | None = None
    found: Blame | NoBlame | None = None
    if note is None:
        try:
            with np.errstate(all="ignore"):
                analysis = Analysis(case, result.point)
                found = analysis.blame(describe)
        except Exception as exc:  # noqa: BLE001 - a diagnosis must never hide the check's own result
            note = f"blame failed: {type(exc).__name__}: {exc}"
    hints = _safely(lambda: _input_hints(result, analysis))
    if isinstance(found, Blame):
        blamed, done = found, analysis
        assert done is not None
        hints += _safely(lambda: _fixes(result, done, blamed))
        return Diagnostics(found, None, tuple(hints), found.intermediates)
    if isinstance(found, NoBlame):
        return Diagnostics(None, found.reason, tuple(hints), found.intermediates)
    return Diagnostics(None, note, tuple(hints))
