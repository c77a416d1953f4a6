"""`gradcheck mutate` (issue 14): mutants of program and Python backwards, run through the
normal check; equivalents apart; survivors with their line and what makes the case weak."""

from __future__ import annotations

import inspect
import re
import time
from pathlib import Path

import pytest

import gradcheck_suite.naive_layers
from gradcheck_suite import RunOptions, load_case
from gradcheck_suite._mutate import mutate_case
from gradcheck_suite._mutate.program import program_mutants
from gradcheck_suite._mutate.python import python_mutants

from .conftest import CASES, DATA

LAYERS = CASES / "layers"
SEEDS = sorted(p.stem for p in CASES.glob("*.toml"))
BUNDLED = SEEDS + sorted(p.stem for p in LAYERS.glob("*.toml"))


def score_rows(out: str) -> dict[str, list[str]]:
    """case -> [mutants, killed, survived, equivalent, stillborn, score] from the table."""
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] in BUNDLED and len(parts) == 7:
            rows[parts[0]] = parts[1:]
    return rows


def test_mutate_cases_scores_every_bundled_case_and_each_kills_every_mutant(cli) -> None:
    code, out, err = cli("mutate", str(CASES), "--min-score", "100%")
    rows = score_rows(out)
    assert sorted(rows) == sorted(BUNDLED), out
    for name, (mutants, killed, survived, equivalent, _, score) in rows.items():
        assert int(mutants) == int(killed) + int(equivalent), (name, out)
        assert (survived, score) == ("0", "100%"), (name, out)
        assert int(killed) > 0
    assert (code, err) == (0, "")
    assert re.search(rf"{len(BUNDLED)} case\(s\); mean score 100%; all at or above 100%", out)


def test_the_seed_cases_mutate_in_seconds(cli) -> None:
    # benchmarks/mutate.py measures this against `import torch`; here only that it is no minute
    start = time.perf_counter()
    code, out, _ = cli("mutate", *(str(CASES / f"{s}.toml") for s in SEEDS))
    assert code == 0 and len(score_rows(out)) == 5
    assert time.perf_counter() - start < 60


def test_non_overlapping_max_pool_lets_equals_for_plus_equals_survive(cli) -> None:
    # the layer case as it was before this issue: stride 2 = pool size 2, a square 2x2 output
    path = DATA / "max_pool_2x2.toml"
    result = mutate_case(load_case(path), RunOptions())
    survivors = {(r.operator, r.mutated): r for r in result.results if r.status == "survived"}
    eq = survivors[("+= to =", "dx[nn, cc, hs + a, ws + k] = dout[nn, cc, i, j]")]
    line = (
        inspect.getsource(gradcheck_suite.naive_layers)
        .splitlines()
        .index("                    dx[nn, cc, hs + a, ws + k] += dout[nn, cc, i, j]")
    )
    assert (eq.file, eq.line) == ("gradcheck_suite/naive_layers.py", line + 1)
    assert eq.weaknesses == (
        "the 2x2 windows at stride 2 never overlap, so `=` and `+=` agree: a stride below the window size catches it",
    )
    square = survivors[("axis", "for i in range(dout.shape[3]):")]
    assert square.weaknesses == (
        "axes 2 and 3 of `dout` have the same length (2), so mixing them up goes unseen: give them different lengths",
    )
    assert result.score is not None and result.score < 1
    # the CLI prints each survivor with its line, and --min-score turns it into exit status 1
    code, out, _ = cli("mutate", str(path), "--min-score", "0.95")
    assert code == 1
    assert f"survived   line {line + 1}: `dx[nn, cc, hs + a, ws + k] += dout[nn, cc, i, j]` ->" in out
    assert "weak: the 2x2 windows at stride 2 never overlap" in out
    assert "1 below --min-score 95%" in out
    assert cli("mutate", str(path))[0] == 0  # without the gate it only reports


def test_the_bundled_max_pool_case_catches_equals_for_plus_equals() -> None:
    result = mutate_case(load_case(LAYERS / "max_pool_naive.toml"), RunOptions())
    (eq,) = [r for r in result.results if r.operator == "+= to ="]
    assert eq.status == "killed" and eq.how.startswith("dx: manual disagrees")
    # the module the mutants came from is untouched
    assert "dx[nn, cc, hs + a, ws + k] += dout[nn, cc, i, j]" in inspect.getsource(gradcheck_suite.naive_layers)
    assert result.score == 1.0


AFFINE_ONES = """
name = "affine_ones"
output = "out"

[inputs]
x = { random = "normal", shape = [4, 3], seed = 0 }
w = { random = "normal", shape = [3, 4], seed = 1 }
b = { random = "normal", shape = [4], seed = 2 }

[forward]
program = \"\"\"
out = x @ w + b
\"\"\"

[backward]
program = \"\"\"
dx = dout @ w.T
dw = x.T @ dout
db = sum(dout, axis=0)
\"\"\"
"""


def test_an_upstream_of_ones_is_named_and_a_random_one_fixes_it(tmp_path: Path) -> None:
    path = tmp_path / "affine_ones.toml"
    path.write_text(AFFINE_ONES)
    result = mutate_case(load_case(path), RunOptions())
    (axis,) = [r for r in result.results if r.mutated == "db = sum(dout, axis=1)"]
    assert axis.status == "survived"
    # both hide it: with ones the two sums agree, and a square dout keeps the shape right
    assert axis.weaknesses == (
        "axes 0 and 1 of `dout` have the same length (4), so mixing them up goes unseen: give them different lengths",
        "the upstream gradient of `out` is all ones (or constant): draw it at random",
    )
    # with a random upstream the same mutant is killed
    path.write_text(
        AFFINE_ONES.replace('output = "out"', 'output = "out"\nupstream = { random = "normal", shape = [4, 4] }')
    )
    strong = mutate_case(load_case(path), RunOptions())
    (axis,) = [r for r in strong.results if r.mutated == "db = sum(dout, axis=1)"]
    assert axis.status == "killed" and strong.score == 1.0


