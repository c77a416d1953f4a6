"""Line blame: which line of a backward program makes a gradient wrong.

By the notebook's convention ``d<name>`` holds the gradient of the output with respect to the
forward variable ``<name>``, and autograd can give that gradient for every forward variable
(:func:`trace.forward_trace`). So each ``d<name>`` the backward computes is compared, once its
last line has run (a ``+=`` accumulation is only complete after its last statement), with
autograd's, under the check's own manual-vs-autograd rule (:mod:`rule`). Each variable is then
*right*, *wrong* or *unknown* (no forward variable of that name, another number of elements,
or a forward name assigned twice).

The blamed variable is the first wrong one, in backward order, whose inputs agree (every
gradient its lines read is right or unknown) and whose repair helps: with autograd's value put
in its place the backward is rerun, and fewer input gradients are wrong, or the worst of them
is ten times closer. The repair test keeps a variable that merely breaks the naming convention
(an LSTM's ``di`` holding the gradient of the gate's pre-activation, not of ``i``) from being
blamed: putting autograd's gradient of ``i`` there makes things worse, not better. When no
variable passes both tests, the first wrong one whose repair helps is blamed.

Within the blamed variable's lines, the line is the one that makes it wrong:

* an ``=`` after earlier lines of the variable, when ``+=`` there makes it right (it discards them);
* a line whose term, left out or with its sign flipped, makes it right;
* the variable's last line when what is missing is one forward edge's contribution (a dropped
  ``+=``: the notebook's bug), naming that edge's forward line;
* the one line whose term matches no forward edge, or else the last line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from .._case import Case
from .._program import Statement
from .._sources.manual import run_forward
from .rule import agreement
from .trace import BackwardSteps, ForwardTrace, backward_steps, forward_trace, names_read

__all__ = ["Analysis", "Blame", "Intermediate", "NoBlame", "blame", "unavailable"]

# a repair helps when it fixes an input gradient or brings the worst one this much closer
_CLOSER = 10.0


@dataclass(frozen=True)
class Intermediate:
    """One ``d<name>`` of the backward program, judged once its last line ran."""

    name: str
    line: int | None  # its last line
    status: str  # right | wrong | unknown
    max_rel: float  # relative difference from autograd's (nan when unknown)
    of: str | None = None  # the forward variable it is compared with


@dataclass(frozen=True)
class Blame:
    line: int
    statement: str
    message: str
    intermediates: tuple[Intermediate, ...]
    variable: str = ""  # the blamed d<name>


@dataclass(frozen=True)
class NoBlame:
    """Why no line is blamed, with the comparisons that were made (if any)."""

    reason: str
    intermediates: tuple[Intermediate, ...] = ()


def unavailable(case: Case) -> str | None:
    """Why line blame cannot run on ``case``, or None when it can."""
    if case.backward is None:
        return "blame unavailable: the case has no backward"
    if case.backward.program is None:
        return f"blame unavailable: the backward is a callable (`{case.backward.label}`), not a program with lines"
    if case.forward.program is None:
        return f"blame unavailable: the forward is a callable (`{case.forward.label}`), with no variables to compare"
    return None


class Analysis:
    """Both sides of every ``d<name>`` of one program case at one point, judged."""

    def __init__(self, case: Case, point: Mapping[str, np.ndarray]) -> None:
        assert case.backward is not None and case.backward.program is not None
        self.case = case
        self.point = point
        self.statements: tuple[Statement, ...] = case.backward.program.statements
        self.trace: ForwardTrace = forward_trace(case, point)
        self.forward = run_forward(case, point)
        self.steps: BackwardSteps = self.rerun(case)
        self.lines: dict[str, list[int]] = {}
        for k, s in enumerate(self.statements):
            self.lines.setdefault(s.target, []).append(k)
        # backward order: by the statement that completes each variable
        self.order = sorted(self.lines, key=lambda t: self.lines[t][-1])
        self.status: dict[str, str] = {}
        self.max_rel: dict[str, float] = {}
        for t in self.order:
            self.status[t], self.max_rel[t] = self._judge(t, self.steps.final.get(t))

    def rerun(self, case: Case, override: tuple[int, np.ndarray] | None = None) -> BackwardSteps:
        """``case``'s backward (this case's, or a mutant's) at this point, on this forward."""
        return backward_steps(case, self.point, override, self.forward)

    def of(self, target: str) -> str | None:
        name = target[1:] if target.startswith("d") else None
        if name is None or name not in self.trace.grads or name in self.trace.reassigned:
            return None
        return name

    def terms(self, target: str) -> list[np.ndarray | None]:
        return [self.steps.terms[k] for k in self.lines.get(target, [])]

    def edges(self, target: str) -> list[np.ndarray]:
        name = self.of(target)
        return [e.value for e in self.trace.edges.get(name, [])] if name else []

    def _judge(self, target: str, value: object) -> tuple[str, float]:
        name = self.of(target)
        if name is None or value is None:
            return "unknown", float("nan")
        got = np.asarray(value, dtype=np.float64)
        want = self.trace.grads[name]
        if got.size != want.size:
            return "unknown", float("nan")
        a = agreement(got, want, [*self.terms(target), *self.edges(target)])
        return ("right" if a.same else "wrong"), a.max_rel

    def wrong_inputs(self, final: Mapping[str, object]) -> dict[str, float]:
        out = {}
        for x in self.case.inputs:
            status, rel = self._judge(f"d{x}", final.get(f"d{x}"))
            if status == "wrong":
                out[x] = rel
        return out

    def repair_helps(self, target: str, before: dict[str, float]) -> bool:
        name = self.of(target)
        assert name is not None
        got = np.asarray(self.steps.final[target])
        fixed = self.rerun(self.case, (self.lines[target][-1], self.trace.grads[name].reshape(got.shape)))
        after = self.wrong_inputs(fixed.final)
        if len(after) < len(before):
            return True
        return bool(after) and len(after) == len(before) and max(after.values()) * _CLOSER < max(before.values())

    def reads(self, target: str) -> list[str]:
        """The backward's variables that ``target``'s lines read (not itself)."""
        found: dict[str, None] = {}
        for k in self.lines[target]:
            for n in names_read(self.statements[k]):
                if n != target and n in self.lines:
                    found.setdefault(n, None)
        return list(found)

    def blame(self, describe: Callable[[np.ndarray, np.ndarray, str], str] | None = None) -> Blame | NoBlame:
        return _blame(self, describe)

    def input_terms(self, x: str) -> dict[str, np.ndarray]:
        """What a missing or extra term of ``d<x>`` could be: each forward edge into ``x`` and
        each term the backward adds to ``d<x>``, by description."""
        terms: dict[str, np.ndarray] = {}
        for e in self.trace.edges.get(x, []):
            terms[f"the term through forward line {e.statement.line} `{e.statement.text}`"] = e.value
        for k in self.lines.get(f"d{x}", []):
            t = self.steps.terms[k]
            if t is not None:
                s = self.statements[k]
                terms[f"the term of line {s.line} `{s.text}`"] = t
        return terms

    def intermediates(self) -> tuple[Intermediate, ...]:
        return tuple(
            Intermediate(t, self.statements[self.lines[t][-1]].line, self.status[t], self.max_rel[t], self.of(t))
            for t in self.order
            if t.startswith("d")
        )


