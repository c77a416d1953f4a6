"""The program language's constructs: numpy and torch agree, vmap works, the checker is strict."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.func import vmap

from gradcheck_suite import CaseError
from gradcheck_suite._backends import NumpyBackend, TorchBackend
from gradcheck_suite._program import parse_program

RNG = np.random.default_rng(0)
ENV = {
    "x": RNG.normal(size=(4, 3)),
    "v": RNG.normal(size=(3,)),
    "y": np.array([0, 2, 1, 1]),
}
KNOWN = ["x", "v", "y", "K"]
INTEGERS = ["K"]


def _program(source: str):  # noqa: ANN202 - a Program
    return parse_program(source, key="forward", known=KNOWN, integers=INTEGERS)


def _run_numpy(source: str) -> np.ndarray:
    be = NumpyBackend()
    env = {"x": be.asarray(ENV["x"]), "v": be.asarray(ENV["v"]), "y": be.asindex(ENV["y"]), "K": 2}
    return np.asarray(_program(source).run(env, be)["out"])


def _run_torch(source: str) -> np.ndarray:
    be = TorchBackend()
    env = {"x": be.asarray(ENV["x"]), "v": be.asarray(ENV["v"]), "y": be.asindex(ENV["y"]), "K": 2}
    out = _program(source).run(env, be)["out"]
    return out.numpy() if isinstance(out, torch.Tensor) else np.asarray(out)


CONSTRUCTS = {
    "sum axis": ("out = sum(x, axis=0)", ENV["x"].sum(axis=0)),
    "sum keepdims": ("out = sum(x, axis=1, keepdims=True)", ENV["x"].sum(axis=1, keepdims=True)),
    "sum tuple axis": ("out = sum(x, axis=(0, 1))", ENV["x"].sum()),
    "sum all keepdims": ("out = sum(x, keepdims=True)", ENV["x"].sum(keepdims=True)),
    "mean negative axis": ("out = mean(x, axis=-1)", ENV["x"].mean(axis=-1)),
    "max axis": ("out = max(x, axis=1, keepdims=True)", ENV["x"].max(axis=1, keepdims=True)),
    "min all": ("out = min(x)", ENV["x"].min()),
    "logsumexp axis": ("out = logsumexp(x, axis=1)", np.log(np.exp(ENV["x"]).sum(axis=1))),
    "logsumexp all": (
        "out = logsumexp(1000 * x)",
        1000 * ENV["x"].max() + np.log(np.exp(1000 * (ENV["x"] - ENV["x"].max())).sum()),
    ),
    "reshape": ("out = reshape(x, (3, -1))", ENV["x"].reshape(3, -1)),
    "reshape static expr": ("N = size(x, 0)\nout = reshape(x, (N * 3,))", ENV["x"].reshape(12)),
    "reshape shape()": ("t = reshape(x, (2, 6))\nout = reshape(t, shape(x))", ENV["x"]),
    "broadcast": ("out = x + v", ENV["x"] + ENV["v"]),
    "where": ("out = where(x > 0, x, 0.1 * x)", np.where(ENV["x"] > 0, ENV["x"], 0.1 * ENV["x"])),
    "where literal branches": ("out = where(x <= v, 1, 0) * 1.5", (ENV["x"] <= ENV["v"]) * 1.5),
    "integer array index": ("out = x[arange(4), y]", ENV["x"][np.arange(4), ENV["y"]]),
    "index by name": ("out = x[y]", ENV["x"][ENV["y"]]),
    "integer index": ("out = x[1, -1]", ENV["x"][1, -1]),
    "slice with static bounds": ("out = x[:, 1:K + 1]", ENV["x"][:, 1:3]),
    "slice step": ("out = x[::2]", ENV["x"][::2]),
    "new axis": ("out = v[:, None] * v[None, :]", np.outer(ENV["v"], ENV["v"])),
    "transpose axes": (
        "t = reshape(x, (2, 2, 3))\nout = transpose(t, (2, 0, 1))",
        ENV["x"].reshape(2, 2, 3).transpose(2, 0, 1),
    ),
    "transpose": ("out = transpose(x)", ENV["x"].T),
    "concat": ("out = concat(x, 2 * x, axis=1)", np.concatenate([ENV["x"], 2 * ENV["x"]], axis=1)),
    "one_hot": ("out = one_hot(y, 3)", np.eye(3)[ENV["y"]]),
    "ones/zeros_like": ("out = ones_like(x) + zeros_like(v)", np.ones((4, 3))),
    "size": ("out = x / size(x, 1)", ENV["x"] / 3),
    "floor division of sizes": ("h = size(x, 0) // 2\nout = x[0:h]", ENV["x"][:2]),
    "sign, abs": ("out = sign(x) * abs(x)", ENV["x"]),
}


@pytest.mark.parametrize("name", list(CONSTRUCTS))
def test_numpy_and_torch_agree_with_reference(name: str) -> None:
    source, expected = CONSTRUCTS[name]
    np.testing.assert_allclose(_run_numpy(source), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(_run_torch(source), expected, rtol=1e-12, atol=1e-12)


def test_programs_run_inside_vmap() -> None:
    # the numeric source batches perturbations with vmap: indexing, slicing, reductions and
    # where must see per-sample shapes
    source = (
        "N = size(x, 0)\n"
        "out = sum(logsumexp(x, axis=1) - x[arange(N), y]) + sum(where(x > 0, x, 0) * x[:, 0:K][:, None, 0])"
    )
    prog = _program(source)
    be = TorchBackend()
    y = be.asindex(ENV["y"])
    batch = torch.as_tensor(np.stack([ENV["x"], -ENV["x"], 2 * ENV["x"]]))
    batched = vmap(lambda x: prog.run({"x": x, "v": be.asarray(ENV["v"]), "y": y, "K": 2}, be)["out"])(batch)
    looped = [prog.run({"x": x, "v": be.asarray(ENV["v"]), "y": y, "K": 2}, be)["out"] for x in batch]
    np.testing.assert_allclose(batched.numpy(), torch.stack(looped).numpy(), rtol=1e-13)


def test_logsumexp_goes_through_the_complex_step() -> None:
    prog = _program("out = sum(logsumexp(x, axis=1))")
    assert prog.analytic
    be = TorchBackend(torch.complex128)
    h = 1e-30
    x = be.asarray(ENV["x"]) + 0j
    x[0, 0] += 1j * h
    d = float(prog.run({"x": x}, be)["out"].imag) / h
    p = np.exp(ENV["x"][0]) / np.exp(ENV["x"][0]).sum()
    assert d == pytest.approx(p[0], rel=1e-12)


@pytest.mark.parametrize(
    ("source", "analytic"),
    [
        ("out = x[arange(4), y] * exp(x[:, 0])", True),
        ("out = reshape(x, (2, 6))", True),
        ("out = where(x > 0, x, 0)", False),
        ("out = max(x, axis=0)", False),
        ("out = sign(x)", False),
    ],
)
def test_kinked_functions_are_marked_non_analytic(source: str, analytic: bool) -> None:
    assert _program(source).analytic is analytic


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("out = x > 0", "comparison is only allowed as the condition of `where"),
        ("out = where(x, x, 0)", "condition of `where` must be a comparison"),
        ("out = where(0 < x < 1, x, 0)", "must be one comparison"),
        ("out = where(x is v, x, 0)", "must be one comparison"),
        ("out = exp(x, axis=0)", "`exp` takes no keyword arguments"),
        ("out = sum(x, dim=0)", "takes no keyword `dim`"),
        ("out = sum(x, axis=v)", "`axis` must be an integer or a tuple of integers known before"),
        ("out = sum(x, keepdims=1)", "`keepdims` must be True or False"),
        ("out = sum(x, **v)", "`**` arguments are not allowed"),
        ("out = x[x * 2]", "an index must be a static integer"),
        ("out = x[0:v]", "a slice's stop must be an integer known before"),
        ("out = reshape(x, v)", "argument 2 of `reshape` must be an integer or a tuple"),
        ("out = reshape(x, (size(v, 0), v))", "must be an integer known before"),
        ("out = one_hot(y, v)", "argument 2 of `one_hot` must be an integer"),
        ("out = shape(x)", "`shape(x)` is only allowed as the shape argument of `reshape`"),
        ("out = x // v", "`//` is only allowed between static integers"),
        ("out = (x, v)", "a tuple outside a shape"),
        ("out = v + None", "only numeric literals are allowed, not None"),
        ("K = x", "holds a static integer and cannot be reassigned"),
        ("out = x.shape", "attribute access (`.shape`)"),
        ("out = numpy_sum(x)", "unknown function `numpy_sum`"),
        ("out = concat(axis=0)", "`concat` takes 1 to 16 argument(s), got 0"),
    ],
)
def test_checker_rejects(source: str, message: str) -> None:
    with pytest.raises(CaseError) as info:
        _program(source)
    assert message in str(info.value)


def test_float_index_array_is_an_error_not_a_truncation() -> None:
    prog = parse_program("out = x[v]", key="forward", known=["x", "v"])
    for be in (NumpyBackend(), TorchBackend()):
        with pytest.raises(CaseError, match="index array must hold integers"):
            prog.run({"x": be.asarray(ENV["x"]), "v": be.asarray([0.0, 1.7])}, be)


def test_where_with_literal_branches_keeps_the_program_dtype() -> None:
    # np.where(c, 1, 0) would be int64 and silently promote a float32 backward to float64
    prog = parse_program("out = where(x > 0, 1, 0) * x", key="forward", known=["x"])
    be = NumpyBackend("float32")
    assert prog.run({"x": be.asarray(ENV["x"])}, be)["out"].dtype == np.float32
