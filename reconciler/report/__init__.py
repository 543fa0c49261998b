"""The Basic-auth exposure report: one view-model (`build_report`), four small renderers."""

from __future__ import annotations

from reconciler.report.machine import render_csv, render_json
from reconciler.report.markdown import render_markdown
from reconciler.report.model import ExposureReport, PolicyRow, UserRow, build_report, masked
from reconciler.report.text import render_text

REPORT_FORMATS: tuple[str, ...] = ("text", "markdown", "json", "csv")

__all__ = [
    "REPORT_FORMATS",
    "ExposureReport",
    "PolicyRow",
    "UserRow",
    "build_report",
    "masked",
    "render_report",
]


def render_report(
    report: ExposureReport,
    fmt: str,
    *,
    show_users: int | None = 20,
    sign_in_details: bool = False,
) -> str:
    """Render in one of REPORT_FORMATS. `show_users` caps the user lists of text and markdown
    (None lists everyone); json and csv always hold every user."""
    if fmt == "text":
        return render_text(report, show_users=show_users)
    if fmt == "markdown":
        return render_markdown(report, show_users=show_users, sign_in_details=sign_in_details)
    if fmt == "json":
        return render_json(report)
    if fmt == "csv":
        return render_csv(report)
    raise ValueError(f"unknown report format {fmt!r}; expected one of {', '.join(REPORT_FORMATS)}")
