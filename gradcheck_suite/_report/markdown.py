"""summary.md: the run as a Markdown table (tabulate's github format), for a CI job summary.

When ``GITHUB_STEP_SUMMARY`` names a file (GitHub Actions sets it in every step), the same text
is appended to it, so the job's summary page shows the table without opening an artifact.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from tabulate import tabulate

from .junit import failure_message

__all__ = ["render", "append_step_summary"]


def _cell(text: str) -> str:
    # A pipe would end the cell early in GitHub's table syntax.
    return text.replace("|", "\\|").replace("\n", " ")


def _largest_rel(case: dict[str, Any]) -> str:
    rels = [float(p["max_rel"]) for i in case["inputs"] for p in i["pairs"]]
    return f"{max(rels):.2e}" if rels else "-"


def _points(summary: dict[str, Any]) -> str:
    p = summary.get("points")
    if not p:
        return ""
    return f"; {p['points']} sweep point(s): {p['pass']} pass, {p['fail']} fail, {p['inconclusive']} inconclusive"


def render(data: dict[str, Any]) -> str:
    s = data["summary"]
    o = data["options"]
    env = data["environment"]
    out = [
        "## gradcheck",
        "",
        f"{s['pass']} pass, {s['fail']} fail, {s['inconclusive']} inconclusive, {s['error']} error{_points(s)}"
        f" in {float(data['timings']['total_seconds']):.2f} s ({o['device']}: {env['device_name']}, {o['dtype']},"
        f" numeric {o['numeric']}; torch {env['torch']})",
        "",
    ]
    rows = []
    for c in data["cases"]:
        if c["verdict"] == "fail":
            detail = failure_message(c)
        elif c["verdict"] == "inconclusive":
            detail = c["reason"]
        else:
            detail = ""
        rows.append(
            [
                c["case"],
                f"{c['device']}-{c['dtype']}" + (f"-{c['kind']}" if c.get("kind", "order1") != "order1" else ""),
                c["verdict"].upper() if c["verdict"] != "pass" else "pass",
                c["odd_one_out"] or "",
                _largest_rel(c),
                detail,
            ]
        )
    for e in data["errors"]:
        where = f"{e.get('device') or o['device']}-{e.get('dtype') or o['dtype']}"
        rows.append([e["case"] or e["file"] or "?", where, "ERROR", "", "-", e["text"]])
    headers = ["case", "device-dtype", "verdict", "odd one out", "max rel diff", "detail"]
    # every cell escaped: a name may hold a `|` too (a pytest parameter, check(name=...))
    cells = [[_cell(str(x)) for x in row] for row in rows]
    out.append(tabulate(cells, headers=headers, tablefmt="github", disable_numparse=True))

    comparison = data.get("baseline")
    if comparison:
        out += ["", f"### baseline `{comparison['file']}` (max growth {comparison['max_growth']:g}x)", ""]
        if comparison["passed"]:
            out.append(f"No regression in {len(comparison['compared'])} case(s).")
        else:
            out += [f"- **regression** {_cell(r['message'])}" for r in comparison["regressions"]]
        if comparison["new"]:
            out.append("- new: " + ", ".join(comparison["new"]))
        if comparison["removed"]:
            out.append("- removed: " + ", ".join(comparison["removed"]))
    return "\n".join(out) + "\n"


def append_step_summary(text: str, environ: dict[str, str] | None = None) -> Path | None:
    """Append ``text`` to $GITHUB_STEP_SUMMARY when it is set; returns the file written."""
    env = os.environ if environ is None else environ
    target = env.get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    try:
        with open(target, "a", encoding="utf-8") as f:
            f.write(text if text.endswith("\n") else text + "\n")
    except OSError as exc:
        # The job summary is a nicety; the reports themselves are written, so warn and go on.
        print(f"gradcheck: warning: cannot append to GITHUB_STEP_SUMMARY {target}: {exc.strerror}", file=sys.stderr)
        return None
    return Path(target)
