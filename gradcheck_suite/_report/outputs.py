"""The report folder: report.json, junit.xml, summary.md and report.html from one run, written as one set."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import html, json_report, junit, markdown
from .files import ensure_dir, write_set

if TYPE_CHECKING:
    from .._engine import Report

__all__ = ["REPORT_FILES", "RENDERERS", "write_reports"]

# Every file of a run's set and how it is made from report.json's data: adding a report is
# adding a line here; files.write_set keeps the set whole. report.html also draws on the
# engine's Report (circuits, heatmaps, sweeps), so write_reports renders it beside these.
RENDERERS: dict[str, Callable[[dict[str, Any]], bytes | str]] = {
    "report.json": json_report.dumps,
    "junit.xml": junit.to_xml,
    "summary.md": markdown.render,
}
REPORT_FILES = (*RENDERERS, "report.html")


def write_reports(
    folder: Path, data: dict[str, Any], *, step_summary: bool = True, report: Report | None = None
) -> list[Path]:
    """Write every report of ``data`` (json_report.to_dict) into ``folder`` as one set: a
    reader, or a run killed while writing, sees the whole old set or the whole new one.
    ``report`` (the engine's Report of ``data``) gives report.html its circuits, heatmaps and
    sweeps; without it the page has the tables only."""
    files = {name: render(data) for name, render in RENDERERS.items()}
    files["report.html"] = html.render(data, html.views(report) if report is not None else None)
    ensure_dir(folder)
    written = write_set(folder, files)
    if step_summary:
        summary = files["summary.md"]
        markdown.append_step_summary(summary if isinstance(summary, str) else summary.decode("utf-8"))
    return written
