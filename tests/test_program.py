from __future__ import annotations

import numpy as np
import pytest
import torch

from gradcheck_suite._backends import FUNCTIONS, NumpyBackend, TorchBackend
from gradcheck_suite._errors import CaseError
from gradcheck_suite._program import parse_program

SOURCE = """
a = W @ x.T
b = exp(-a) + log(abs(a) + 1) - sqrt(a * a + 2) / tanh(a + 3)
c = sigmoid(b) ** 2 + maximum(0, b) - minimum(b, 1)
d = dot(v, v) + sum(c) * mean(c)
d += 2 * d
d -= -1.5
"""


def test_numpy_and_torch_evaluate_the_same_program_alike() -> None:
    rng = np.random.default_rng(7)
    env = {"W": rng.normal(size=(3, 4)), "x": rng.normal(size=(2, 4)), "v": rng.normal(size=5)}
    prog = parse_program(SOURCE, key="forward", known=env)
    npv = prog.run(env, NumpyBackend("float64"))
    tb = TorchBackend(torch.float64)
    tv = prog.run({k: tb.asarray(v) for k, v in env.items()}, tb)
    for name in ("a", "b", "c", "d"):
        np.testing.assert_allclose(np.asarray(npv[name]), tv[name].numpy(), rtol=1e-14, atol=1e-14)
    # hand-computed reference for one step
    a = env["W"] @ env["x"].T
    np.testing.assert_allclose(npv["a"], a)
    assert prog.assigned == ["a", "b", "c", "d"]
    assert not prog.analytic  # abs, maximum and minimum have kinks
    used = {"exp", "log", "abs", "sqrt", "tanh", "sigmoid", "maximum", "minimum", "dot", "sum", "mean"}
    assert prog.functions == used
    assert prog.functions <= set(FUNCTIONS)


def test_a_program_of_analytic_functions_is_analytic() -> None:
    prog = parse_program("f = exp(x) * tanh(x) / sqrt(x)", key="forward", known=["x"])
    assert prog.analytic


@pytest.mark.parametrize(
    "source, words",
    [
        ("import os", "an import"),
        ("f = x.__class__", "attribute access"),
        ("f = x.numpy()", "attribute access"),
        ("f = __import__('os')", "names starting with '_'"),
        ("f = (lambda: x)()", "a lambda"),
        ("f = [i for i in x]", "a comprehension"),
        ("f = x if x else x", "a conditional expression"),
        ("f = x < 1", "a comparison"),
        ("f = 'text'", "only numeric literals"),
        ("f = eval('1')", "unknown function `eval`"),
        ("f = exp(x, x)", "`exp` takes 1 argument(s), got 2"),
        ("f = exp(x, axis=0)", "keyword"),
        ("f = x // 2", "`//` is only allowed between static integers"),
        ("f += x", "`f += ...` before `f` is assigned"),
        ("f = y", "`y` is used before it is assigned"),
        ("f = exp", "is a function"),
        ("x", "must assign"),
        ("f, g = x, x", "only `name = expression`"),
        ("f = x\n  g = x", "syntax error"),
    ],
)
def test_the_checker_rejects(source: str, words: str) -> None:
    with pytest.raises(CaseError) as info:
        parse_program(source, key="forward", known=["x"], first_line=10)
    assert words in str(info.value)
    assert info.value.line is not None and info.value.line >= 10


def test_error_lines_point_into_the_case_file() -> None:
    with pytest.raises(CaseError) as info:
        parse_program("a = x\nb = a\nc = nope(b)", key="forward", known=["x"], first_line=20)
    assert info.value.line == 22


def test_a_runtime_shape_error_names_its_statement() -> None:
    prog = parse_program("a = x\nf = W @ a", key="forward", known=["W", "x"], first_line=5)
    with pytest.raises(CaseError) as info:
        prog.run({"W": np.ones((2, 3)), "x": np.ones(4)}, NumpyBackend())
    assert info.value.line == 6 and "shape mismatch" in str(info.value)


def test_numpy_statements_stay_in_the_backends_dtype() -> None:
    # numpy promotes float32 * int64 to float64; a float32 check must stay float32
    prog = parse_program("t = x * m\nt += m\nL = sum(t * t)", key="forward", known=["x", "m"])
    env = {"x": np.array([0.3, 0.6], dtype=np.float32), "m": np.array([1, 2], dtype=np.int64)}
    values = prog.run(env, NumpyBackend("float32"))
    assert values["t"].dtype == np.float32 and np.asarray(values["L"]).dtype == np.float32
    assert prog.run(env, NumpyBackend("float64"))["t"].dtype == np.float64
