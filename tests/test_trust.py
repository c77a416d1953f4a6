"""Case files are data: a Python callable runs only when the person running the check allowed
it, outside the case files, and nothing is imported before a case is checked (docs/trust.md)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from gradcheck_suite import CaseError, RunOptions, check_case, load_case

from .conftest import CASES

ROOT = Path(__file__).resolve().parent.parent


def _case(folder: Path, name: str, section: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(f'name = "{name}"\noutput = "y"\n[inputs]\nx = [1.0, 2.0]\n' + textwrap.dedent(section))
    return path


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "MARKER"


@pytest.mark.parametrize(
    ("target", "kwargs"),
    [
        ("os:system", "command = 'touch {m}'"),
        ("subprocess:run", "args = ['touch', '{m}']"),
        ("runpy:run_path", "path_name = '{script}'"),
    ],
)
def test_a_case_file_cannot_run_a_command(
    target: str, kwargs: str, tmp_path: Path, marker: Path, cli: Callable[..., tuple[int, str, str]]
) -> None:
    script = tmp_path / "script.py"
    script.write_text(f"open({str(marker)!r}, 'w').close()\n")
    path = _case(
        tmp_path / "cases",
        "escape",
        f"""
        [forward]
        callable = "{target}"
        args = []
        kwargs = {{ {kwargs.format(m=marker, script=script)} }}
        """,
    )
    code, out, err = cli("run", str(path), "--no-reports")
    assert not marker.exists(), "the case file ran a command"
    assert code == 2 and "Traceback" not in err
    # a located error that names the setting to change
    assert f"{path}:7:" in err and f"callable `{target}` refused" in err
    assert "[tool.gradcheck] callables" in err and "--allow-callable" in err


PACKAGE = """
from pathlib import Path
Path({marker!r}).write_text("imported")  # an import-time side effect

def double(x):
    return 2.0 * x
"""


@pytest.fixture
def sideeffect(tmp_path: Path, marker: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A module that writes the marker when imported, allowed by the project's pyproject.toml."""
    name = f"sideeffect_{uuid.uuid4().hex[:8]}"
    pkg = tmp_path / "pkgs"
    pkg.mkdir()
    (pkg / f"{name}.py").write_text(PACKAGE.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(pkg))
    project = tmp_path / "project"
    (project / "cases").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        f'[tool.pytest.ini_options]\ngradcheck_paths = ["cases"]\n[tool.gradcheck]\ncallables = ["{name}.*"]\n'
    )
    _case(project / "cases", "double", f'[forward]\ncallable = "{name}:double"\n')
    monkeypatch.chdir(project)
    return name, project


def test_list_and_show_import_nothing_and_run_imports_an_allowed_callable(
    sideeffect: tuple[str, Path], marker: Path, cli: Callable[..., tuple[int, str, str]]
) -> None:
    _, project = sideeffect
    shutil.copy(CASES / "product.toml", project / "cases")
    code, out, _ = cli("list", "cases")
    assert code == 0 and "double" in out
    assert not marker.exists(), "gradcheck list imported the case's module"
    code, out, _ = cli("show", "product", "cases")  # finding `product` reads `double` too
    assert code == 0 and "gradients:" in out
    assert not marker.exists(), "gradcheck show imported another case's module"
    load_case(project / "cases" / "double.toml")
    assert not marker.exists(), "loading a case imported its module"
    code, out, err = cli("run", "cases", "--no-reports")
    assert marker.exists() and code == 0, err  # allowed by pyproject.toml: checked when run
    assert "2 case(s)" in out and "0 error" in out


def test_plugin_collection_imports_nothing(sideeffect: tuple[str, Path], marker: Path) -> None:
    _, project = sideeffect
    env_path = str(project.parent / "pkgs")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(env_path),
    )
    assert "double[cpu-float64]" in done.stdout, done.stdout + done.stderr
    assert not marker.exists(), "pytest --collect-only imported the case's module"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(env_path),
    )
    assert done.returncode == 0 and marker.exists(), done.stdout + done.stderr


def _env(path: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (path, env.get("PYTHONPATH")) if p)
    return env


def test_a_callable_off_the_list_is_refused_before_its_module_is_imported(
    sideeffect: tuple[str, Path], marker: Path
) -> None:
    from gradcheck_suite import Trust  # new in this version: imported here so the other tests run on older ones

    name, project = sideeffect
    path = project / "cases" / "double.toml"
    with pytest.raises(CaseError, match=r"refused.*\[tool\.gradcheck\] callables") as caught:
        load_case(path, trust=Trust.from_settings(start=project.parent))  # no pyproject there
    assert caught.value.line == 6 and caught.value.key == "forward.callable"
    assert not marker.exists()


