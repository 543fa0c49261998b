"""The text renderer: Terraform-like `+ ~ -` lines for a terminal or a CI log."""

from __future__ import annotations

from reconciler.render.escape import quoted, visible
from reconciler.render.lines import Line, plan_sections
from reconciler.render.view import PROPAGATION_NOTE, PlanView, summary_line

_RESET = "\x1b[0m"
_STYLES = {
    "+": "\x1b[32m",  # green
    "~": "\x1b[33m",  # yellow
    "-": "\x1b[31m",  # red
    "-/+": "\x1b[35m",  # magenta
    "heading": "\x1b[1m",
    "weakens": "\x1b[1;31m",
    "warning": "\x1b[33m",
    "guard": "\x1b[1;31m",
    "dim": "\x1b[2m",
}


class _Painter:
    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, style: str, text: str) -> str:
        return f"{_STYLES[style]}{text}{_RESET}" if self.color else text


def _line(paint: _Painter, line: Line) -> str:
    indent = "      " if line.detail else "  "
    symbol = "" if line.detail else f"{line.symbol} "
    body = f"{indent}{symbol}{line.text}"
    if line.weakens:
        return paint("weakens", body)
    return body if line.detail else paint(line.symbol, body)  # details stay plain: readable


def render_text(view: PlanView, *, color: bool = False, show_users: int | None = 20) -> str:
    """The plan for people at a terminal. Colour only when asked (the CLI checks tty/NO_COLOR)."""
    paint = _Painter(color)
    name = quoted(view.tenant_domain or view.tenant)
    if view.tenant_domain:
        name += f" ({view.tenant})"
    out = [paint("heading", f"authpolicy plan for tenant {name}"), ""]
    for section in plan_sections(view, show_users):
        out.append(paint("heading", section.title))
        out += [_line(paint, line) for line in section.lines]
        out.append("")
    if view.warnings:
        out.append(paint("heading", "Warnings"))
        out += [paint("warning", f"  ! {visible(w)}") for w in view.warnings]
        out.append("")
    if view.guards:
        out.append(paint("guard", "Blocked: apply refuses this plan without --force"))
        out += [paint("guard", f"  x {visible(g)}") for g in view.guards]
        out.append("")
    out.append(paint("heading", summary_line(view)))
    out.append(f"Fingerprint: {view.fingerprint}")
    if view.total:
        out.append(paint("dim", PROPAGATION_NOTE))
    return "\n".join(out) + "\n"
