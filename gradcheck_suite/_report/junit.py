"""junit.xml in the shape pytest's --junitxml writes, so any CI that shows pytest results shows these.

``testsuites > testsuite`` with ``tests``, ``failures``, ``errors``, ``skipped`` and ``time``;
one ``testcase`` per case x device x dtype (and check kind: ``case[device-dtype-order2]``),
named ``case[device-dtype]`` like a parametrised pytest test, with ``classname`` from the case
file's path as pytest's junitxml makes it (``cases/matmul.toml`` -> ``cases.matmul.toml``); an
entry of the pytest plugin is named by its test's node id, as pytest names it. A failing case
carries ``<failure message=...>`` naming the worst element
and the three sources' values there (its text adds the diagnostics: the blamed line and the
hints); an inconclusive one ``<skipped>`` with the reason; a case
file that does not load ``<error>``. A baseline comparison adds a second testsuite,
``gradcheck.baseline``, with a failing testcase per regressed case, so a drift that has not
failed the check yet still shows up in the CI's test view.

Built from report.json's data (json_report.to_dict), never from the engine's objects, so the
two files cannot disagree.
"""

from __future__ import annotations

import platform
import re
import xml.etree.ElementTree as ET
from pathlib import PurePosixPath
from typing import Any

from .json_report import case_key

__all__ = ["to_xml", "failure_message", "classname", "test_names"]


# Characters XML 1.0 cannot hold even escaped (a NUL or BEL in a case name or a message would
# make the whole file unreadable); written as #xNN, as pytest's --junitxml does.
_NOT_XML = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str) -> str:
    return _NOT_XML.sub(lambda m: f"#x{ord(m.group(0)):02X}", text)


def _escape_tree(root: ET.Element) -> None:
    for element in root.iter():
        element.attrib = {k: _xml_text(v) for k, v in element.attrib.items()}
        if element.text:
            element.text = _xml_text(element.text)


def classname(file: str | None) -> str:
    """pytest's classname for a test in ``file``: its path with ``/`` as ``.``, less ``.py``."""
    if not file:
        return "gradcheck"
    return test_names(f"{file}::x")[0] or "gradcheck"


def test_names(nodeid: str) -> tuple[str, str]:
    """(classname, name) of a test, as pytest's junitxml makes them from its node id
    (``cases/matmul.toml::matmul[cpu-float64]`` -> ``cases.matmul.toml``, ``matmul[cpu-float64]``),
    so that one case has one classname in the CLI's, pytest's and the plugin's junit.xml."""
    path, bracket, params = nodeid.partition("[")
    names = path.split("::")
    parts = [q for q in PurePosixPath(names[0]).parts if q not in ("/", "..", ".")]
    names[0] = re.sub(r"\.py$", "", ".".join(parts))
    names[-1] += bracket + params
    return ".".join(names[:-1]), names[-1]


def _names_of(entry: dict[str, Any], key: str) -> tuple[str, str]:
    nodeid = entry.get("nodeid")
    if isinstance(nodeid, str) and "::" in nodeid:
        return test_names(nodeid)
    return classname(entry.get("file")), key


def _num(v: Any) -> str:
    return repr(float(v)) if isinstance(v, (int, float)) else str(v)


def _element(name: str, index: list[int]) -> str:
    return f"{name}[{', '.join(map(str, index))}]" if index else name


def failure_message(case: dict[str, Any]) -> str:
    """One line: who is the odd one out, where, and what each source says there."""
    failing = [i for i in case["inputs"] if i["verdict"] == "fail"]
    if not failing:
        return "; ".join(case.get("expect_failures") or []) or case.get("reason", "failed")
    # The input furthest outside its tolerance is the one to name when several fail.
    worst_input = max(failing, key=lambda i: max((float(p["ratio"]) for p in i["pairs"]), default=0.0))
    w = worst_input["worst"]
    odd = worst_input["odd_one_out"] or case.get("odd_one_out")
    head = f"{odd} is the odd one out" if odd else "the sources disagree"
    if w is None:
        return f"{head}: {worst_input['name']}: {worst_input['reason']}"
    values = " ".join(f"{s}={_num(v)}" for s, v in w["values"].items())
    pair = next((p for p in worst_input["pairs"] if p["pair"] == w["pair"]), None)
    ratio = f" ({w['pair']} {float(pair['ratio']):.3g}x its tolerance)" if pair is not None else ""
    more = f"; {len(failing) - 1} more input(s) fail" if len(failing) > 1 else ""
    if "direction" in w:  # projection mode: the worst is a direction, the values projections on it
        where = f"{worst_input['name']} along direction {w['direction']}"
    else:
        where = _element(worst_input["name"], w["index"])
    return f"{head} at {where}: {values}{ratio}{more}"


