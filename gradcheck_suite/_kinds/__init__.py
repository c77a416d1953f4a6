"""Check kinds beyond first-order gradients: everything ``torch.autograd.gradcheck`` and
``gradgradcheck`` check, each three ways where three sources exist.

| kind | what | torch's flag |
| --- | --- | --- |
| ``order2`` | Hessian-vector products (whole Hessians of small inputs) | ``gradgradcheck`` (``check_rev_over_rev``) |
| ``fwd-over-rev`` | the same products by forward-over-reverse AD | ``check_fwd_over_rev`` |
| ``forward`` | Jacobian-vector products: a Function's ``jvp`` | ``check_forward_ad`` |
| ``batched`` | the backward under vmap over several upstreams | ``check_batched_grad`` |
| ``undefined`` | the backward given an undefined (``None``) output gradient | ``check_undefined_grad`` |
| ``dtypes`` | the dtype and device of the backward's raw results | ``check_grad_dtypes`` |
| ``noncontiguous`` | non-contiguous inputs and upstream gradients | ``gen_non_contig_grad_outputs`` |

Each kind is a small module producing :class:`Gradients` per source; the first-order rules of
``_compare`` judge them and the result is a :class:`CaseResult` with ``kind`` set, so every
report shows it as it shows a first-order check (``case[cpu-float64-order2]``). A kind runs at
the case's own point (not at sweep points). A kind that does not apply to a case (undefined
output gradients for a backward program, say) is not run; the first-order result says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from .._case import Case
from .._compare import gradient_scale, judge_input
from .._engine import CaseResult, RunOptions, _at_dtype, _verdict
from .._errors import CaseError
from .._sources.numeric.runner import collect_notes
from . import batched, forward_mode, layout, second_order, undefined
from ._base import Context, Outcome
from ._torch import TorchCase

__all__ = ["CHECKS", "KINDS", "applicable", "check_kind", "check_kinds", "parse_checks", "requested"]


def _order2(ctx: Context) -> Outcome:
    return second_order.run(ctx)


def _fwd_over_rev(ctx: Context) -> Outcome:
    return second_order.run(ctx, forward_mode=True)


# name -> (why it does not apply, or None; what it runs)
_KINDS: dict[str, tuple[Callable[[TorchCase], str | None], Callable[[Context], Outcome]]] = {
    second_order.ORDER2: (second_order.applies, _order2),
    second_order.FORWARD_OVER_REVERSE: (second_order.applies_forward_over_reverse, _fwd_over_rev),
    forward_mode.FORWARD: (forward_mode.applies, forward_mode.run),
    batched.BATCHED: (batched.applies, batched.run),
    undefined.UNDEFINED: (undefined.applies, undefined.run),
    layout.DTYPES: (layout.applies_dtypes, layout.run_dtypes),
    layout.NONCONTIGUOUS: (layout.applies_noncontiguous, layout.run_noncontiguous),
}
KINDS = tuple(_KINDS)
# what --checks selects (second order comes with --order 2); "all" selects every one
CHECKS = tuple(k for k in KINDS if k != second_order.ORDER2)


def parse_checks(values: Sequence[str]) -> tuple[str, ...]:
    """Check names as given (``all`` for every one), validated, in the table's order."""
    wanted = set()
    for v in values:
        if v == "all":
            wanted |= set(CHECKS)
        elif v in CHECKS:
            wanted.add(v)
        else:
            raise ValueError(f"unknown check {v!r} (choose from {', '.join((*CHECKS, 'all'))})")
    return tuple(k for k in CHECKS if k in wanted)


def requested(case: Case, options: RunOptions) -> list[str]:
    """The kinds the options and the case file ask for, in the table's order."""
    wanted = set(parse_checks([*options.checks, *case.checks]))
    if max(options.order, case.order) >= 2:
        wanted.add(second_order.ORDER2)
    return [k for k in KINDS if k in wanted]


def applicable(case: Case, kind: str, options: RunOptions | None = None) -> str | None:
    """None when ``kind`` can run on ``case``; else why not."""
    options = options or RunOptions()
    applies, _ = _KINDS[kind]
    return applies(TorchCase(case, options.dtype, options.device))