def blame(
    case: Case, point: Mapping[str, np.ndarray], describe: Callable[[np.ndarray, np.ndarray, str], str] | None = None
) -> Blame | NoBlame:
    """The line of ``case``'s backward program that makes its gradients wrong at ``point``.

    ``describe(got, want, name)`` may word how a wrong variable differs (a factor, a sign: the hints).
    """
    why = unavailable(case)
    if why is not None:
        return NoBlame(why)
    return Analysis(case, point).blame(describe)


def _blame(a: Analysis, describe: Callable[[np.ndarray, np.ndarray, str], str] | None) -> Blame | NoBlame:
    table = a.intermediates()
    before = a.wrong_inputs(a.steps.final)
    if not before:
        return NoBlame(
            "every input gradient of the backward program agrees with autograd's in float64 at this point:"
            " no line is wrong (a dtype's rounding, or another source, is what disagrees)",
            table,
        )
    wrong = [t for t in a.order if a.status[t] == "wrong"]
    chosen = next(
        (t for t in wrong if all(a.status[r] != "wrong" for r in a.reads(t)) and a.repair_helps(t, before)), None
    )
    if chosen is None:
        chosen = next((t for t in wrong if a.repair_helps(t, before)), None)
    if chosen is None:
        return NoBlame("no single wrong gradient explains the failure: repairing any one of them does not help", table)
    k, detail = _attribute(a, chosen)
    s = a.statements[k]
    # a missing term is the whole variable's fault: name every gradient its lines read
    reads = a.reads(chosen) if " misses " in detail else [n for n in names_read(s) if n != chosen and n in a.lines]
    message = f"line {s.line} `{s.text}`: {_inputs_text(a, reads)}{chosen} is wrong here{detail}"
    if describe is not None:
        name = a.of(chosen)
        assert name is not None
        try:
            words = describe(np.asarray(a.steps.final[chosen], dtype=np.float64), a.trace.grads[name], chosen)
        except Exception:  # noqa: BLE001 - the words are a detail; the blamed line stands without them
            words = ""
        if words:
            message += f" ({words})"
    return Blame(s.line, s.text, message, table, chosen)


