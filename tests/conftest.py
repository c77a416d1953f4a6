from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

# torch imports torch._inductor.test_operators lazily (through torch._dynamo, which torch.func
# and forward-mode checks reach), and that module registers a torch library when imported.
# pytester's in-process runs drop every module first imported inside them, so the next run
# would import and register it again ("Only a single TORCH_LIBRARY ..."). Importing it here,
# once per test process, keeps it out of their snapshots.
import torch._dynamo.trace_rules  # noqa: F401, E402

from gradcheck_suite._cli import main

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "cases"
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(autouse=True)
def plain_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whole lines and no colour, whatever the session's environment (xdist's workers set
    COLUMNS=80): the tests of fitting and colour set these themselves."""
    for name in ("COLUMNS", "NO_COLOR", "FORCE_COLOR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run the `gradcheck` CLI in-process; returns (exit status, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's usage errors
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def seed_copy(tmp_path: Path) -> Callable[..., Path]:
    """Copy a seed case into tmp_path, optionally editing its text; returns the file."""

    def copy(name: str, edit: Callable[[str], str] | None = None, dest: str | None = None) -> Path:
        text = (CASES / f"{name}.toml").read_text()
        if edit is not None:
            new = edit(text)
            assert new != text, "the edit changed nothing"
            text = new
        path = tmp_path / (dest or f"{name}.toml")
        path.write_text(text)
        return path

    return copy


def allow_callables(folder: Path, monkeypatch: pytest.MonkeyPatch, *patterns: str) -> None:
    """Run the test from ``folder`` with a pyproject.toml allowing ``patterns`` (docs/trust.md),
    as a user's project allows its own modules."""
    lines = ", ".join(f'"{p}"' for p in patterns)
    (folder / "pyproject.toml").write_text(f"[tool.gradcheck]\ncallables = [{lines}]\n")
    monkeypatch.chdir(folder)


@pytest.fixture
def speedpkg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tests/speedpkg.py's numpy callables as an allowed package in tmp_path (issue 16's tests)."""
    from .speedpkg import install

    return install(tmp_path, monkeypatch)
