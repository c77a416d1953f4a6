"""Equivalent mutants, and what lets a real one survive.

A surviving mutant is *equivalent* when its hand-written gradient equals the original's (by
the check's manual-vs-autograd rule, :mod:`gradcheck_suite._diagnose.rule`) at the case's own
point with a random upstream gradient and at ``PROBES`` random points of the case's domain
(``[sweep] domain``, else value +- max(|value|, 1)), each with a random upstream: no input
could tell the two apart. A scalar output without an ``upstream`` is a loss, whose upstream
is 1 by definition, so it keeps 1.

Random points change values, never shapes or parameters, so a mutant hidden by how the case
is configured agrees at all of them: windows that never overlap (for ``+=`` edits of a pooling
or convolution backward) and two axes of the same length (for an edit of an axis). Such a
mutant is a survivor, named by :func:`configured`, not an equivalent one.

Any other survivor is hidden by the case's point or upstream, and what can be named is named
(:func:`weaknesses`): an upstream gradient of all ones (the mutant differs with a random one),
two variables that are equal at the case's point (for a swapped variable), and values the
edited line reads that are zero, one, or symmetric (for a dropped ``.T``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .._case import Case
from .._diagnose.geometry import windows
from .._diagnose.rule import agreement
from .._engine import sample_points
from .._sources.manual import run_forward, run_programs
from .mutant import Mutant

__all__ = ["HIDDEN", "Probe", "configured", "differs", "probes", "weaknesses"]

PROBES = 3
# what is said of a survivor when nothing more particular can be named
HIDDEN = "the case's point hides it: at random points of its domain (random upstream) the gradient differs"
_SEED = 14


@dataclass(frozen=True)
class Probe:
    case: Case  # the case with this probe's upstream gradients
    point: Mapping[str, np.ndarray]
    grads: Mapping[str, np.ndarray]  # the original backward's gradients there


def _loss(case: Case, output: str, value: Any) -> bool:
    return case.upstreams.get(output) is None and np.size(value) == 1


def _random_upstreams(case: Case, rng: np.random.Generator) -> Case | None:
    """``case`` with a random upstream for every output that is not a loss (None: all are)."""
    values = run_forward(case, case.inputs)
    ups = dict(case.upstreams)
    changed = False
    for o in case.outputs:
        if not _loss(case, o, values[o]):
            ups[o] = rng.normal(size=np.shape(values[o]))
            changed = True
    if not changed:
        return None
    return replace(case, upstreams=ups, upstream=ups[case.output])


def _gradients(case: Case, point: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    try:
        with np.errstate(all="ignore"):
            values = run_programs(case, point, "float64")
        return {x: np.asarray(values[f"d{x}"], dtype=np.float64) for x in case.inputs}
    except Exception:  # noqa: BLE001 - a point the function is not defined at proves nothing
        return None


def probes(case: Case) -> list[Probe]:
    """The case's point with a random upstream, and random points with random upstreams."""
    rng = np.random.default_rng(_SEED)
    found = []
    own = _random_upstreams(case, rng)
    points: list[tuple[Case, Mapping[str, np.ndarray]]] = [(own, case.inputs)] if own is not None else []
    for p in sample_points(case, PROBES):
        points.append((_random_upstreams(case, rng) or case, p))
    for c, point in points:
        grads = _gradients(c, point)
        if grads is not None:
            found.append(Probe(c, point, grads))
    return found


def _with_backward(mutant: Case, probe: Probe) -> Case:
    return replace(probe.case, backward=mutant.backward, forward=mutant.forward)


def differs(mutant: Case, probe: Probe) -> bool:
    grads = _gradients(_with_backward(mutant, probe), probe.point)
    if grads is None:
        return True
    return any(not agreement(grads[x], probe.grads[x]).same for x in probe.grads)


def configured(original: Case, mutant: Mutant, values: Mapping[str, Any]) -> list[str]:
    """Why ``mutant`` may go unseen because of how the case is configured, not where its
    point lies: random points keep the shapes and parameters, so a mutant hidden that way
    agrees at every one of them, yet a case configured otherwise catches it. Such a mutant
    counts as a survivor, never as equivalent."""
    out = []
    w = windows(original)
    if w is not None and not w.overlapping and mutant.operator in ("+= to =", "drop +="):
        out.append(
            f"the {w.describe()} never overlap, so `=` and `+=` agree: a stride below the window size catches it"
        )
    if mutant.axes is not None:
        array, a, b = mutant.axes
        shape = np.shape(values[array]) if array in values else ()
        if all(-len(shape) <= k < len(shape) for k in (a, b)) and shape[a] == shape[b]:
            out.append(
                f"axes {a} and {b} of `{array}` have the same length ({shape[a]}), so mixing them up goes unseen:"
                " give them different lengths"
            )
    return out


def weaknesses(original: Case, mutant: Mutant, values: Mapping[str, Any], found: Sequence[Probe]) -> list[str]:
    """What about ``original``'s point or upstream lets ``mutant`` survive, as far as it can be named."""
    out = []
    own = next((p for p in found if p.point is original.inputs), None)
    if own is not None and differs(mutant.case, own):
        ones = [o for o in original.outputs if _constant(original.upstreams.get(o))]
        if ones:
            which = ", ".join(f"`{o}`" for o in ones)
            out.append(f"the upstream gradient of {which} is all ones (or constant): draw it at random")
    if mutant.swapped is not None:
        a, b = mutant.swapped
        va, vb = values.get(a), values.get(b)
        if va is not None and vb is not None and np.shape(va) == np.shape(vb) and np.array_equal(va, vb):
            out.append(f"`{a}` and `{b}` are equal at the case's point")
    for name in mutant.reads:
        if name in values:
            out += _value_facts(name, values[name], mutant.operator, original)
    return list(dict.fromkeys(out))


def _constant(upstream: np.ndarray | None) -> bool:
    return upstream is None or bool(np.ptp(upstream) == 0)


def _value_facts(name: str, value: Any, operator: str, case: Case) -> list[str]:
    """Values the edited line reads that make an edit vanish: zeros (a term times 0), ones
    (``y ** 2`` and ``y ** 3`` agree at 1), a symmetric matrix (a dropped ``.T``)."""
    a = np.asarray(value)
    if a.dtype.kind != "f" or a.size == 0 or name in {f"d{o}" for o in case.outputs}:
        return []
    if np.all(a == 0):
        return [f"`{name}` is 0 at the case's point"]
    facts = []
    if np.all(a == 1):
        facts.append(f"`{name}` is 1 at the case's point")
    elif a.size > 1 and np.any(a == 0):
        facts.append(f"`{name}` has zeros at the case's point")
    if operator == "drop .T" and a.ndim == 2 and a.shape[0] == a.shape[1] > 1 and np.array_equal(a, a.T):
        facts.append(f"`{name}` is symmetric")
    return facts
