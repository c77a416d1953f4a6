"""Bad input gets exit 2 and a message naming the file and the line or key, and the other
cases in the same run are still checked and reported."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from .conftest import CASES

GOOD = """\
name = "good"
output = "f"

[inputs]
x = 2.0

[forward]
program = \"\"\"
f = x * x
\"\"\"
"""

# (file text, expected line or None, words the message must contain)
BAD = {
    "toml_syntax": ('name = "t"\noutput = "f"\n[inputs]\nx = = 2.0\n', 4, ["TOML syntax error"]),
    "missing_output": (
        'name = "t"\n[inputs]\nx = 1.0\n[forward]\nprogram = "f = x"\n',
        None,
        ["missing required key `output`"],
    ),
    "unknown_function": (
        'name = "t"\noutput = "f"\n[inputs]\nx = 1.0\n[forward]\nprogram = """\ny = x\nf = softplus(y)\n"""\n',
        8,
        ["unknown function `softplus`"],
    ),
    "dunder_import": (
        'name = "t"\noutput = "f"\n[inputs]\nx = 1.0\n[forward]\nprogram = """\nf = __import__("os")\n"""\n',
        7,
        ["forbidden syntax", "__import__"],
    ),
    "attribute": (
        'name = "t"\noutput = "f"\n[inputs]\nx = 1.0\n[forward]\nprogram = """\nf = x.sum()\n"""\n',
        7,
        ["forbidden syntax", "attribute access"],
    ),
    "lambda": (
        'name = "t"\noutput = "f"\n[inputs]\nx = 1.0\n[forward]\nprogram = """\ng = x\nf = (lambda: g)()\n"""\n',
        8,
        ["forbidden syntax", "lambda"],
    ),
    "used_before_assigned": (
        'name = "t"\noutput = "f"\n[inputs]\nx = 1.0\n[forward]\nprogram = """\nf = x * q\nq = x\n"""\n',
        7,
        ["`q` is used before it is assigned"],
    ),
    "shape_mismatch": (
        'name = "t"\noutput = "f"\n[inputs]\nW = [[1.0, 2.0], [3.0, 4.0]]\nx = [1.0, 2.0, 3.0]\n'
        '[forward]\nprogram = """\ny = W @ x\nf = sum(y)\n"""\n',
        8,
        ["shape mismatch"],
    ),
    "missing_gradient": (
        'name = "t"\noutput = "f"\n[inputs]\nx = 1.0\ny = 2.0\n[forward]\nprogram = "f = x * y"\n'
        '[backward]\nprogram = """\ndx = y * df\n"""\n',
        9,
        ["leaves input(s) y without a gradient", "`dy`"],
    ),
    "gradient_shape": (
        'name = "t"\noutput = "f"\n[inputs]\nx = [1.0, 2.0]\n[forward]\nprogram = "f = sum(x * x)"\n'
        '[backward]\nprogram = """\ndx = sum(2 * x) * df\n"""\n',
        9,
        ["shape mismatch", "`dx`"],
    ),
    "nan_input": ('name = "t"\noutput = "f"\n[inputs]\nx = nan\n[forward]\nprogram = "f = x"\n', 4, ["NaN"]),
    "nan_output": ('name = "t"\noutput = "f"\n[inputs]\nx = -1.0\n[forward]\nprogram = "f = log(x)"\n', None, ["NaN"]),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_case_file_is_located_and_the_others_still_run(kind: str, cli, tmp_path: Path) -> None:
    text, line, words = BAD[kind]
    (tmp_path / "a_good.toml").write_text(GOOD)
    bad = tmp_path / f"{kind}.toml"
    bad.write_text(text)
    shutil.copy(CASES / "product.toml", tmp_path / "z_product.toml")

    code, out, err = cli("run", str(tmp_path))

    assert code == 2
    assert "Traceback" not in out + err
    message = next(m for m in err.splitlines() if str(bad) in m)
    where = f"{bad}:{line}:" if line else f"{bad}:"
    assert message.startswith(f"error: {where}"), message
    for w in words:
        assert w in message, message
    # the good cases around it were still checked
    assert re.search(r"^good\s+x\s", out, re.M)
    assert re.search(r"^product\s+x\s", out, re.M)
    assert "2 pass, 0 fail, 0 inconclusive, 1 error" in out


def test_an_unknown_key_names_its_line(cli, tmp_path: Path) -> None:
    path = tmp_path / "typo.toml"
    path.write_text(GOOD.replace('output = "f"', 'output = "f"\noutptu = "g"'))
    code, _, err = cli("run", str(path))
    assert code == 2
    assert f"{path}:3:" in err and "unknown key `outptu`" in err


@pytest.mark.parametrize(
    "table, words",
    [
        ("[sweep]\ndomain = 3\n", "`domain` must be a table"),
        ('[sweep]\ndomain = { x = ["a", "b"] }\n', "two numbers with low < high"),
        ('[sweep]\nseed = "abc"\n', "`seed` must be an integer"),
        ('[expect]\nf = { value = 4.0, decimals = "x" }\n', "`decimals` must be a whole number"),
        ("[expect]\nf = true\n", "not a number"),
    ],
)
def test_wrong_types_in_a_table_are_located_errors(table: str, words: str, cli, tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text(GOOD + table)
    shutil.copy(CASES / "product.toml", tmp_path / "z_product.toml")
    code, out, err = cli("run", str(tmp_path))
    assert code == 2 and "Traceback" not in err
    assert f"{tmp_path / 'bad.toml'}:" in err and words in err
    assert re.search(r"^product\s+x\s", out, re.M)


@pytest.mark.parametrize("spec", ['{ random = "normal", mean = "a" }', '{ random = "uniform", low = "a" }'])
def test_wrong_types_in_a_drawn_input_are_located_errors(spec: str, cli, tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text(GOOD.replace("x = 2.0", f"x = {spec}"))
    code, _, err = cli("run", str(tmp_path))
    assert code == 2 and f"{tmp_path / 'bad.toml'}:5:" in err and "must be a number" in err


def test_an_empty_folder_is_an_error_not_zero_cases(cli, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    shutil.copy(CASES / "product.toml", tmp_path / "product.toml")
    code, out, err = cli("run", str(tmp_path / "empty"), str(tmp_path / "product.toml"))
    assert code == 2 and "no case files (*.toml) in this folder" in err
    assert re.search(r"^product\s+x\s", out, re.M)


def test_two_cases_of_one_name_are_an_error(cli, tmp_path: Path) -> None:
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        shutil.copy(CASES / "product.toml", tmp_path / sub / "product.toml")
    code, out, err = cli("run", str(tmp_path))
    assert code == 2
    assert f"{tmp_path / 'b' / 'product.toml'}: case 'product'" in err
    assert f"also used by {tmp_path / 'a' / 'product.toml'}" in err
    assert "1 pass, 0 fail, 0 inconclusive, 1 error" in out


def test_a_file_name_that_is_no_case_name_says_so(cli, tmp_path: Path) -> None:
    path = tmp_path / "größe.toml"
    path.write_text(GOOD.replace('name = "good"\n', ""))
    code, _, err = cli("run", str(path))
    assert code == 2 and "the file name `größe` is no case name: add `name = ...`" in err


def test_a_sample_point_outside_the_functions_domain_is_named(cli, tmp_path: Path) -> None:
    path = tmp_path / "logc.toml"
    path.write_text(GOOD.replace("x = 2.0", "x = 0.5").replace("f = x * x", "f = log(x)"))
    code, _, err = cli("run", str(path), "--samples", "20")
    assert code == 2
    assert re.search(r"NaN or infinite at sample point \d+ \(x=-", err), err
    assert "declare a [sweep] domain" in err
