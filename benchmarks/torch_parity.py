"""Side by side with torch.autograd.gradcheck / gradgradcheck on the planted-bug suite.

Every planted bug of tests/planted.py, its wrong and its right version, goes through

* torch: ``gradcheck`` with ``check_batched_grad``, ``check_undefined_grad``, ``check_grad_dtypes``
  (and ``check_forward_ad`` where the Function has a jvp), then ``gradgradcheck`` with
  ``gen_non_contig_grad_outputs``, ``check_batched_grad``, ``check_grad_dtypes`` (and
  ``check_fwd_over_rev`` where there is a jvp): every flag matching a check gradcheck-suite runs;
* gradcheck-suite: ``check(..., reference=..., order=2, checks="all")`` (``check_module`` for
  the module).

It prints what each catches (a wrong version failing, and by which check), any false alarm (a
right version failing) and the median wall time of ``--runs`` runs after one warm-up of both (the
first call of either pays torch's lazy imports, about 2 s for forward-mode AD). ``--size N``
reruns the elementwise Functions on N x N inputs as well.

Run from the repository root: ``.venv/bin/python benchmarks/torch_parity.py [--runs 5] [--size 16]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.func import functional_call

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine  # noqa: E402

from gradcheck_suite import check, check_module  # noqa: E402
from tests.planted import BUGS, Planted  # noqa: E402


def _has_jvp(fn: Any) -> bool:
    return getattr(fn, "jvp", None) is not torch.autograd.Function.jvp


def _torch_target(bug: Planted, which: str) -> tuple[Callable[..., Any], tuple[torch.Tensor, ...], bool]:
    """torch's view of a suite entry: a function of tensors, its inputs, whether it has a jvp."""
    made = getattr(bug, which)
    if bug.module:
        module = made()
        names = [n for n, _ in module.named_parameters()]

        def call(x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = functional_call(module, dict(zip(names, params, strict=True)), (x,))
            return out

        values = (bug.inputs["x"], *(p.detach() for p in module.parameters()))
        return call, tuple(v.detach().clone().requires_grad_() for v in values), False
    inputs = tuple(v.detach().clone().requires_grad_() for v in bug.inputs.values())
    return made.apply, inputs, _has_jvp(made)


def torch_verdict(bug: Planted, which: str) -> str:
    """ "pass", or what torch's first failing check said."""
    fn, inputs, jvp = _torch_target(bug, which)
    common: dict[str, Any] = {"check_batched_grad": True, "check_grad_dtypes": True}
    if "nondet_tol" in bug.torch_flags:  # the same declared tolerance as ours
        common["nondet_tol"] = bug.torch_flags["nondet_tol"]
    runs = [
        ("gradcheck", torch.autograd.gradcheck, {**common, "check_undefined_grad": True, "check_forward_ad": jvp}),
        (
            "gradgradcheck",
            torch.autograd.gradgradcheck,
            {**common, "gen_non_contig_grad_outputs": True, "check_fwd_over_rev": jvp},
        ),
    ]
    for name, run, flags in runs:
        try:
            run(fn, inputs, **flags)
        except Exception as exc:  # noqa: BLE001 - any failure of torch's check is its verdict
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return f"{name}: {first[:70]}"
    return "pass"


def ours(bug: Planted, which: str) -> Any:
    made = getattr(bug, which)
    if bug.module:
        return check_module(made(), bug.inputs["x"], reference=bug.reference(), order=2, checks="all", **bug.options)
    return check(made, bug.inputs, reference=bug.reference, order=2, checks="all", **bug.options)


def ours_verdict(bug: Planted, which: str) -> str:
    r = ours(bug, which)
    if r.verdict == "pass":
        return "pass"
    failing = ([] if r.first_verdict == "pass" else ["order1"]) + [k.kind for k in r.kinds if k.verdict != "pass"]
    return f"{r.verdict}: {', '.join(failing)}; odd one out {r.odd_one_out}"


def median_time(fn: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def resized(bug: Planted, n: int) -> Planted:
    g = torch.Generator().manual_seed(n)
    inputs = {k: torch.randn(n, n, dtype=torch.float64, generator=g) for k in bug.inputs}
    return Planted(
        f"{bug.name} {n}x{n}", bug.wrong, bug.right, inputs, bug.reference, bug.check, bug.torch_flags, bug.module
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size", type=int, default=16, help="also the elementwise Functions on N x N inputs")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # torch's own deprecation warnings from its forward-AD decompositions
    suite = list(BUGS)
    if args.size:
        suite += [
            resized(b, args.size) for b in BUGS if not b.module and b.name not in ("detached_term", "nondeterministic")
        ]
    print(f"machine: {machine()}")
    columns = ["bug", "torch: wrong", "torch: right", "torch s", "gradcheck-suite: wrong", "gradcheck-suite: right"]
    print("| " + " | ".join([*columns, "ours s", "ratio"]) + " |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    totals = {"torch": 0.0, "ours": 0.0, "torch_caught": 0, "ours_caught": 0, "torch_alarms": 0, "ours_alarms": 0}
    for bug in suite:
        verdicts = {}
        for which in ("wrong", "right"):
            verdicts[("torch", which)] = torch_verdict(bug, which)  # also the warm-up
            verdicts[("ours", which)] = ours_verdict(bug, which)
        t_torch = median_time(lambda b=bug: (torch_verdict(b, "wrong"), torch_verdict(b, "right")), args.runs)
        t_ours = median_time(lambda b=bug: (ours(b, "wrong"), ours(b, "right")), args.runs)
        totals["torch"] += t_torch
        totals["ours"] += t_ours
        for tool in ("torch", "ours"):
            totals[f"{tool}_caught"] += verdicts[(tool, "wrong")] != "pass"
            totals[f"{tool}_alarms"] += verdicts[(tool, "right")] != "pass"
        print(
            f"| {bug.name} | {verdicts[('torch', 'wrong')]} | {verdicts[('torch', 'right')]} | {t_torch:.3f} |"
            f" {verdicts[('ours', 'wrong')]} | {verdicts[('ours', 'right')]} | {t_ours:.3f} | {t_ours / t_torch:.2f}x |"
        )
    n = len(suite)
    print()
    print(
        f"caught: torch {totals['torch_caught']} of {n}, gradcheck-suite {totals['ours_caught']} of {n};"
        f" false alarms: torch {totals['torch_alarms']}, gradcheck-suite {totals['ours_alarms']};"
        f" time (wrong + right, medians summed): torch {totals['torch']:.3f} s,"
        f" gradcheck-suite {totals['ours']:.3f} s ({totals['ours'] / totals['torch']:.2f}x)"
    )


if __name__ == "__main__":
    main()
