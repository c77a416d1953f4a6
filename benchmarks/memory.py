"""(d) A full check that would need ~13 GiB if every perturbed copy were evaluated at once.

benchmarks/cases/memory.toml: f = sum(exp(x) * sigmoid(x)) on 96x96 elements, complex step:
9,216 evaluations, each holding ~1.4 MiB of tensors by the engine's own estimate. Each run is
a fresh interpreter; its peak RSS is compared with the floor (the same interpreter after the
imports and loading the case, nothing run) and the budget.
"""

from __future__ import annotations

import statistics

from _common import BENCH_CASES, child, fmt, machine

RUNS = 3  # per budget
CASE = str(BENCH_CASES / "memory.toml")

FLOOR = f"""
from gradcheck_suite import load_case, RunOptions, check_case
case = load_case({CASE!r})
RESULT = {{}}
"""

RUN = f"""
import time
from gradcheck_suite import load_case, RunOptions, check_case
from gradcheck_suite._sources.numeric import Objective, evaluation_cost
case = load_case({CASE!r})
obj = Objective(case, [case.inputs], "cpu", complex_=True)
_, _, forward = obj.probe()
per_eval = evaluation_cost(obj, "x", forward)
start = time.perf_counter()
r = check_case(case, RunOptions(mode="full", max_memory=BUDGET))
RESULT = dict(
    seconds=time.perf_counter() - start,
    verdict=r.verdict,
    at_once_gib=per_eval * case.inputs["x"].size / 2**30,
    per_eval_kib=per_eval / 1024,
    notes=r.sources["numeric"].notes,
)
"""


def main() -> None:
    print(machine())
    floor = child(FLOOR)["max_rss_mib"]
    print(f"floor (imports + case loaded, nothing run): {floor:.0f} MiB")
    for budget, label in ((1 << 30, "default 1 GiB"), (32 << 20, "32 MiB"), (8 << 20, "8 MiB")):
        runs = [child(RUN.replace("BUDGET", str(budget))) for _ in range(RUNS)]
        rss = [r["max_rss_mib"] for r in runs]
        times = [r["seconds"] for r in runs]
        last = runs[-1]
        print(
            f"budget {label}: would need {last['at_once_gib']:.1f} GiB at once ({last['per_eval_kib']:.0f} KiB x 9216);"
            f" {last['verdict']}; {last['notes'][-1]}"
        )
        print(
            f"  peak RSS median {statistics.median(rss):.0f} MiB (max {max(rss):.0f}),"
            f" {statistics.median(rss) - floor:.0f} MiB above the floor; time median"
            f" {statistics.median(times):.2f} s ({fmt(times)})"
        )


if __name__ == "__main__":
    main()
