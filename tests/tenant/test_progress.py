"""The read progress bar: drawn on a terminal, silent otherwise."""

from __future__ import annotations

import io

from reconciler.tenant.progress import read_progress


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_quiet_when_not_a_terminal() -> None:
    out = io.StringIO()
    with read_progress(stream=out) as progress:
        progress(1000, None)
        progress(2000, 5000)
    assert out.getvalue() == ""


def test_bar_on_a_terminal() -> None:
    out = FakeTerminal()
    with read_progress("Reading users", stream=out) as progress:
        progress(1000, None)
        progress(2000, 5000)
    assert "Reading users" in out.getvalue()
