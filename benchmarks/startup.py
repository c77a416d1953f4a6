"""(a) The five seed cases through `gradcheck run` against `python -c "import torch"`.

Both are fresh interpreters started the same way, interleaved so that noise on the shared
machine hits both alike. Target: the run takes at most 1.3x the import.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time

from _common import ROOT, fmt, machine

RUNS = 9


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(runs: int = RUNS) -> tuple[list[float], list[float]]:
    """Wall times of `gradcheck run cases/*.toml` and of `python -c "import torch"`, interleaved."""
    # the five seed cases (cases/layers/ holds the layer library, which the issue leaves out);
    # reports are written to a scratch folder, as a plain `gradcheck run` writes them to reports/
    seeds = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "cases").glob("*.toml"))
    scratch = tempfile.mkdtemp()
    run = [sys.executable, "-m", "gradcheck_suite", "run", *seeds, "--report-dir", scratch]
    anchor = [sys.executable, "-c", "import torch"]
    wall(run)  # page cache warm for both
    wall(anchor)
    ours, torch_import = [], []
    for _ in range(runs):
        torch_import.append(wall(anchor))
        ours.append(wall(run))
    return ours, torch_import


def main() -> None:
    ours, torch_import = measure()
    a, b = statistics.median(ours), statistics.median(torch_import)
    print(machine())
    print(f"gradcheck run cases/*.toml: median {a:.3f} s  ({fmt(ours)})")
    print(f"python -c 'import torch' (anchor): median {b:.3f} s  ({fmt(torch_import)})")
    print(f"ratio run / import torch: {a / b:.2f}x  (target <= 1.3x)")


if __name__ == "__main__":
    main()
