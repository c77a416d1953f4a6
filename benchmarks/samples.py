"""Issue 16 (b): `gradcheck run --samples 200` on every bundled case, this tree against another
checkout of the project (today's main) side by side.

Both are fresh interpreters started the same way, each importing its own tree's
`gradcheck_suite` (PYTHONPATH), interleaved run by run so that noise on the shared machine
hits both alike; each writes report.json to a scratch folder, and the verdicts of the two
are printed next to each other, so a speed-up that changed an answer shows.

    .venv/bin/python benchmarks/samples.py BASELINE_TREE [--runs N] [--samples N]

BASELINE_TREE: a worktree of the commit to compare against (`git worktree add --detach
/tmp/main16 main`); its own .venv is used when it has one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, fmt, machine


def bundled() -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in [*ROOT.glob("cases/*.toml"), *ROOT.glob("cases/layers/*.toml")])


def one_run(tree: Path, python: str, cases: list[str], samples: int) -> tuple[float, dict[str, str]]:
    """Wall time of one `gradcheck run` in ``tree``, and its verdict per case."""
    scratch = tempfile.mkdtemp()
    cmd = [python, "-m", "gradcheck_suite", "run", *cases, "--samples", str(samples), "--report-dir", scratch]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 1):  # 1: some case failed, which is an answer
        raise SystemExit(f"{tree}: exit {done.returncode}\n{done.stderr[-2000:]}")
    report = json.loads((Path(scratch) / "report.json").read_text())
    return seconds, {c.get("case", "?"): c.get("verdict", "?") for c in report.get("cases", [])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", type=Path, help="a worktree of the commit to compare against")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    base = args.baseline.resolve()
    base_python = str(base / ".venv" / "bin" / "python") if (base / ".venv").exists() else sys.executable
    cases = bundled()
    print(machine())
    print(f"`gradcheck run` on {len(cases)} bundled cases with --samples {args.samples}, {args.runs} run(s) each")
    ours_t, theirs_t = [], []
    ours_v: dict[str, str] = {}
    theirs_v: dict[str, str] = {}
    for _ in range(args.runs):
        seconds, theirs_v = one_run(base, base_python, cases, args.samples)
        theirs_t.append(seconds)
        seconds, ours_v = one_run(ROOT, sys.executable, cases, args.samples)
        ours_t.append(seconds)
    a, b = statistics.median(ours_t), statistics.median(theirs_t)
    head = subprocess.run(["git", "-C", str(base), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    print(f"  this tree:            median {a:.1f} s  ({fmt(ours_t)})")
    print(f"  {base} ({head.stdout.strip()}): median {b:.1f} s  ({fmt(theirs_t)})")
    print(f"  speed-up {b / a:.2f}x (target >= 3x)")
    print(f"  {'case':24} {'baseline':>13} {'this tree':>13}")
    for name in sorted(set(ours_v) | set(theirs_v)):
        mark = "" if ours_v.get(name) == theirs_v.get(name) else "   <- differs"
        print(f"  {name:24} {theirs_v.get(name, '-'):>13} {ours_v.get(name, '-'):>13}{mark}")


if __name__ == "__main__":
    main()
