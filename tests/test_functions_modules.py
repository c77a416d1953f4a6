"""check() with autograd.Functions and references, check_module(), and the case-file [module]."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from gradcheck_suite import CaseError, check, check_module, load_case

from .planted import XYY, LinearFunction, MyLinear, Softplus, reference_mlp

Ctx = Any


class ClassicSquare(torch.autograd.Function):
    """Classic style, forward(ctx, x): no setup_context, so no vmap."""

    @staticmethod
    def forward(ctx: Ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx: Ctx, g: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return 3 * x * g  # wrong: 2 x g


def test_a_classic_function_is_checked_three_ways_with_a_reference() -> None:
    # main rejected it: "must override the setup_context staticmethod" (the numeric source's vmap)
    r = check(ClassicSquare, {"x": [1.0, -2.0, 0.5]}, reference=lambda x: x * x)
    assert set(r.sources) == {"manual", "autograd", "numeric"}
    assert r.verdict == "fail" and r.odd_one_out == "manual"
    assert r.sources["manual"].method == "ClassicSquare.backward"
    assert r.sources["autograd"].method.endswith("through reference <lambda>")
    assert any("does not run under torch.func.vmap" in n for n in r.notes)
    # the numeric source differentiated the Function's own forward, one perturbation at a time
    assert r.inputs[0].grads["numeric"] == pytest.approx([2.0, -4.0, 1.0], rel=1e-9)


def test_a_function_without_reference_is_checked_two_ways_and_says_so() -> None:
    r = check(XYY, {"x": [1.0, 2.0], "y": [0.5, -1.0]})
    assert set(r.sources) == {"manual", "numeric"} and r.verdict == "pass"
    assert "checked two ways: the forward `XYY` is an autograd.Function and the case has no [reference]" in r.explain()


def test_functions_take_their_inputs_positionally_and_may_return_several_outputs() -> None:
    class SinCos(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Ctx, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            ctx.save_for_backward(x, y)
            return torch.sin(x) * y, torch.cos(x)

        @staticmethod
        def backward(ctx: Ctx, ga: torch.Tensor, gb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x, y = ctx.saved_tensors
            return ga * torch.cos(x) * y - gb * torch.sin(x), ga * torch.sin(x)

    def reference(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.sin(x) * y, torch.cos(x)

    up = ([1.0, 2.0], [0.5, -3.0])
    r = check(SinCos, {"x": [0.3, 1.2], "y": [2.0, -1.0]}, reference=reference, upstream=up)
    assert r.case.outputs == ("out0", "out1")
    assert r.verdict == "pass", r.explain()
    x, y = np.array([0.3, 1.2]), np.array([2.0, -1.0])
    dx = np.array([1.0, 2.0]) * np.cos(x) * y - np.array([0.5, -3.0]) * np.sin(x)
    assert r.inputs[0].grads["manual"] == pytest.approx(dx, rel=1e-12)


def test_a_reference_makes_autograd_differentiate_it_instead_of_fn() -> None:
    def opaque(x: torch.Tensor) -> torch.Tensor:
        return (x.detach() ** 3).requires_grad_(False) + 0 * x  # autograd through this is wrong

    r = check(opaque, {"x": [1.0, 2.0]}, reference=lambda x: x**3)
    assert r.verdict == "pass" and r.sources["autograd"].method.endswith("through reference <lambda>")
    assert check(opaque, {"x": [1.0, 2.0]}).verdict == "fail"  # without it autograd follows fn


def test_bad_functions_and_references_are_located_errors() -> None:
    with pytest.raises(CaseError, match="its own backward is checked, pass no backward="):
        check(ClassicSquare, {"x": 1.0}, backward=lambda g, x: g)
    with pytest.raises(CaseError, match="reference must be a torch function autograd differentiates"):
        check(lambda x: x, {"x": 1.0}, reference=ClassicSquare)
    with pytest.raises(CaseError, match="give upstream as a sequence of 2"):
        check(lambda x: (x, x), {"x": [1.0]}, upstream=[1.0])


# -- modules ---------------------------------------------------------------------------------


def test_a_module_of_torch_operations_is_checked_two_ways_by_parameter_name() -> None:
    # main: check() rejects "0.weight", and there was no check_module
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    before = {n: p.detach().clone() for n, p in mlp.named_parameters()}
    x = torch.randn(5, 3)
    r = check_module(mlp, x)
    assert [i.name for i in r.inputs] == ["input", "0.weight", "0.bias", "2.weight", "2.bias"]
    assert set(r.sources) == {"autograd", "numeric"} and r.verdict == "pass", r.explain()
    assert all(torch.equal(p, before[n]) for n, p in mlp.named_parameters())  # never changed
    assert mlp[0].weight.dtype == torch.float32  # nor converted


def test_a_module_with_a_custom_layer_uses_its_backward_and_a_reference_module() -> None:
    torch.manual_seed(0)
    mine = nn.Sequential(MyLinear(3, 4), nn.Tanh(), MyLinear(4, 2))
    x = torch.randn(5, 3, dtype=torch.float64)
    r = check_module(mine, x, reference=reference_mlp())
    assert set(r.sources) == {"manual", "autograd", "numeric"} and r.verdict == "pass", r.explain()
    assert r.sources["manual"].method == "Sequential's custom backward"
    # the reference's own parameter values are not used: the module's are passed to both
    g = r.inputs[1].grads
    assert g["manual"] == pytest.approx(g["autograd"], rel=1e-12)
    two_ways = check_module(mine, x)
    assert set(two_ways.sources) == {"manual", "numeric"}
    assert "built on custom autograd.Functions and the case has no [reference]" in two_ways.explain()


class Scaled(nn.Module):
    """A batch norm in training mode, a frozen parameter and a buffer: none of them is an input."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(3)
        self.scale = nn.Parameter(torch.tensor(2.0), requires_grad=False)
        self.register_buffer("shift", torch.tensor([0.5, -1.0, 0.25]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.tanh(self.norm(x)) + self.shift


def test_buffers_and_frozen_parameters_are_left_alone() -> None:
    m = Scaled().train()
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(3))
    r = check_module(m, x)
    assert [i.name for i in r.inputs] == ["x", "norm.weight", "norm.bias"]
    assert r.verdict == "pass", r.explain()
    # every evaluation got copies of the running statistics: the module's are untouched
    assert torch.equal(m.norm.running_mean, torch.zeros(3)) and int(m.norm.num_batches_tracked) == 0


def test_module_inputs_as_keywords_and_integer_inputs_as_constants() -> None:
    class Pick(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table = nn.Embedding(4, 2)

        def forward(self, index: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
            return self.table(index) * scale

    torch.manual_seed(1)
    r = check_module(Pick(), {"index": torch.tensor([0, 3, 3]), "scale": torch.tensor([[1.5], [2.0], [-1.0]])})
    assert [i.name for i in r.inputs] == ["scale", "table.weight"]
    assert r.verdict == "pass", r.explain()
    # rows 1 and 2 of the table are never picked: their gradient is zero
    assert np.all(r.inputs[1].grads["numeric"][1:3] == 0)


def test_a_reference_with_other_parameters_is_an_error() -> None:
    with pytest.raises(
        CaseError,
        match="as `Sequential`; it lacks 0.bias, 0.weight, 2.bias, 2.weight; it also has bias, weight",
    ):
        check_module(
            nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 1)), torch.randn(3, 2), reference=nn.Linear(2, 2)
        )


# -- case files: [module] --------------------------------------------------------------------

MODULE_CASE = """\
name = "mlp"
output = "out"
{extra}
[inputs]
x = {{ random = "normal", shape = [5, 3], seed = 8 }}

[module]
callable = "tests.planted:{factory}"

[reference]
callable = "tests.planted:reference_mlp"
"""


def test_a_case_file_names_a_module_factory(tmp_path: Path, cli: Any) -> None:
    path = tmp_path / "mlp.toml"
    path.write_text(MODULE_CASE.format(factory="mlp", extra=""))
    case = load_case(path)
    assert list(case.inputs) == ["x", "0.weight", "0.bias", "2.weight", "2.bias"]
    assert case.backward is not None and case.reference is not None
    path.write_text(MODULE_CASE.format(factory="mlp_with_bug", extra="order = 2"))
    code, out, _ = cli("run", str(path), "--no-reports")
    assert code == 1
    assert "mlp [order2]" in out and "0.weight" in out and "FAIL: manual is the odd one out" in out


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t.replace('"tests.planted:mlp"', '"tests.planted:factory_of_a_dict"'),
            "the factory `tests.planted:factory_of_a_dict` returned a dict, not an nn.Module",
        ),
        (
            lambda t: t.replace('[module]\ncallable = "tests.planted:mlp"', '[module]\nprogram = "out = x"'),
            "[module] needs `callable",
        ),
        (lambda t: t + '\n[forward]\nprogram = "out = x"\n', "a case has either [forward] or [module]"),
        (lambda t: t.replace("reference_mlp", "mlp_with_bug"), ""),  # a module with custom layers may be a reference
        (
            lambda t: t.replace(
                'tests.planted:reference_mlp"', 'tests.planted:reference_mlp"\nkwargs = { seed = "x" }'
            ),
            "the factory `tests.planted:reference_mlp` raised ValueError",
        ),
    ],
)
def test_module_case_errors_are_located(tmp_path: Path, edit: Any, message: str) -> None:
    path = tmp_path / "mlp.toml"
    path.write_text(edit(MODULE_CASE.format(factory="mlp", extra="")))
    if not message:
        load_case(path)
        return
    with pytest.raises(CaseError, match=message.replace("[", r"\[")) as info:
        load_case(path)
    assert str(info.value).startswith(str(path))


def test_softplus_function_in_float32() -> None:
    r = check(Softplus, {"x": [0.5, -1.0, 3.0]}, reference=torch.nn.functional.softplus, dtype="float32", order=2)
    assert r.verdict == "pass", r.explain()
    assert r.kind_result("order2").sources["manual"].dtype == "float32"


def test_linear_function_alone() -> None:
    x, w, b = torch.randn(4, 3), torch.randn(2, 3), torch.randn(2)
    r = check(LinearFunction, {"x": x, "w": w, "b": b}, reference=lambda x, w, b: x @ w.t() + b, checks="all")
    assert r.verdict == "pass", r.explain()