def _diagnosis(case: dict[str, Any]) -> list[str]:
    d = case.get("diagnostics")
    if not d:
        return []
    blame = d.get("blame")
    lines = [f"blame: {blame['message']}"] if blame else ([f"blame: {d['blame_note']}"] if d.get("blame_note") else [])
    return lines + [f"hint ({h['pair']}, {h['kind']}): {h['message']}" for h in d.get("hints", [])]


def _details(case: dict[str, Any]) -> str:
    lines = [f"{case['file']}: {case['case']} ({case['device']}, {case['dtype']}): {case['reason']}"]
    lines += [f"expected value: {e}" for e in case.get("expect_failures", [])]
    lines += _diagnosis(case)
    for i in case["inputs"]:
        lines.append(f"input {i['name']}: {i['verdict']}: {i['reason']}")
        for p in i["pairs"]:
            lines.append(
                f"  {p['pair']}: max abs {_num(p['max_abs'])}, max rel {_num(p['max_rel'])},"
                f" worst {p['worst']} at {_num(p['ratio'])}x its tolerance,"
                f" {p['disagree']} {p.get('unit', 'element')}(s) disagree"
            )
    return "\n".join(lines)


def _suite(parent: ET.Element, name: str, created: str, tests: list[ET.Element], seconds: float) -> None:
    def count(tag: str) -> int:
        return sum(1 for t in tests if t.find(tag) is not None)

    suite = ET.SubElement(
        parent,
        "testsuite",
        {
            "name": name,
            "errors": str(count("error")),
            "failures": str(count("failure")),
            "skipped": str(count("skipped")),
            "tests": str(len(tests)),
            "time": f"{seconds:.3f}",
            "timestamp": created,
            "hostname": platform.node(),
        },
    )
    suite.extend(tests)


def _testcase(classname_: str, name: str, seconds: float) -> ET.Element:
    return ET.Element("testcase", {"classname": classname_, "name": name, "time": f"{seconds:.3f}"})


def to_xml(data: dict[str, Any]) -> bytes:
    """junit.xml for a report's data."""
    root = ET.Element("testsuites", {"name": "gradcheck"})
    tests: list[ET.Element] = []
    for c in data["cases"]:
        t = _testcase(*_names_of(c, case_key(c)), float(c["seconds"]))
        if c["verdict"] == "fail":
            ET.SubElement(t, "failure", {"message": failure_message(c)}).text = _details(c)
        elif c["verdict"] == "inconclusive":
            ET.SubElement(t, "skipped", {"type": "gradcheck.inconclusive", "message": c["reason"]}).text = _details(c)
        tests.append(t)
    options = data["options"]
    for e in data["errors"]:
        stem = e["case"] or (PurePosixPath(e["file"]).stem if e["file"] else "case-file")
        where = {"device": e.get("device") or options["device"], "dtype": e.get("dtype") or options["dtype"]}
        name = case_key({"case": stem, **where})
        t = _testcase(*_names_of(e, name), 0.0)
        ET.SubElement(t, "error", {"message": e["text"]}).text = e["text"]
        tests.append(t)
    _suite(root, "gradcheck", data["created"], tests, float(data["timings"]["total_seconds"]))

    comparison = data.get("baseline")
    if comparison:
        by_key: dict[str, list[str]] = {}
        for r in comparison["regressions"]:
            by_key.setdefault(case_key(r), []).append(r["message"])
        checks = []
        for key in [*comparison["compared"], *comparison["removed"]]:
            t = _testcase("gradcheck.baseline", key, 0.0)
            if key in by_key:
                ET.SubElement(t, "failure", {"message": "; ".join(by_key[key])}).text = "\n".join(by_key[key])
            checks.append(t)
        _suite(root, "gradcheck.baseline", data["created"], checks, 0.0)

    _escape_tree(root)
    ET.indent(root)
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return body + b"\n"
