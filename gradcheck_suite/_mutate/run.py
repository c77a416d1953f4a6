"""Mutation adequacy: can a case catch a bug in its backward?

Each mutant of the case's backward (:mod:`program` for programs, :mod:`python` for Python
callables whose source is available) runs through the normal check, ``check_case`` with the
run's options. A mutant the check fails, or that raises an error, is *killed*; one it passes
(or leaves inconclusive) *survived*, unless it is *equivalent* (:mod:`weakness`), which is
reported apart and not counted. The score is killed / (killed + survived). A mutant the
program language rejects is *stillborn*: counted, never run.

A case whose unmutated check does not pass has no score: a mutant of a failing case proves
nothing.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._case import Case, load_cases
from .._engine import RunOptions, check_case, ensure_device, select
from .._errors import CaseError
from .._guard import prepare
from .._sources.manual import run_programs
from .program import program_mutants
from .python import python_mutants
from .weakness import HIDDEN, Probe, configured, differs, probes, weaknesses

__all__ = ["CaseMutation", "MutantResult", "MutationRun", "mutate_case", "mutate"]


@dataclass(frozen=True)
class MutantResult:
    operator: str
    file: str
    line: int
    original: str
    mutated: str  # "" when the line is dropped
    status: str  # killed | survived | equivalent
    how: str  # what killed it, or the verdict it survived with
    weaknesses: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class CaseMutation:
    case: str
    file: str
    results: list[MutantResult] = field(default_factory=list)
    stillborn: int = 0
    note: str | None = None  # why there is no score
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def score(self) -> float | None:
        counted = self.count("killed") + self.count("survived")
        if self.note is not None or counted == 0:
            return None
        return self.count("killed") / counted

    @property
    def weak(self) -> list[str]:
        """What makes the case weak: every survivor's named reasons, once each."""
        return list(dict.fromkeys(w for r in self.results if r.status == "survived" for w in r.weaknesses))


@dataclass
class MutationRun:
    cases: list[CaseMutation]
    errors: list[CaseError]
    options: RunOptions
    seconds: float = 0.0

    def below(self, minimum: float) -> list[CaseMutation]:
        """Cases under ``minimum``, and those with a score of none because they fail unmutated."""
        return [
            c
            for c in self.cases
            if (c.score is not None and c.score < minimum)
            or (c.note is not None and c.note.startswith("does not pass"))
        ]


def _killed_by(case: Case, options: RunOptions) -> tuple[str, str]:
    """(status, how) of one mutant through the normal check."""
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            result = check_case(case, options, diagnose=False)
    except CaseError as exc:
        return "killed", f"error: {exc.message}"
    except Exception as exc:  # noqa: BLE001 - a mutant may raise anything; the check would report it
        return "killed", f"error: {type(exc).__name__}: {exc}"
    if result.verdict == "fail":
        failing = [i for i in result.inputs if i.verdict == "fail"]
        if failing:
            i = failing[0]
            return "killed", f"d{i.name}: {i.reason}"
        return "killed", result.expect_failures[0] if result.expect_failures else result.reason
    return "survived", result.verdict


def mutate_case(case: Case, options: RunOptions) -> CaseMutation:
    start = time.perf_counter()
    # mutants of a callable need it imported (allowed by the run's trust, checked on load)
    case = prepare(case, options.limits)
    out = CaseMutation(case.name, case.file.as_posix())
    if case.backward is None:
        out.note = "no backward to mutate"
        return out
    status, how = _killed_by(case, options)
    if status == "killed" or how != "pass":
        out.note = f"does not pass unmutated ({how if status == 'survived' else 'fail: ' + how}): no score"
        out.seconds = time.perf_counter() - start
        return out
    if case.backward.program is not None:
        mutants, out.stillborn = program_mutants(case)
        values = run_programs(case, case.inputs, "float64")
    else:
        mutants, out.stillborn, why, values = python_mutants(case)
        if why is not None:
            out.note = f"mutation unavailable: {why}"
            out.seconds = time.perf_counter() - start
            return out
    found: list[Probe] | None = None
    for m in mutants:
        status, how = _killed_by(m.case, options)
        named: tuple[str, ...] = ()
        if status == "survived":
            found = probes(case) if found is None else found
            configuration = configured(case, m, values)
            if any(differs(m.case, p) for p in found):
                named = tuple(dict.fromkeys([*configuration, *weaknesses(case, m, values, found)])) or (HIDDEN,)
            elif configuration:  # the same at every point, but only because of how the case is set up
                named = tuple(configuration)
            else:
                status = "equivalent"
        out.results.append(MutantResult(m.operator, m.file, m.line, m.original, m.mutated, status, how, named))
    out.seconds = time.perf_counter() - start
    return out


def mutate(paths: Iterable[Path], options: RunOptions, pattern: str | None = None) -> MutationRun:
    """Mutation adequacy of every case under ``paths`` matching ``pattern``."""
    start = time.perf_counter()
    ensure_device(options.device)
    cases: list[CaseMutation] = []
    errors: list[CaseError] = []
    for item in select(load_cases(list(paths), limits=options.limits, trust=options.trust()), pattern):
        if isinstance(item, CaseError):
            errors.append(item)
            continue
        try:
            cases.append(mutate_case(item, options))
        except CaseError as exc:
            errors.append(exc)
        except Exception as exc:  # noqa: BLE001 - one case must not stop the others
            errors.append(item.error(f"internal error while mutating: {type(exc).__name__}: {exc}"))
    return MutationRun(cases, errors, options, time.perf_counter() - start)
