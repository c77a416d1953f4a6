"""The long fuzz run (issue 13): at least 10,000 mutated programs and 1,000 malformed case files
through the loader, the engine and the command line, in children with an audit hook.

    .venv/bin/python benchmarks/fuzz.py [CHILDREN] [PROGRAMS_EACH] [FILES_EACH] [FIRST_SEED]

Defaults: 5 children x (2,400 programs + 300 case files), seeds 1000.. (12,000 programs and
1,500 case files in all). Each child is tests/fuzz_worker.py (see its docstring for what counts
as an escape, a traceback, a hang and a run past the memory cap); a child that outlives 15
minutes is a hang. Prints one line per child and the totals, for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, machine

WORKER = ROOT / "tests" / "fuzz_worker.py"
HANG = 900
MAX_RSS = 3 << 30


def main() -> int:
    children = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    programs = int(sys.argv[2]) if len(sys.argv) > 2 else 2400
    files = int(sys.argv[3]) if len(sys.argv) > 3 else 300
    first = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
    print(f"machine: {machine()}")
    totals = {"programs": 0, "files": 0, "escapes": 0, "tracebacks": 0, "hangs": 0, "over_memory_cap": 0}
    outcomes: dict[str, int] = {}
    peak, seconds = 0, 0.0
    for seed in range(first, first + children):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "result.json"
            command = [sys.executable, str(WORKER), "--seed", str(seed), "--programs", str(programs)]
            command += ["--files", str(files), "--dir", str(Path(tmp) / "work"), "--out", str(out)]
            command += ["--max-rss", str(MAX_RSS)]
            start = time.perf_counter()
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=HANG)
            except subprocess.TimeoutExpired:
                totals["hangs"] += 1
                print(f"seed {seed}: HANG (no result in {HANG} s)")
                continue
            wall = time.perf_counter() - start
            if done.returncode != 0:
                print(f"seed {seed}: the worker failed:\n{done.stderr[-2000:]}")
                return 1
            r = json.loads(out.read_text())
        totals["programs"] += r["programs"]
        totals["files"] += r["files"]
        totals["escapes"] += len(r["escapes"])
        totals["tracebacks"] += len(r["tracebacks"])
        totals["over_memory_cap"] += r["over_memory_cap"] + (1 if r["memory_errors"] else 0)
        for k, v in r["outcomes"].items():
            outcomes[k] = outcomes.get(k, 0) + v
        peak = max(peak, r["max_rss"])
        seconds += r["seconds"]
        print(
            f"seed {seed}: {r['programs']} programs, {r['files']} files in {r['seconds']:.1f} s"
            f" ({wall:.1f} s with start-up); {len(r['escapes'])} escapes, {len(r['tracebacks'])} tracebacks,"
            f" peak RSS {r['max_rss'] / 2**20:.0f} MiB; outcomes {r['outcomes']}"
        )
        for item in [*r["escapes"][:3], *(t["input"] + ": " + t["error"] for t in r["tracebacks"][:3])]:
            print(f"    {item}")
    print(
        f"total: {totals['programs']} programs, {totals['files']} malformed case files;"
        f" {totals['escapes']} executions outside the whitelist, {totals['tracebacks']} tracebacks,"
        f" {totals['hangs']} hangs, {totals['over_memory_cap']} runs past the {MAX_RSS >> 30} GiB memory cap;"
        f" peak RSS {peak / 2**20:.0f} MiB; {seconds:.0f} s of fuzzing; outcomes {outcomes}"
    )
    return 0 if not (totals["escapes"] or totals["tracebacks"] or totals["hangs"] or totals["over_memory_cap"]) else 1


if __name__ == "__main__":
    sys.exit(main())