def _inputs_text(a: Analysis, reads: list[str]) -> str:
    right = [n for n in reads if a.status[n] == "right"]
    other = [n for n in reads if a.status[n] == "unknown"]
    bad = [n for n in reads if a.status[n] == "wrong"]
    parts = []
    if right:
        parts.append(f"{_and(right)} {'is' if len(right) == 1 else 'are'} right")
    if other:
        numbers = [str(a.statements[a.lines[n][-1]].line) for n in other]
        lines = ("line " if len(numbers) == 1 else "lines ") + ", ".join(numbers)
        parts.append(
            f"{_and(other)} ({lines}) {'has' if len(other) == 1 else 'have'} no forward variable to compare with"
        )
    if bad:
        parts.append(f"{_and(bad)} {'is' if len(bad) == 1 else 'are'} wrong too")
    return (", ".join(parts) + ", ") if parts else ""


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _attribute(a: Analysis, target: str) -> tuple[int, str]:
    """The line among ``target``'s lines that makes it wrong, and what is wrong with it."""
    name = a.of(target)
    assert name is not None
    want = a.trace.grads[name]
    ks = a.lines[target]
    got = np.asarray(a.steps.final[target], dtype=np.float64).reshape(want.shape)
    terms = {k: a.steps.terms[k] for k in ks}
    scale = [*terms.values(), *a.edges(target)]

    def same(value: np.ndarray) -> bool:
        return agreement(value, want, scale).same

    last_reset = max(k for k in ks if a.statements[k].op == "=")
    if last_reset != ks[0]:
        held = a.steps.values[ks[ks.index(last_reset) - 1]]
        if held is not None and same(got + held.reshape(want.shape)):
            earlier = ", ".join(str(a.statements[k].line) for k in ks if k < last_reset)
            return last_reset, f": `=` discards its earlier line(s) {earlier}; `+=` belongs here"
    live = [k for k in ks if k >= last_reset]
    for k in live:
        t = terms[k]
        if t is None or len(live) == 1:
            continue
        if same(got - np.broadcast_to(t, want.shape) if t.size != want.size else got - t.reshape(want.shape)):
            return k, ": without this line's term it would be right"
    for k in live:
        t = terms[k]
        if t is not None and t.size == want.size and same(got - 2 * t.reshape(want.shape)):
            return k, ": this line's term has the wrong sign" if len(ks) > 1 else ": its sign is flipped"
    missing = want - got
    matched = [
        k
        for k in live
        if terms[k] is not None and any(_same_term(terms[k], e.value, scale) for e in a.trace.edges.get(name, []))
    ]
    for e in a.trace.edges.get(name, []):
        if agreement(missing, e.value, scale).same and not any(_same_term(terms[k], e.value, scale) for k in live):
            return live[-1], _missing_text(a, target, e.statement)
    unmatched = [k for k in live if k not in matched]
    if len(unmatched) == 1:
        return unmatched[0], ""
    return live[-1], ""


def _same_term(term: np.ndarray | None, edge: np.ndarray, scale: list[np.ndarray | None]) -> bool:
    return term is not None and term.size == edge.size and agreement(term, edge, scale).same


def _missing_text(a: Analysis, target: str, edge: Statement) -> str:
    via = f"d{edge.target}"
    if via in a.lines:
        state = "right" if a.status.get(via) == "right" else a.status.get(via, "computed")
        where = f"; {via} (line {a.statements[a.lines[via][-1]].line}) is {state} but never reaches {target}"
    else:
        where = ""
    return f": {target} misses the term through forward line {edge.line} `{edge.text}`{where}"