def test_allow_callable_on_the_command_line(
    sideeffect: tuple[str, Path], marker: Path, cli: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    name, project = sideeffect
    (project / "pyproject.toml").write_text("[tool.other]\n")
    code, _, err = cli("run", "cases", "--no-reports")
    assert code == 2 and "refused" in err and not marker.exists()
    code, out, err = cli("run", "cases", "--no-reports", "--allow-callable", f"{name}:double")
    assert code == 0 and marker.exists(), err


def test_data_only_refuses_every_callable_the_defaults_too(cli: Callable[..., tuple[int, str, str]]) -> None:
    code, out, err = cli("run", str(CASES / "layers" / "conv_naive.toml"), "--no-reports", "--data-only")
    assert code == 2 and "--data-only refuses every callable" in err
    text = (CASES / "layers" / "conv_naive.toml").read_text().splitlines()
    forward_line = 1 + next(
        i for i, t in enumerate(text) if t.startswith('callable = "gradcheck_suite.naive_layers:conv_f')
    )
    assert f"conv_naive.toml:{forward_line}:" in err  # the forward's `callable` line
    code, out, _ = cli("run", str(CASES / "layers" / "conv_naive.toml"), "--no-reports")
    assert code == 0 and "1 pass" in out  # allowed by default: the package's own layer


@pytest.mark.parametrize(
    ("target", "allowed"),
    [
        ("gradcheck_suite.naive_layers:conv_forward_naive", True),
        ("torch.nn.functional.conv2d", True),
        ("torch.nn.functional:conv2d", True),
        ("torch.nn.functional._in_projection", False),  # a wildcard never matches a private name
        ("os:system", False),
        ("os.path:join", False),
        ("subprocess:Popen", False),
        ("builtins:eval", False),
        ("importlib:import_module", False),
        ("pickle:loads", False),
        ("torch.load", False),
        ("numpy:load", False),
        ("mylayers.numpy_layers:affine_forward", False),
        ("not a name", False),
        ("pkg.mod:", False),
    ],
)
def test_default_allow_list(target: str, allowed: bool) -> None:
    from gradcheck_suite import Trust  # new in this version: imported here so the other tests run on older ones

    assert (Trust().refusal(target) is None) == allowed


def test_a_wildcard_never_matches_a_dangerous_module_but_an_exact_entry_does() -> None:
    from gradcheck_suite import Trust  # new in this version: imported here so the other tests run on older ones

    everything = Trust(("*",))
    assert everything.refusal("mylayers:f") is None
    for name in ("os:system", "subprocess:run", "runpy:run_path", "shutil:rmtree", "ctypes:CDLL", "sys:exit"):
        assert "refused" in (everything.refusal(name) or ""), name
    assert Trust(("os:system",)).refusal("os:system") is None  # a deliberate, exact decision
    assert Trust(("os.system",)).refusal("os:system") is None  # either spelling


def test_resolution_cannot_walk_out_of_an_allowed_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gradcheck_suite import Trust  # new in this version: imported here so the other tests run on older ones

    name = f"reexport_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("import os\nfrom os import system\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    trust = Trust((f"{name}.*",))
    # through a module attribute: refused on import, whatever the pattern
    assert trust.refusal(f"{name}:os.system") is None
    with pytest.raises(ValueError, match="is a module"):
        Trust.resolve(f"{name}:os.system", exact=False)
    # a re-export of os.system matched by a wildcard: refused once its home is known
    with pytest.raises(ValueError, match="defined in `(posix|nt|os)`"):
        Trust.resolve(f"{name}:system", exact=False)


def test_the_refusal_happens_at_check_time_as_a_located_error_with_the_others_still_run(
    tmp_path: Path, cli: Callable[..., tuple[int, str, str]]
) -> None:
    _case(tmp_path, "a_refused", '[forward]\ncallable = "os:getcwd"\n')
    shutil.copy(CASES / "product.toml", tmp_path)
    code, out, err = cli("run", str(tmp_path), "--no-reports")
    assert code == 2 and "product" in out and "1 pass" in out and "1 error" in out
    assert f"{tmp_path / 'a_refused.toml'}:6: case 'a_refused': [forward.callable]" in err


def test_pyproject_settings_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.gradcheck]\ncallable = ["x.*"]\n')  # a typo
    code, _, err = cli("run", str(CASES / "product.toml"), "--no-reports")
    assert code == 2 and "unknown key `callable`" in err and str(tmp_path / "pyproject.toml") in err
    (tmp_path / "pyproject.toml").write_text('[tool.gradcheck]\ncallables = ["x y"]\n')
    code, _, err = cli("run", str(CASES / "product.toml"), "--no-reports")
    assert code == 2 and "is not a dotted name or a glob" in err


def test_check_time_resolution_keeps_the_notebook_cases_and_examples_unchanged() -> None:
    # every bundled case and example loads without importing, then checks (resolving) as before
    for path in [*sorted(CASES.rglob("*.toml"))]:
        case = load_case(path)
        assert check_case(case, RunOptions()).verdict == "pass", path


def test_docs_state_the_defaults_and_the_never_list() -> None:
    from gradcheck_suite._trust import (
        DEFAULT_CALLABLES,
        NEVER_BY_WILDCARD,
    )  # new in this version: imported here so the other tests run on older ones

    trust_doc = (ROOT / "docs" / "trust.md").read_text()
    for pattern in DEFAULT_CALLABLES:
        assert f"`{pattern}`" in trust_doc
    for name in ("os", "subprocess", "builtins", "importlib", "runpy", "sys", "shutil", "pickle", "ctypes"):
        assert name in NEVER_BY_WILDCARD and f"`{name}`" in trust_doc
    readme = (ROOT / "README.md").read_text()
    assert "docs/trust.md" in readme
    assert "A case file cannot run arbitrary code." not in readme  # the old, untrue claim
