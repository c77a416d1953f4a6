"""report.html: written with the other reports, self-contained, its summary the terminal's; per
program case a circuit (Graphviz, or a table without `dot`), heatmaps per array input, each sweep
point's worst ratio; issue 14's line blame drawn when report.json carries it; and a real
headless Chromium loads it with no console message."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from gradcheck_suite._cli import main
from gradcheck_suite._engine import RunOptions, run
from gradcheck_suite._report import html, json_report

from . import browser
from .conftest import CASES

DROP_SIGX = "dx += ((1 - sigx) * sigx) * dsigx\n"


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text of the element with id=summary."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.summary = ""
        self._in_summary = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        self._in_summary = a.get("id") == "summary"

    def handle_data(self, data: str) -> None:
        if self._in_summary:
            self.summary += data

    def handle_endtag(self, tag: str) -> None:
        self._in_summary = False

    def having(self, tag: str, cls: str | None = None, **attrs: str) -> list[dict[str, str]]:
        out = []
        for t, a in self.tags:
            if t != tag or (cls is not None and cls not in a.get("class", "").split()):
                continue
            if all(a.get(k.replace("_", "-")) == v for k, v in attrs.items()):
                out.append(a)
        return out


def parse(text: str) -> Elements:
    p = Elements()
    p.feed(text)
    return p


@pytest.fixture
def cases(tmp_path: Path) -> Path:
    """The five seed cases, and compound_sigmoid with the notebook's dropped `+=` as another case."""
    folder = tmp_path / "cases"
    folder.mkdir()
    for p in CASES.glob("*.toml"):
        shutil.copy(p, folder)
    text = (CASES / "compound_sigmoid.toml").read_text().replace(DROP_SIGX, "")
    text = text.replace('name = "compound_sigmoid"', 'name = "compound_sigmoid_dropped"')
    (folder / "dropped.toml").write_text(text)
    return folder


