"""Every code block of the README runs as written.

* ``sh``: the first two blocks are the set-up and the test command, which ``.ci/run`` runs
  exactly (checked here line for line; running them inside the test suite would install the
  venv again and run this very suite). Every other block runs with bash in a copy of the
  project whose ``.venv`` is the venv running these tests, and must exit 0.
* ``python``: run with this venv's Python in that copy; a block defining ``test_`` functions is
  a test file, run by pytest, and must pass.
* ``toml``: parses; a whole case (it has ``name`` and ``[forward]``) is checked and must pass.
* ``text``: output, not run; a block starting with ``$ gradcheck`` is a sample the command must
  still print, up to its timing.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
VENV = Path(sys.executable).parent.parent  # the venv running the tests (the README's .venv)


def blocks() -> list[tuple[str, str, int]]:
    """(language, code, line) of each fenced block."""
    out = []
    text = README.read_text()
    for m in re.finditer(r"^```(\w*)\n(.*?)^```$", text, re.M | re.S):
        out.append((m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1))
    return out


def of(language: str) -> list[tuple[str, int]]:
    return [(code, line) for lang, code, line in blocks() if lang == language]


SH = of("sh")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What a fresh clone holds after the README's set-up, in a folder of its own."""
    root = tmp_path_factory.mktemp("clone")
    # a clone holds the tracked files only: no __pycache__, nor the reports earlier runs wrote
    ignore = shutil.ignore_patterns("__pycache__", ".gradcheck-sets", "report.*", "junit.xml", "summary.md")
    for name in ("cases", "examples", "reports"):
        shutil.copytree(REPO / name, root / name, ignore=ignore)
    for name in ("pyproject.toml", "constraints.txt", "setup.sh"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, root / name)
    (root / ".venv").symlink_to(VENV)
    return root


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "NO_COLOR", "FORCE_COLOR", "PYTHONPATH")}
    env.pop("GITHUB_STEP_SUMMARY", None)
    return env


def test_every_kind_of_block_is_known() -> None:
    assert {lang for lang, _, _ in blocks()} <= {"sh", "python", "toml", "text"}
    assert len(SH) >= 4 and of("python") and of("toml")


def test_the_set_up_and_test_commands_are_what_ci_runs() -> None:
    (setup, _), (tests, _) = SH[:2]
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert setup.strip() in ci and tests.strip() in ci
    assert ci.index(setup.strip()) < ci.index(tests.strip())
    assert setup.strip() == "sh setup.sh && .venv/bin/gradcheck run"


@pytest.mark.parametrize(("code", "line"), SH[2:], ids=[f"line{line}" for _, line in SH[2:]])
def test_shell_block_runs(project: Path, code: str, line: int) -> None:
    proc = subprocess.run(
        ["bash", "-e", "-c", code], cwd=project, capture_output=True, text=True, timeout=600, env=_env()
    )
    assert proc.returncode == 0, f"README line {line}:\n{code}\n{proc.stdout}\n{proc.stderr}"


PYTHON = of("python")


@pytest.mark.parametrize(("code", "line"), PYTHON, ids=[f"line{line}" for _, line in PYTHON])
def test_python_block_runs(project: Path, tmp_path: Path, code: str, line: int) -> None:
    if re.search(r"^def test_", code, re.M):
        path = tmp_path / "test_readme_block.py"
        path.write_text(code)
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)]
    else:
        argv = [sys.executable, "-c", code]
    proc = subprocess.run(argv, cwd=project, capture_output=True, text=True, timeout=300, env=_env())
    assert proc.returncode == 0, f"README line {line}:\n{proc.stdout}\n{proc.stderr}"
    if argv[1] == "-m":
        tests = len(re.findall(r"^def test_", code, re.M))
        assert re.search(rf"\b{tests} passed\b", proc.stdout), proc.stdout


TOML = of("toml")


@pytest.mark.parametrize(("code", "line"), TOML, ids=[f"line{line}" for _, line in TOML])
def test_toml_block_is_toml_and_a_whole_case_passes(project: Path, tmp_path: Path, code: str, line: int) -> None:
    data = tomllib.loads(code)
    if "name" in data and "forward" in data:
        path = tmp_path / "readme_case.toml"
        path.write_text(code)
        proc = subprocess.run(
            [str(VENV / "bin" / "gradcheck"), "run", str(path), "--no-reports"],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=300,
            env=_env(),
        )
        assert proc.returncode == 0, f"README line {line}:\n{proc.stdout}\n{proc.stderr}"
        assert "1 case(s): 1 pass" in proc.stdout


SAMPLES = [(code, line) for code, line in of("text") if code.startswith("$ gradcheck")]


@pytest.mark.parametrize(("code", "line"), SAMPLES, ids=[f"line{line}" for _, line in SAMPLES])
def test_sample_output_is_what_the_command_prints(project: Path, code: str, line: int) -> None:
    command, *expected = code.rstrip("\n").split("\n")
    argv = shlex.split(command[2:].split("#")[0])
    argv[0] = str(VENV / "bin" / "gradcheck")
    # the shell expands the sample's globs (cases/*.toml)
    argv = [
        a for p in argv for a in (sorted(str(q.relative_to(project)) for q in project.glob(p)) if "*" in p else [p])
    ]
    proc = subprocess.run([*argv, "--no-reports"], cwd=project, capture_output=True, text=True, timeout=300, env=_env())

    def timeless(lines: list[str]) -> list[str]:
        return [re.sub(r"in \d+\.\d+ s", "in T s", x) for x in lines]

    assert timeless(proc.stdout.rstrip("\n").split("\n")) == timeless(expected), f"README line {line}"


def _anchor(title: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def test_contents_lead_to_every_section_and_the_reference_lives_in_docs() -> None:
    text = README.read_text()
    prose = re.sub(r"^```.*?^```$", "", text, flags=re.M | re.S)
    sections = [t for t in re.findall(r"^## (.+)$", prose, re.M) if t != "Contents"]
    contents = prose.split("## Contents", 1)[1].split("\n## ", 1)[0]
    links = re.findall(r"\]\(#([^)]+)\)", contents)
    assert links == [_anchor(t) for t in sections]
    for doc in re.findall(r"\]\((docs/[^)#]+)\)", text):
        assert (REPO / doc).exists(), doc
    # the long reference sections moved out
    assert "## How verdicts are decided" not in text and "## Large inputs" not in text
    assert (REPO / "docs" / "verdicts.md").read_text().startswith("# How verdicts are decided")
    assert (REPO / "docs" / "large-inputs.md").read_text().startswith("# Large inputs")
    assert len(text.splitlines()) < 320
