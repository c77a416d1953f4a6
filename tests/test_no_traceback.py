"""No input ends in a traceback or a misleading exit status: every failure is a located error
with exit status 2, in the CLI and in the pytest plugin, and the reports stay readable."""

from __future__ import annotations

import json
import shutil
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from gradcheck_suite import CaseError, load_case

from .conftest import CASES

Cli = Callable[..., tuple[int, str, str]]
REPO = CASES.parent


def test_a_toml_date_as_the_name_is_a_located_error_and_the_reports_are_written(tmp_path: Path, cli: Cli) -> None:
    (tmp_path / "dated.toml").write_text((CASES / "product.toml").read_text().replace('"product"', "1979-05-27"))
    shutil.copy(CASES / "matmul.toml", tmp_path)
    out = tmp_path / "reports"
    code, stdout, err = cli(
        "run", str(tmp_path / "dated.toml"), str(tmp_path / "matmul.toml"), "--report-dir", str(out)
    )
    assert code == 2 and "Traceback" not in err  # not 1: nothing disagrees
    assert f"{tmp_path / 'dated.toml'}:1: case 'dated': [name]: `name` must be letters" in err
    data = json.loads((out / "report.json").read_text())
    assert data["errors"][0]["case"] == "dated" and data["cases"][0]["case"] == "matmul"
    ET.parse(out / "junit.xml")


