"""The README's example command checks examples/ from inside it, as a user runs it: the current
directory (examples/, which holds mylayers/) is where case-file callables are imported from."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_command() -> str:
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^(cd examples && \.\./\.venv/bin/gradcheck run cases\b.*)$", readme, flags=re.M)
    assert len(commands) == 1, "the README shows how to run the examples exactly once"
    return commands[0]


def test_examples_run_as_the_readme_says() -> None:
    # the README's .venv/bin is wherever this interpreter's venv keeps its scripts
    command = _readme_command().replace("../.venv/bin/", f"{Path(sys.executable).parent}/")
    done = subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 case(s): 2 pass" in done.stdout
    assert "mylayers_affine" in done.stdout and "mylayers_swish" in done.stdout


def test_examples_without_pythonpath_name_the_case_and_the_target() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gradcheck_suite._cli", "run", "examples/cases"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert done.returncode == 2
    assert "case 'mylayers_affine'" in done.stderr
    assert "cannot import forward callable `mylayers.numpy_layers:affine_forward`" in done.stderr
    assert "PYTHONPATH" in done.stderr