def test_equivalent_mutants_are_reported_apart() -> None:
    result = mutate_case(load_case(CASES / "sum_times.toml"), RunOptions())
    # dx = 1 * dq, so reading dx where dy reads dq changes nothing at any point
    (eq,) = [r for r in result.results if r.status == "equivalent"]
    assert (eq.operator, eq.original, eq.mutated) == ("variable", "dy = 1 * dq", "dy = 1 * dx")
    assert result.score == 1.0 and result.count("equivalent") == 1


def test_program_operators_each_make_mutants() -> None:
    ops = {m.operator for m in program_mutants(load_case(CASES / "compound_sigmoid.toml"))[0]}
    assert ops == {"drop +=", "+= to =", "flip sign", "constant", "variable"}
    ops = {m.operator for m in program_mutants(load_case(LAYERS / "layernorm.toml"))[0]}
    assert {"axis", "flip sign"} <= ops
    ops = {m.operator for m in program_mutants(load_case(LAYERS / "rnn_step.toml"))[0]}
    assert "drop .T" in ops


def test_python_mutants_keep_their_lines_and_run_from_a_temporary_module() -> None:
    mutants, stillborn, why, _ = python_mutants(load_case(LAYERS / "conv_naive.toml").resolved())
    assert why is None and stillborn == 0
    lines = inspect.getsource(gradcheck_suite.naive_layers).splitlines()
    for m in mutants:
        assert m.file == "gradcheck_suite/naive_layers.py"
        assert lines[m.line - 1].strip() == m.original
        fn = m.case.backward.call.fn
        assert (
            fn.__module__.startswith("_gradcheck_mutant_")
            and fn is not gradcheck_suite.naive_layers.conv_backward_naive
        )
    assert {"drop +=", "+= to =", "flip sign", "constant", "axis"} <= {m.operator for m in mutants}


def test_an_autograd_function_is_mutated_through_its_class(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "examples"))
    result = mutate_case(
        load_case(Path(__file__).resolve().parent.parent / "examples/cases/swish_function.toml"), RunOptions()
    )
    assert result.note is None and result.results
    assert {r.file for r in result.results} == {"examples/mylayers/torch_layers.py"}
    assert all(r.status == "killed" for r in result.results if r.operator == "flip sign")


def test_no_score_without_a_backward_or_for_a_failing_case(tmp_path: Path) -> None:
    path = tmp_path / "product.toml"
    path.write_text((CASES / "product.toml").read_text().replace("dx = y * dz", "dx = x * dz"))
    result = mutate_case(load_case(path), RunOptions())
    assert result.score is None and result.note is not None and result.note.startswith("does not pass unmutated")
    text = (CASES / "product.toml").read_text()
    path.write_text(text[: text.index("[backward]")] + text[text.index("[expect]") :].replace("dx = -3\ndy = 4\n", ""))
    assert mutate_case(load_case(path), RunOptions()).note == "no backward to mutate"


def test_min_score_gate_and_usage_errors(cli) -> None:
    product = str(CASES / "product.toml")
    assert cli("mutate", product, "--min-score", "1")[0] == 0
    code, _, err = cli("mutate", product, "--min-score", "150")
    assert code == 2 and "a fraction from 0 to 1, or a percentage" in err
    code, _, err = cli("mutate", str(CASES), "-k", "nosuchcase")
    assert code == 2 and "matches -k 'nosuchcase'" in err


PRODUCT = """
name = "product_at"
output = "z"

[inputs]
x = {x}
y = {y}

[forward]
program = "z = x * y"

[backward]
program = \"\"\"
dx = y * dz
dy = x * dz
\"\"\"
"""

SYMMETRIC = """
name = "symmetric_matmul"
output = "D"
upstream = { random = "normal", shape = [2, 2], seed = 5 }

[inputs]
W = [[2.0, 1.0], [1.0, 3.0]]
X = [[1.0, 2.0], [3.0, 4.0]]

[forward]
program = "D = W @ X"

[backward]
program = \"\"\"
dW = dD @ X.T
dX = W.T @ dD
\"\"\"
"""


SQUARE_AT_ONE = """
name = "x_y_squared"
output = "z"

[inputs]
x = 3.0
y = 1.0

[forward]
program = "z = x * y ** 2"

[backward]
program = \"\"\"
dx = y ** 2 * dz
dy = 2 * x * y * dz
\"\"\"
"""


def survivors(path: Path) -> dict[str, tuple[str, ...]]:
    result = mutate_case(load_case(path), RunOptions())
    return {r.mutated: r.weaknesses for r in result.results if r.status == "survived"}


@pytest.mark.parametrize(
    ("text", "mutated", "weakness"),
    [
        (PRODUCT.format(x=4.0, y=0.0), "dx = -(y * dz)", "`y` is 0 at the case's point"),
        (PRODUCT.format(x=2.0, y=2.0), "dx = x * dz", "`y` and `x` are equal at the case's point"),
        (SYMMETRIC, "dX = W @ dD", "`W` is symmetric"),
        (SQUARE_AT_ONE, "dx = y ** 3 * dz", "`y` is 1 at the case's point"),
    ],
)
def test_what_hides_a_survivor_at_the_point_is_named(tmp_path: Path, text: str, mutated: str, weakness: str) -> None:
    path = tmp_path / "case.toml"
    path.write_text(text)
    found = survivors(path)
    assert weakness in found[mutated], found
