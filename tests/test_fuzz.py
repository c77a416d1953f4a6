"""The fuzz run: a few thousand mutated programs and malformed case files through the loader,
the engine and the command line, in a child process with an audit hook (tests/fuzz_worker.py).
No escape, no traceback, no hang, nothing past the memory cap. benchmarks/fuzz.py is the long run.

The seed changes every day (GRADCHECK_FUZZ_SEED overrides it), so CI keeps covering new inputs;
a failure prints the seed and the input, and `python tests/fuzz_worker.py --seed S ...` replays it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).resolve().parent / "fuzz_worker.py"
PROGRAMS, FILES = 2000, 1000
HANG_SECONDS = 480  # the whole child; each input's own --timeout is 3 s


def _seed() -> int:
    return int(os.environ.get("GRADCHECK_FUZZ_SEED", _dt.date.today().toordinal()))


def _fuzz(tmp_path: Path, seed: int, programs: int, files: int, *extra: str) -> dict:
    out = tmp_path / "result.json"
    work = tmp_path / "work"
    command = [sys.executable, str(WORKER), "--seed", str(seed), "--programs", str(programs), "--files", str(files)]
    command += ["--dir", str(work), "--out", str(out), *extra]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=HANG_SECONDS)
    except subprocess.TimeoutExpired:
        at = (work / "progress").read_text() if (work / "progress").exists() else "?"
        pytest.fail(f"fuzz seed {seed}: hang at input {at}")
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict = json.loads(out.read_text())
    return result


def test_fuzzed_programs_and_case_files_never_escape_crash_hang_or_blow_up(tmp_path: Path) -> None:
    seed = _seed()
    r = _fuzz(tmp_path, seed, PROGRAMS, FILES)
    where = f"fuzz seed {seed}"
    assert r["escapes"] == [], f"{where}: {r['escapes'][:5]}"
    assert r["tracebacks"] == [], f"{where}: {json.dumps(r['tracebacks'][:3], indent=1)}"
    assert r["memory_errors"] == 0 and r["over_memory_cap"] == 0, f"{where}: peak {r['max_rss']} bytes"
    assert sum(r["outcomes"].values()) == PROGRAMS + FILES
    # the run reached the engine, not only the loader's refusals
    assert r["outcomes"].get("checked", 0) > PROGRAMS // 20, r["outcomes"]


def test_the_fuzz_run_sees_an_escape_when_one_is_allowed(tmp_path: Path) -> None:
    # the canary: with os:system allowed exactly, the inputs that call it get through, and
    # both the audit hook and the marker file must say so (else the run above proves nothing)
    r = _fuzz(tmp_path, 7, 0, 150, "--allow", "os:system", "--allow", "os.system")
    assert any("os.system" in e for e in r["escapes"]), r["escapes"][:5]
    assert any("marker file" in e for e in r["escapes"])
