"""`gradcheck mutate` as text: a score per case, every surviving mutant with its line and what
makes the case weak; with ``-v`` every mutant. Fitted to the terminal's width like `run`'s."""

from __future__ import annotations

from .._mutate import CaseMutation, MutantResult, MutationRun
from .layout import wrap
from .terminal import fitted_table

__all__ = ["render_mutation"]


def _score(c: CaseMutation) -> str:
    if c.score is None:
        return c.note or "no mutants"
    return f"{100 * c.score:.0f}%"


def _change(m: MutantResult) -> str:
    after = f"`{m.mutated}`" if m.mutated else "(line dropped)"
    return f"`{m.original}` -> {after}"


def _where(c: CaseMutation) -> str:
    files = {r.file for r in c.results}
    return files.pop() if len(files) == 1 else c.file


def render_mutation(
    run: MutationRun, *, verbose: bool = False, minimum: float | None = None, width: int | None = None
) -> str:
    rows = [
        [
            c.case,
            str(len(c.results)) if c.note is None else "-",
            str(c.count("killed")),
            str(c.count("survived")),
            str(c.count("equivalent")),
            str(c.stillborn),
            _score(c),
        ]
        for c in run.cases
    ]
    headers = ["case", "mutants", "killed", "survived", "equivalent", "stillborn", "score"]
    out = fitted_table(headers, rows, width) if rows else []
    for c in run.cases:
        survivors = [r for r in c.results if r.status == "survived"]
        shown = c.results if verbose else survivors
        if not shown:
            continue
        out += ["", f"{c.case} ({_where(c)}):"]
        for r in shown:
            out += wrap(
                f"{r.status:10} line {r.line}: {_change(r)} [{r.operator}] {r.how}", width, "      ", first="  "
            )
            for w in r.weaknesses:
                out += wrap(f"weak: {w}", width, "                   ", first="             ")
    scored = [c.score for c in run.cases if c.score is not None]
    mean = f"; mean score {100 * sum(scored) / len(scored):.0f}%" if scored else ""
    gate = ""
    if minimum is not None:
        below = run.below(minimum)
        gate = (
            f"; {len(below)} below --min-score {100 * minimum:g}%" if below else f"; all at or above {100 * minimum:g}%"
        )
    errors = f", {len(run.errors)} error(s)" if run.errors else ""
    where = f"{run.options.device}, {run.options.dtype}"
    out += wrap(
        f"{len(run.cases)} case(s){errors}{mean}{gate} in {run.seconds:.2f} s ({where})", width, "    ", first=""
    )
    return "\n".join(out)
