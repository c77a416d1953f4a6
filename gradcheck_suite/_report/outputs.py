"""The report folder: report.json, junit.xml and summary.md from one run, written as one set."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import json_report, junit, markdown
from .files import write_set

__all__ = ["REPORT_FILES", "RENDERERS", "write_reports"]

# Every file of a run's set and how it is made from report.json's data: adding a report is
# adding a line here; files.write_set keeps the set whole.
RENDERERS: dict[str, Callable[[dict[str, Any]], bytes | str]] = {
    "report.json": json_report.dumps,
    "junit.xml": junit.to_xml,
    "summary.md": markdown.render,
}
REPORT_FILES = tuple(RENDERERS)


def write_reports(folder: Path, data: dict[str, Any], *, step_summary: bool = True) -> list[Path]:
    """Write every report of ``data`` (json_report.to_dict) into ``folder`` as one set: a
    reader, or a run killed while writing, sees the whole old set or the whole new one."""
    files = {name: render(data) for name, render in RENDERERS.items()}
    written = write_set(folder, files)
    if step_summary:
        summary = files["summary.md"]
        markdown.append_step_summary(summary if isinstance(summary, str) else summary.decode("utf-8"))
    return written