def _baseline(tmp_path: Path, cli: Cli, edit: Callable[[dict], object]) -> Path:
    out = tmp_path / "base.json"
    assert cli("baseline", "save", str(out), "--cases", str(CASES / "product.toml"))[0] == 0
    data = json.loads(out.read_text())
    edited = edit(data)
    out.write_text(edited if isinstance(edited, str) else json.dumps(data))
    return out


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda d: d["cases"][0]["inputs"][0]["pairs"][0].__setitem__("max_abs", "abc"), "max_abs: 'abc'"),
        (lambda d: d["cases"][0].__setitem__("gradient_scale", [1]), "gradient_scale"),
        (lambda d: d.__setitem__("version", 0), "version"),
        (lambda d: d.__setitem__("version", -7), "version"),
        (lambda d: d.__setitem__("version", True), "version"),
        (lambda d: d["cases"][0].__setitem__("case", "x\n::error title=x::owned"), "cases[0].case"),
        (lambda d: "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
def test_a_malformed_baseline_is_one_line_and_exit_2(
    edit: Callable[[dict], object], words: str, tmp_path: Path, cli: Cli
) -> None:
    path = _baseline(tmp_path, cli, edit)
    code, out, err = cli("run", str(CASES / "product.toml"), "--no-reports", "--baseline", str(path))
    assert code == 2 and "Traceback" not in err and out == ""
    assert err.count("\n") == 1 and f"{path} is not a baseline" in err and words in err, err
    assert not any(line.lstrip().startswith("::") for line in err.splitlines())


@pytest.mark.parametrize(
    ("fragment", "words"),
    [
        ('x = { random = "normal", shape = [3], seed = true }', "`seed` must be an integer"),
        ('x = { random = "normal", shape = [true, 2] }', "`shape` must be a list of positive integers"),
        ("x = [1.0, true]", "true/false are no numbers"),
        ('x = { random = "normal", shape = [3], seed = -1 }', "`seed` must be an integer from 0"),
    ],
)
def test_booleans_are_not_numbers(fragment: str, words: str, tmp_path: Path) -> None:
    path = tmp_path / "b.toml"
    path.write_text(f'name = "b"\noutput = "f"\n[inputs]\n{fragment}\n[forward]\nprogram = "f = sum(x)"\n')
    with pytest.raises(CaseError, match=words) as caught:
        load_case(path)
    assert caught.value.line == 4


RETURNS = """
import numpy as np
import torch

def as_bool(x):
    return True

def as_int(x):
    return 5

def as_text(x):
    return "3.0"

def as_int_tensor(x):
    return torch.ones(2, dtype=torch.int64)

def grads_as_text(dout, x):
    return "nope"

def ok(x):
    return 2.0 * x
"""


@pytest.mark.parametrize(
    ("forward", "backward", "words"),
    [
        ("as_bool", None, "returned `y` as bool"),
        ("as_int", None, "returned `y` as int"),
        ("as_text", None, "returned `y` as str"),
        ("as_int_tensor", None, "returned `y` as torch.int64"),
        ("ok", "grads_as_text", "returned `dx` as str"),
    ],
)
def test_a_callable_returning_no_float_array_is_an_error_not_inconclusive(
    forward: str, backward: str | None, words: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Cli
) -> None:
    module = f"returns_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(RETURNS)
    monkeypatch.syspath_prepend(str(tmp_path))
    back = f'[backward]\ncallable = "{module}:{backward}"\n' if backward else ""
    path = tmp_path / "c.toml"
    path.write_text(
        f'name = "c"\noutput = "y"\n[inputs]\nx = [1.0, 2.0]\n[forward]\ncallable = "{module}:{forward}"\n{back}'
    )
    code, out, err = cli("run", str(path), "--no-reports", "--allow-callable", f"{module}.*")
    assert code == 2 and "inconclusive" not in err and "0 inconclusive" in out
    assert f"{path}:" in err and words in err, err


def test_control_characters_in_names_keep_junit_valid_xml(tmp_path: Path, cli: Cli) -> None:
    cases = tmp_path / "cases"
    cases.mkdir()
    (cases / "a\x07b.toml").write_text('output = "f"\n[inputs]\nx = 1.0\n[forward]\nprogram = "f = x"\n')
    (cases / "nul.toml").write_text(
        'name = "nul"\noutput = "f"\n[inputs]\n"x\\u0000y" = 1.0\n[forward]\nprogram = "f = 1"\n'
    )
    out = tmp_path / "reports"
    code, _, err = cli("run", str(cases), "--report-dir", str(out))
    assert code == 2 and "Traceback" not in err
    root = ET.parse(out / "junit.xml").getroot()  # would raise on a raw NUL or BEL
    messages = [e.get("message", "") for e in root.iter("error")]
    assert any("x\\x00y" in m for m in messages)  # the message is the escaped error line
    assert any("#x07" in (t.get("name") or "") for t in root.iter("testcase"))  # a raw name, as pytest writes it


def test_no_case_file_can_print_a_workflow_command(tmp_path: Path, cli: Cli) -> None:
    evil = "\\n::error title=x::owned\\n##[error]owned"
    (tmp_path / "w.toml").write_text(
        f'name = "w"\ndescription = "{evil}"\noutput = "f"\n[inputs]\n"{evil}" = 1.0\n[forward]\nprogram = "f = 1"\n'
    )
    (tmp_path / "d.toml").write_text(
        f'name = "d"\ndescription = "{evil}"\noutput = "f"\n[inputs]\nx = 1.0\n[forward]\nprogram = "f = x"\n'
    )
    for args in (("run", str(tmp_path), "--no-reports"), ("list", str(tmp_path)), ("show", "d", str(tmp_path))):
        code, out, err = cli(*args)
        lines = (out + err).splitlines()
        assert not [x for x in lines if x.lstrip().startswith("::") or "##[" in x], (args, out, err)
        assert "owned" in out + err  # still shown, escaped
    assert code == 0


def test_plugin_errors_are_located_and_never_tracebacks(pytester: pytest.Pytester) -> None:
    cases = pytester.path / "cases"
    cases.mkdir()
    (cases / "overflow.toml").write_text(
        'name = "overflow"\noutput = "f"\n[inputs]\nx = 1.0\n[forward]\nprogram = """\nf = x * 10.0 ** 400\n"""\n'
    )
    (cases / "deep.toml").write_text(
        'name = "deep"\noutput = "f"\n[inputs]\nx = 1.0\n[forward]\nprogram = """\nf = ' + "-" * 3000 + 'x\n"""\n'
    )
    done = pytester.runpytest("--gradcheck", "cases", "--continue-on-collection-errors", "-p", "no:cacheprovider")
    text = done.stdout.str()
    assert "Traceback" not in text and "def runtest" not in text and "_program.py" not in text
    done.stdout.fnmatch_lines(["*overflow.toml:7: *Numerical result out of range*"])
    done.stdout.fnmatch_lines(["*deep.toml:7: *nested too deeply to parse*"])


def test_plugin_fails_early_on_an_unwritable_report_dir(pytester: pytest.Pytester) -> None:
    (pytester.path / "blocker").write_text("a file, not a folder")
    (pytester.path / "cases").mkdir()
    shutil.copy(CASES / "product.toml", pytester.path / "cases")
    done = pytester.runpytest("--gradcheck", "cases", "--gradcheck-report-dir", "blocker/reports")
    assert done.ret == pytest.ExitCode.USAGE_ERROR
    assert "Traceback" not in done.stdout.str() + done.stderr.str()
    done.stderr.fnmatch_lines(["*gradcheck: cannot write reports to *blocker/reports*"])
    assert "product" not in done.stdout.str()  # stopped before running anything


def test_plugin_reports_keep_each_items_error(pytester: pytest.Pytester) -> None:
    (pytester.path / "cases").mkdir()
    (pytester.path / "cases" / "erroring.toml").write_text(
        'name = "erroring"\noutput = "f"\n[inputs]\nx = 0.0\n[forward]\nprogram = "f = log(x)"\n'
    )
    done = pytester.runpytest(
        "--gradcheck", "cases", "--gradcheck-dtype", "float64,float32", "--gradcheck-report-dir", "out"
    )
    done.assert_outcomes(failed=2)
    names = {t.get("name") for t in ET.parse(pytester.path / "out" / "junit.xml").getroot().iter("testcase")}
    assert {"erroring[cpu-float64]", "erroring[cpu-float32]"} <= names
    data = json.loads((pytester.path / "out" / "report.json").read_text())
    assert sorted(e["dtype"] for e in data["errors"]) == ["float32", "float64"]
