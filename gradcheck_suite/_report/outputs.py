"""The report folder: report.json, junit.xml, summary.md and report.html from one run, written together."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import html, json_report, junit, markdown
from .files import ensure_dir, write_all

if TYPE_CHECKING:
    from .._engine import Report

__all__ = ["REPORT_FILES", "write_reports"]

REPORT_FILES = ("report.json", "junit.xml", "summary.md", "report.html")


def write_reports(
    folder: Path, data: dict[str, Any], *, step_summary: bool = True, report: Report | None = None
) -> list[Path]:
    """Write the reports of ``data`` (json_report.to_dict) into ``folder``, atomically, creating
    it; ``report`` (the engine's Report of ``data``) gives report.html its circuits, heatmaps
    and sweeps, without it the page has the tables only.

    report.json is renamed into place last: it is the file a baseline is saved from, so when
    it is new the others are new as well.
    """
    summary = markdown.render(data)
    files: dict[Path, bytes | str] = {
        folder / "summary.md": summary,
        folder / "junit.xml": junit.to_xml(data),
        folder / "report.html": html.render(data, html.views(report) if report is not None else None),
        folder / "report.json": json_report.dumps(data),
    }
    ensure_dir(folder)
    write_all(files)
    if step_summary:
        markdown.append_step_summary(summary)
    return list(files)
