"""The CI workflow users copy: its commands are the documented ones, and its gradcheck commands,
run in the workflow's order on a copy of the project, produce what its later steps upload."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gradcheck_suite._cli import main

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / ".github" / "workflows" / "gradcheck.yml"


def workflow_steps(text: str) -> list[dict[str, str]]:
    """The steps of a GitHub workflow, each a flat dict of its keys; a nested key is stored
    under its parent's name, ``with.path``.

    Enough YAML for a workflow written plainly: ``- key: value`` starts a step, ``key: value``
    adds to it, and ``key: |`` takes the more-indented lines below as a block.
    """
    steps: list[dict[str, str]] = []
    steps_indent: int | None = None
    key_indent = 0  # indent of a step's own keys
    parent = ""  # the step key a more-indented key belongs to (with:, env:)
    block: tuple[str, int] | None = None  # (key, indent of the key)
    for raw in text.splitlines():
        indent = len(raw) - len(raw.lstrip())
        line = raw.strip()
        if block is not None:
            if not line or indent > block[1]:
                steps[-1][block[0]] += line + "\n" if line else ""
                continue
            block = None
        if not line or line.startswith("#"):
            continue
        if line == "steps:":
            steps_indent = indent
            continue
        if steps_indent is None:
            continue
        if indent <= steps_indent and not line.startswith("- "):
            steps_indent = None  # the steps list ended
            continue
        if line.startswith("- "):
            steps.append({})
            line, indent = line[2:], indent + 2
            key_indent, parent = indent, ""
        m = re.fullmatch(r"([\w-]+):\s*(.*)", line)
        if not m or not steps:
            continue
        key, value = m.groups()
        if indent == key_indent:
            parent = key
        else:
            key = f"{parent}.{key}"
        if value in ("|", ">"):
            steps[-1][key] = ""
            block = (key, indent)
        elif value:
            steps[-1][key] = value.strip('"')
    return steps


def readme_commands() -> tuple[str, str]:
    """The README's set-up line and its test command (the two ```sh blocks of Quick start)."""
    blocks = re.findall(r"```sh\n(.*?)\n```", (REPO / "README.md").read_text(), re.S)
    return blocks[0].strip(), blocks[1].strip()


def test_the_parser_reads_run_blocks_and_with_keys() -> None:
    steps = workflow_steps(
        "jobs:\n  j:\n    steps:\n      - uses: a@v1\n        with:\n          path: x/\n"
        "      - name: two\n        run: |\n          one\n          two\n      - run: three\n"
    )
    assert steps == [
        {"uses": "a@v1", "with.path": "x/"},
        {"name": "two", "run": "one\ntwo\n"},
        {"run": "three"},
    ]


def test_the_workflow_installs_and_tests_as_the_readme_says() -> None:
    steps = workflow_steps(WORKFLOW.read_text())
    names = [s.get("name") or s["uses"].split("@")[0] for s in steps]
    assert names == [
        "actions/checkout",
        "actions/setup-python",
        "Install",
        "Tests",
        "Gradient regression",
        "Upload reports",
    ]
    by = {n: s for n, s in zip(names, steps, strict=True)}
    setup, test = readme_commands()
    # The README's set-up, less its demo run, ends the install; the two lines before it only
    # fetch the pinned torch from PyTorch's CPU index into the venv instead of PyPI's CUDA build.
    readme_install = [c.strip() for c in setup.split("&&") if "gradcheck run" not in c]
    install = [c for c in by["Install"]["run"].splitlines() if c]
    assert install[-len(readme_install) :] == readme_install
    assert install[: -len(readme_install)] == [
        "python3 -m venv .venv",
        ".venv/bin/pip install -q -c constraints.txt torch --index-url https://download.pytorch.org/whl/cpu",
    ]
    assert by["Tests"]["run"] == test
    # .ci/run runs the same regression command, after the README's test command.
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci.index(test) < ci.index(by["Gradient regression"]["run"])
    assert setup in ci


def test_the_workflows_gradcheck_commands_produce_what_it_uploads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run each gradcheck command of the workflow, in order, in a copy of the project, with this
    interpreter (the venv the workflow would make is the one running this test)."""
    project = tmp_path / "project"
    shutil.copytree(REPO / "cases", project / "cases")
    (project / "reports").mkdir()
    shutil.copy(REPO / "reports" / "baseline.json", project / "reports")
    monkeypatch.chdir(project)
    step_summary = tmp_path / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))

    steps = workflow_steps(WORKFLOW.read_text())
    ran = 0
    for step in steps:
        for command in step.get("run", "").splitlines():
            argv = shlex.split(command)
            if argv and argv[0] == ".venv/bin/gradcheck":
                assert main(argv[1:]) == 0, command
                ran += 1
    assert ran >= 1

    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    uploaded = project / upload["with.path"]
    assert {"report.json", "junit.xml", "summary.md", "baseline.json"} <= {p.name for p in uploaded.iterdir()}
    root = ET.parse(uploaded / "junit.xml").getroot()
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    cases = len(list((REPO / "cases").rglob("*.toml")))
    assert suites["gradcheck"].get("tests") == str(cases) and suites["gradcheck"].get("failures") == "0"
    assert suites["gradcheck.baseline"].get("failures") == "0"  # the regression job compared and passed
    report = json.loads((uploaded / "report.json").read_text())
    assert report["baseline"]["passed"] and len(report["baseline"]["compared"]) == cases
    assert "| matmul " in step_summary.read_text()


# The current major of each of GitHub's own actions the workflow uses: the first to run on
# node24 (checkout v5, setup-python v6, upload-artifact v5), or later.
CURRENT_MAJOR = {"actions/checkout": 6, "actions/setup-python": 6, "actions/upload-artifact": 6}


def test_actions_are_current_and_third_party_ones_pinned_by_commit() -> None:
    uses = [s["uses"] for s in workflow_steps(WORKFLOW.read_text()) if "uses" in s]
    assert uses
    raw = WORKFLOW.read_text()
    for use in uses:
        action, _, ref = use.partition("@")
        if action.startswith("actions/"):
            m = re.fullmatch(r"v(\d+)", ref)
            assert m and int(m.group(1)) >= CURRENT_MAJOR[action], use
        else:
            # a tag can be moved to other code; a commit cannot
            assert re.fullmatch(r"[0-9a-f]{40}", ref), f"{use}: pin a third-party action by its commit SHA"
            assert re.search(rf"{re.escape(use)}\s+# v\d", raw), f"{use}: name the tag it pins in a comment"