@pytest.fixture
def written(cases: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert main(["run", "cases", "--samples", "6", "--report-dir", "out"]) == 1
    out = capsys.readouterr().out
    return tmp_path / "out", out


def test_report_html_is_written_beside_the_others_and_needs_nothing_else(written) -> None:
    folder, _ = written
    text = (folder / "report.html").read_text()
    assert text.startswith("<!DOCTYPE html>")
    # self-contained: no stylesheet, script, image or font fetched from anywhere
    assert not re.search(r"<link\b|\bsrc=|@import|url\(", text)
    assert not re.search(r"https?://(?!www\.w3\.org/)", text)  # SVG's namespace is a name, not a fetch


def test_the_summary_is_the_terminals(written) -> None:
    folder, out = written
    page = parse((folder / "report.html").read_text())
    terminal = next(line for line in out.splitlines() if re.match(r"\d+ case\(s\):", line))
    assert page.summary == terminal
    assert "6 case(s): 5 pass, 1 fail" in page.summary and "sweep point(s)" in page.summary


def test_each_case_has_its_section_circuit_heatmaps_and_sweep(written) -> None:
    folder, _ = written
    data = json.loads((folder / "report.json").read_text())
    page = parse((folder / "report.html").read_text())
    sections = page.having("section", "case")
    assert len(sections) == len(data["cases"]) == 6
    assert {s["data-verdict"] for s in sections} == {"pass", "fail"}
    # a circuit per program case: a node per forward statement (compound_sigmoid has 8)
    steps = [a for a in page.having("g", "node") if "step" in a["class"].split()]
    assert len([a for a in steps if a["id"].startswith("node_s")]) >= 8
    # the dropped `+=` makes dx wrong: its wire stands out, the others do not
    wrong = page.having("g", "wrong")
    assert wrong and all("wire" in a["class"].split() for a in wrong)
    # matmul: 2 array inputs x 3 pairs, W is 5x10 so 50 cells
    maps = page.having("figure", "heatmap")
    assert len(maps) >= 6
    # every sweep's points, each with its verdict
    assert page.having("figure", "sweep")
    assert len(page.having("circle", "point")) >= 6 * 7  # 6 cases x (own point + 6 samples), some twice


def test_heatmap_cells_are_the_elements_against_their_tolerance(cases: Path) -> None:
    report = run([cases / "matmul.toml"], RunOptions())
    views = html.views(report)
    (view,) = views.values()
    W = [h for h in view["heatmaps"] if h["input"] == "W"]
    assert [h["pair"] for h in W] == ["manual-autograd", "manual-numeric", "autograd-numeric"]
    result = report.results[0]
    pair = result.inputs[0].pairs[0]
    assert len(W[0]["cells"]) == 5 and len(W[0]["cells"][0]) == 10
    assert max(c for row in W[0]["cells"] for c in row if c is not None) == pytest.approx(pair.ratio)
    page = parse(html.render(json_report.to_dict(report), views))
    first = page.having("figure", "heatmap")
    assert first
    assert len([t for t, a in page.tags if t == "rect" and "fill" in a]) >= 50 + 30


def _blamed_report(cases: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    report = run([cases / "dropped.toml"], RunOptions())
    data = json_report.to_dict(report)
    # the shape issue 14 writes (common.md): a hand-made blame of the line computing dsigx
    data["cases"][0]["diagnostics"] = {
        "blame": {
            "line": 36,
            "statement": "dsigx = dden",
            "message": "dsigx disagrees with autograd's gradient of f with respect to sigx",
            "intermediates": [
                {"name": "dden", "line": 35, "status": "right", "max_rel": 1e-16},
                {"name": "dsigx", "line": 36, "status": "wrong", "max_rel": 0.5},
            ],
        },
        "hints": [],
    }
    return data, html.views(report)


def test_a_blamed_line_is_drawn_when_report_json_carries_one(cases: Path) -> None:
    data, views = _blamed_report(cases)
    text = html.render(data, views)
    page = parse(text)
    assert page.having("div", "blame")
    assert "dsigx = dden" in text and "dsigx disagrees with autograd" in unescape(text)
    blamed = [a for a in page.having("g", "blamed")]
    assert len(blamed) == 1  # the node that computes sigx, whose gradient the line computes
    circuit = views[next(iter(views))]["circuit"]
    sigx = next(n for n in circuit["nodes"] if n.get("target") == "sigx")
    assert blamed[0]["id"] == f"node_{sigx['id']}"
    # the wire carrying sigx is marked wrong by the blame, den's right
    titles = re.findall(r'<g id="(wire_\d+)" class="edge wire (\w+)">', text)
    by_name = {w["name"]: w for w in circuit["wires"]}
    assert by_name["sigx"]  # the wire exists
    assert ("wrong" in {cls for _, cls in titles}) and ("right" in {cls for _, cls in titles})


def test_without_dot_the_circuit_is_a_table_and_the_page_says_so(cases: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # no `dot` to be found
    data, views = _blamed_report(cases)
    page = parse(text := html.render(data, views))
    assert "Graphviz's `dot` is not installed: circuits are shown as tables" in unescape(text)
    assert page.having("p", "fallback-note") and page.having("table", "circuit-table")
    assert page.having("tr", "wrong")
    assert not page.having("svg", None, **{"class": "graph"})


def test_show_html_draws_one_case(cases: Path, tmp_path: Path, cli) -> None:
    out = tmp_path / "one.html"
    code, stdout, _ = cli("show", "compound_sigmoid_dropped", str(cases), "--html", str(out))
    assert code == 1 and f"wrote {out}" in stdout
    page = parse(out.read_text())
    (section,) = page.having("section", "case")
    assert section["data-verdict"] == "fail"
    assert page.summary.startswith("1 case(s): 0 pass, 1 fail")


# --- a real browser ----------------------------------------------------------------------------


def _need_browser() -> None:
    if browser.browser() is None:
        if os.environ.get("GRADCHECK_REQUIRE_BROWSER"):
            pytest.fail("GRADCHECK_REQUIRE_BROWSER is set but no Chromium is installed (apt-get install chromium)")
        pytest.skip("no headless Chromium here (the README's set-up installs Debian's `chromium` where it can)")


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def test_chromium_loads_the_report_with_no_console_message_and_draws_it(written, tmp_path: Path) -> None:
    _need_browser()
    folder, _ = written
    page_file = folder / "report.html"
    dom, console = browser.load(page_file)
    assert console == []  # no error, no warning, nothing: the page logs nothing
    assert 'data-ready="yes"' in dom  # the page's script ran to its end
    page = parse(dom)
    assert page.summary.startswith("6 case(s): 5 pass, 1 fail")
    assert len(page.having("section", "case")) == 6
    assert page.having("g", "wrong") and page.having("figure", "heatmap") and page.having("figure", "sweep")
    assert page.having("input", None, id="only-problems")
    shot = browser.screenshot(page_file, tmp_path / "report.png", 1280, 1400)
    assert _png_size(shot) == (1280, 1400) and shot.stat().st_size > 50_000  # a page, not a blank
