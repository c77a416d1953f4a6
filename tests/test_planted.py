"""The planted bugs of tests/planted.py: each fails, naming its check and manual as the odd one
out; each right version passes every check."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from gradcheck_suite import CheckResult, GradientCheckFailed, check, check_module

from .planted import BUGS, Planted


def _run(bug: Planted, which: str, **options: Any) -> CheckResult:
    fn = getattr(bug, which)
    options = {**bug.options, **options}
    if bug.module:
        return check_module(fn(), bug.inputs["x"], reference=bug.reference(), **options)
    return check(fn, bug.inputs, reference=bug.reference, **options)


def _asking_for(bug: Planted) -> dict[str, Any]:
    if bug.check == "order1":
        return {}
    if bug.check == "order2":
        return {"order": 2}
    return {"checks": [bug.check]}


@pytest.mark.parametrize("bug", BUGS, ids=[b.name for b in BUGS])
def test_each_planted_bug_fails_naming_its_check_and_the_odd_one_out(bug: Planted) -> None:
    r = _run(bug, "wrong", **_asking_for(bug))
    assert r.verdict == "fail" and r.odd_one_out == "manual"
    caught = r.first() if bug.check == "order1" else r.kind_result(bug.check)
    assert caught.verdict == "fail" and caught.odd_one_out == "manual"
    # the first-order check passes where the bug hides from it
    assert r.first_verdict == ("fail" if bug.check == "order1" or bug.also_first_order else "pass")
    with pytest.raises(GradientCheckFailed) as info:
        r.assert_ok()
    kind = "" if bug.check == "order1" else f", {bug.check}"
    assert f"(cpu, float64{kind}): FAIL: manual is the odd one out" in str(info.value)


@pytest.mark.parametrize("bug", BUGS, ids=[b.name for b in BUGS])
def test_each_right_version_passes_every_check(bug: Planted) -> None:
    r = _run(bug, "right", order=2, checks="all")
    failing = {k.kind: k.reason for k in r.kinds if k.verdict != "pass"}
    assert r.verdict == "pass", (r.first().reason, failing)
    # every kind that applies ran: second order, batched, ...; forward mode where there is a jvp
    ran = {k.kind for k in r.kinds}
    assert {"order2", "batched", "undefined", "noncontiguous"} <= ran
    has_jvp = getattr(bug.right, "jvp", None) is not torch.autograd.Function.jvp
    assert ({"forward", "fwd-over-rev"} <= ran) == (has_jvp and not bug.module)


def test_the_bugs_name_what_went_wrong() -> None:
    by = {b.name: b for b in BUGS}
    messages = {
        "breaks_under_vmap": "manual raised RuntimeError: vmap: aten::copy_(self, *extra_args) is not possible",
        "float32_gradient": "manual returned a float32 gradient for the float64 input `x`",
        "nondeterministic": "manual is nondeterministic: 3 runs differ by up to",
    }
    for name, text in messages.items():
        r = _run(by[name], "wrong", **_asking_for(by[name]))
        assert text in r.explain(), r.explain()
    # the module names the parameter whose gradient is wrong, as named_parameters() does
    r = _run(by["module_weight_gradient"], "wrong")
    assert {i.name for i in r.inputs if i.verdict == "fail"} == {"0.weight", "2.weight"}
    assert {i.name for i in r.inputs if i.verdict == "pass"} == {"input", "0.bias", "2.bias"}