def _flag_misshapen(outcome: Outcome) -> None:
    """A source whose gradient has another shape than the rest is that source's failure, named
    as such, not a broadcasting error inside the comparison. The shape to expect is the
    numeric source's (built from the inputs' shapes), else autograd's."""
    by = {g.source: g for g in outcome.sources}
    for label in outcome.labels:
        trusted = next((by[s] for s in ("numeric", "autograd") if s in by and label in by[s].values), None)
        if trusted is None:
            continue
        want = np.shape(trusted.values[label])
        for g in outcome.sources:
            got = np.shape(g.values[label]) if label in g.values else want
            if got != want:
                why = f"returned a gradient of shape {got} for `{label}`, expected {want}"
                outcome.flags.setdefault(label, (g.source, why))
                g.values[label] = np.full(want, np.nan)


def _judge(ctx: Context, kind: str, outcome: Outcome, seconds: float) -> CaseResult:
    o = ctx.options
    _flag_misshapen(outcome)
    scale = gradient_scale(outcome.sources)
    inputs = [judge_input(label, outcome.sources, o.dtype, scale) for label in outcome.labels]
    for i in inputs:
        if i.name in outcome.flags:
            source, why = outcome.flags[i.name]
            i.verdict, i.odd_one_out, i.reason = "fail", source, f"{source} {why}"
    verdict, odd = _verdict(inputs)
    return CaseResult(
        case=ctx.case,
        device=o.device,
        dtype=o.dtype,
        verdict=verdict,
        odd_one_out=odd,
        inputs=inputs,
        point=ctx.point,
        sources={g.source: g for g in outcome.sources},
        seconds=seconds,
        kind=kind,
        notes=outcome.notes,
        check_label=outcome.check,
    )


def check_kind(
    case: Case,
    options: RunOptions,
    kind: str,
    first: CaseResult | None = None,
    shared: dict[object, object] | None = None,
) -> CaseResult:
    """Run one check kind on ``case`` (``first``: its first-order result, if already made;
    ``shared``: what the kinds of one case computed that another can use, such as the numeric
    Jacobian or second-order differences)."""
    start = time.perf_counter()
    # the case as checked: its callables imported (a plugin item holds it as loaded)
    case = case.resolved().at_dtype(options.dtype)
    applies, runner = _KINDS[kind]
    reason = applies(TorchCase(case, options.dtype, options.device))
    if reason is not None:
        raise case.error(f"{kind}: cannot run: {reason}")
    usable = first if first is not None and (first.samples is None or first.samples.worst == 0) else None
    ctx = Context(case, _first_order_options(options), _at_dtype(case.inputs, options.dtype), usable)
    if shared is not None:
        ctx.cache = shared
    with collect_notes() as notes, np.errstate(all="ignore"):
        outcome = runner(ctx)
    outcome.notes = list(dict.fromkeys([*outcome.notes, *notes]))  # each numeric run may say the same
    return _judge(ctx, kind, outcome, time.perf_counter() - start)


def _first_order_options(options: RunOptions) -> RunOptions:
    # the kinds compare at the case's own point: no sweep
    return replace(options, samples=None)


def check_kinds(case: Case, options: RunOptions, first: CaseResult | None = None) -> list[CaseResult]:
    """Every requested kind that applies to ``case``; the ones that do not are noted on ``first``."""
    results = []
    skipped = []
    shared: dict[object, object] = {}
    for kind in requested(case, options):
        reason = applicable(case, kind, options)
        if reason is not None:
            skipped.append(f"{kind} ({reason})")
            continue
        try:
            results.append(check_kind(case, options, kind, first, shared))
        except CaseError:
            raise
        except Exception as exc:  # noqa: BLE001 - one kind failing to run must not hide the others
            raise case.error(f"{kind}: internal error while checking: {type(exc).__name__}: {exc}") from exc
    if skipped and first is not None:
        first.notes.append("not checked: " + "; ".join(skipped))
    return results
