"""Helpers shared by the benchmarks: medians of wall times and peak memory of a child process."""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
BENCH_CASES = Path(__file__).resolve().parent / "cases"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {torch.get_num_threads()} torch threads, torch {torch.__version__},"
        f" Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}"
    )


def median_time(fn: Callable[[], Any], runs: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def child(code: str) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; it prints one JSON object as its last line.

    The child adds its own peak resident set size (``max_rss_mib``): the whole process,
    torch and Python included, as ``resource.getrusage`` reports it at exit.
    """
    wrapped = (
        code
        + "\nimport json as _j, resource as _r\n"
        + "RESULT['max_rss_mib'] = _r.getrusage(_r.RUSAGE_SELF).ru_maxrss / 1024\n"
        + "print(_j.dumps(RESULT))\n"
    )
    out = subprocess.run([sys.executable, "-c", wrapped], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def fmt(seconds: list[float]) -> str:
    return ", ".join(f"{s:.3f}" for s in seconds)
