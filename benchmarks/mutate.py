"""`gradcheck mutate` on the five seed cases, in a fresh interpreter, against `import torch`.

The issue's target: under 10 s for the whole command. Both commands are started the same way
and interleaved, so noise on the shared machine hits both alike; the figure is the median
wall time, and the ratio to `python -c "import torch"` measured in the same run.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from _common import ROOT, fmt, machine

RUNS = 5


def wall(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    return time.perf_counter() - start, out.stdout


def main() -> None:
    seeds = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "cases").glob("*.toml"))
    mutate = [sys.executable, "-m", "gradcheck_suite", "mutate", *seeds, "--min-score", "100%"]
    anchor = [sys.executable, "-c", "import torch"]
    _, text = wall(mutate)  # page cache warm for both
    wall(anchor)
    ours, torch_import = [], []
    for _ in range(RUNS):
        torch_import.append(wall(anchor)[0])
        ours.append(wall(mutate)[0])
    a, b = statistics.median(ours), statistics.median(torch_import)
    print(machine())
    print(text.rstrip())
    print(f"gradcheck mutate cases/*.toml: median {a:.3f} s  ({fmt(ours)})  (target < 10 s)")
    print(f"python -c 'import torch' (anchor): median {b:.3f} s  ({fmt(torch_import)})")
    print(f"ratio mutate / import torch: {a / b:.2f}x")


if __name__ == "__main__":
    main()
