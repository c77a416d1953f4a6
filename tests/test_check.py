"""gradcheck_suite.check: the three-way check of Python callables."""

from __future__ import annotations

import pytest
import torch

import gradcheck_suite as gs
from gradcheck_suite import CaseError, GradientCheckFailed, UsageError, check


def scaled_sigmoid(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(y)


def scaled_sigmoid_backward(g: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    s = torch.sigmoid(y)
    return {"x": g * s, "y": g * x * s * (1 - s)}


def forgets_sigmoid_derivative(g: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    s = torch.sigmoid(y)
    return {"x": g * s, "y": g * x * s}  # the (1 - s) factor is missing


INPUTS = {"x": torch.tensor([1.0, -2.0, 0.5]), "y": [0.3, -1.0, 2.0]}


def test_correct_backward_passes() -> None:
    r = check(scaled_sigmoid, INPUTS, backward=scaled_sigmoid_backward)
    assert r.verdict == "pass" and r.passed and r.odd_one_out is None
    assert set(r.sources) == {"manual", "autograd", "numeric"}
    assert r.assert_ok() is r
    assert r.case.name == "scaled_sigmoid"
    # richardson, not the complex step: nothing says a Python function is analytic
    assert r.sources["numeric"].method == "richardson"


def test_wrong_backward_makes_manual_the_odd_one_out() -> None:
    r = check(scaled_sigmoid, INPUTS, backward=forgets_sigmoid_derivative)
    assert r.verdict == "fail" and not r.passed
    assert r.odd_one_out == "manual"
    by_name = {i.name: i for i in r.inputs}
    assert by_name["x"].verdict == "pass" and by_name["y"].verdict == "fail"
    with pytest.raises(GradientCheckFailed) as info:
        r.assert_ok()
    message = str(info.value)
    assert isinstance(info.value, AssertionError)
    assert "FAIL: manual is the odd one out" in message
    assert "scaled_sigmoid / y: fail - manual disagrees with the other two" in message
    # the per-element table, with each source's value
    assert "element    manual" in message
    assert info.value.result is r


def test_wrong_autograd_function_is_the_odd_one_out() -> None:
    class BadSquare(torch.autograd.Function):
        @staticmethod
        def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx: torch.autograd.function.FunctionCtx, g: torch.Tensor) -> torch.Tensor:
            (x,) = ctx.saved_tensors  # type: ignore[attr-defined]
            return g * x  # should be 2 x g

    def square(x: torch.Tensor) -> torch.Tensor:
        # vmap (the numeric source) cannot go through a custom Function without a vmap rule,
        # so the forward value comes from plain ops and only autograd sees BadSquare.
        return BadSquare.apply(x) if torch.is_grad_enabled() and x.requires_grad else x * x

    r = check(square, {"x": [1.0, 3.0]}, backward=lambda g, x: 2 * x * g)
    assert r.verdict == "fail" and r.odd_one_out == "autograd"


def test_upstream_for_a_non_scalar_output() -> None:
    W = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    X = torch.randn(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    dD = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    seen: list[torch.Tensor] = []

    def backward(g: torch.Tensor, W: torch.Tensor, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seen.append(g)
        return g @ X.T, W.T @ g  # a tuple, in the inputs' order

    r = check(lambda W, X: W @ X, {"W": W, "X": X}, backward=backward, upstream=dD)
    assert r.verdict == "pass"
    assert torch.equal(seen[0], dD)
    # the gradients are those of sum(dD * D), not of sum(D)
    assert torch.allclose(torch.as_tensor(r.inputs[0].grads["autograd"]), dD @ X.T)

    def ignores_upstream(g: torch.Tensor, W: torch.Tensor, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ones = torch.ones_like(g)
        return ones @ X.T, W.T @ ones

    wrong = check(lambda W, X: W @ X, {"W": W, "X": X}, backward=ignores_upstream, upstream=dD)
    assert wrong.verdict == "fail" and wrong.odd_one_out == "manual"


def test_without_upstream_the_backward_gets_ones() -> None:
    seen: list[torch.Tensor] = []

    def backward(g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        seen.append(g)
        return 2 * x * g  # one input: one gradient

    r = check(lambda x: x**2, {"x": [[1.0, 2.0], [3.0, 4.0]]}, backward=backward)
    assert r.verdict == "pass"
    assert torch.equal(seen[0], torch.ones(2, 2, dtype=torch.float64))


def test_float32_and_samples() -> None:
    r = check(scaled_sigmoid, INPUTS, backward=scaled_sigmoid_backward, dtype="float32", samples=3)
    assert r.verdict == "pass" and r.dtype == "float32"
    assert r.samples is not None and r.samples.points == 4 and r.samples.counts["pass"] == 4
    assert r.sources["manual"].dtype == "float32"


def test_without_backward_two_sources_decide() -> None:
    r = check(scaled_sigmoid, INPUTS)
    assert r.verdict == "pass" and set(r.sources) == {"autograd", "numeric"}


def test_analytic_functions_may_take_the_complex_step() -> None:
    r = check(scaled_sigmoid, INPUTS, backward=scaled_sigmoid_backward, analytic=True)
    assert r.verdict == "pass" and r.sources["numeric"].method == "complex-step"
    with pytest.raises(UsageError, match="analytic=True"):
        check(scaled_sigmoid, INPUTS, numeric="complex-step")


def test_kink_is_inconclusive() -> None:
    r = check(lambda x: torch.abs(x), {"x": [0.0, 2.0]}, backward=lambda g, x: torch.sign(x) * g)
    assert r.verdict == "inconclusive"
    assert "kink" in r.reason
    with pytest.raises(GradientCheckFailed, match="INCONCLUSIVE"):
        r.assert_ok()
    assert r.assert_ok(allow_inconclusive=True) is r


def test_inputs_are_not_changed_and_may_require_grad() -> None:
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    r = check(lambda x: (x**3).sum(), {"x": x}, backward=lambda g, x: 3 * x**2 * g)
    assert r.verdict == "pass"
    assert x.grad is None and torch.equal(x.detach(), torch.tensor([1.0, 2.0]))


@pytest.mark.parametrize(
    ("backward", "message"),
    [
        (lambda g, x, y: (g,), r"returned 1 gradients, expected 2 \(dx, dy\)"),
        (lambda g, x, y: {"x": g}, r"returned a dict without `dy`"),
        (lambda g, x, y: {"x": g, "y": g, "z": g}, r"unknown key\(s\) `z`"),
        (lambda g, x, y: g, r"return a tuple in that order or a dict"),
        (lambda g, x, y: (g, None), r"returned None for `dy`"),
    ],
)
def test_backward_results_that_name_no_gradient_are_errors(backward: object, message: str) -> None:
    with pytest.raises(CaseError, match=message):
        check(lambda x, y: x * y, {"x": 1.0, "y": 2.0}, backward=backward)  # type: ignore[arg-type]


def test_backward_with_the_wrong_shape_is_an_error() -> None:
    with pytest.raises(CaseError, match=r"returned dx of shape \(1,\) but input `x` has shape \(2,\)"):
        check(lambda x: x.sum(), {"x": [1.0, 2.0]}, backward=lambda g, x: g.reshape(1))


def test_a_function_vmap_cannot_batch_falls_back_to_a_loop_and_says_so() -> None:
    # .item() detaches: autograd sees x * const, the numeric source the true x * sum(x)
    def uses_item(x: torch.Tensor) -> torch.Tensor:
        return x * float(x.sum().item())

    r = check(uses_item, {"x": [1.0, 2.0]})
    assert r.verdict == "fail"
    numeric = r.inputs[0].grads["numeric"]
    # the loop evaluated the real function, sum(x * sum(x)) = sum(x)^2: d/dx_i = 2 sum(x) = 6
    assert numeric == pytest.approx([6.0, 6.0], rel=1e-10)
    assert r.inputs[0].grads["autograd"] == pytest.approx([3.0, 3.0])
    (note,) = [n for n in r.notes if "vmap" in n]
    assert note.startswith("`uses_item` does not run under torch.func.vmap (RuntimeError: vmap: It looks like")
    assert "evaluated one perturbation at a time instead" in note
    assert note in r.explain()


def test_bad_arguments() -> None:
    with pytest.raises(CaseError, match="upstream gradient has shape"):
        check(lambda x: x * 2, {"x": [1.0, 2.0]}, upstream=[1.0, 2.0, 3.0])
    with pytest.raises(UsageError, match="dtype"):
        check(lambda x: x, {"x": 1.0}, dtype="int32")  # float16 and bfloat16 are checked since issue 12
    with pytest.raises(CaseError, match="not an identifier"):
        check(lambda x: x, {"a b": 1.0})
    with pytest.raises(CaseError, match="NaN"):
        check(lambda x: x, {"x": float("nan")})
    with pytest.raises(CaseError, match="must return one torch tensor, not list"):
        check(lambda x: [1.0], {"x": 1.0})  # type: ignore[arg-type, return-value]


def test_exported_from_the_package() -> None:
    assert gs.check is check
    assert "check" in gs.__all__ and "CheckResult" in gs.__all__
