"""Hostile policies.yaml through the real CLI process: refused with one line per problem, no
traceback, and with bounded memory (peak RSS of the child, measured by the kernel).

The loader's own tests (tests/desired) cover 70+ bad-input messages; this module proves the
promises hold for the installed command end to end, where memory and exit codes are real.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.reliability.harness import authpolicy_command, subprocess_env

# Peak RSS allowed for refusing a hostile file (ru_maxrss is KiB on Linux, the CI machines):
# the interpreter with authpolicy's imports is
# ~60 MB here; a billion-laughs expansion or a 100,000-rule tree would need far more.
MEMORY_LIMIT_KIB = 150 * 1024

BILLION_LAUGHS = "version: 1\na: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(9)
)
RULES_100K = "version: 1\npolicies:\n  P:\n    allow: []\nassignments:\n  rules:\n" + "".join(
    f"    - {{name: r{i}, policy: P, match: all}}\n" for i in range(100_000)
)


def _validate(tmp_path: Path, text: str) -> tuple[subprocess.CompletedProcess[str], int]:
    """`authpolicy validate` on `text` in a child; (result, the child's peak RSS in KiB)."""
    path = tmp_path / "policies.yaml"
    path.write_text(text, encoding="utf-8")
    # Peak RSS of a child is only known once it has been waited for; run through a shell that
    # reports its own child's figure so earlier children of this process don't count.
    script = (
        "import resource, subprocess, sys;"
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True);"
        "sys.stdout.write(r.stdout); sys.stderr.write(r.stderr);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr);"
        "sys.exit(r.returncode)"
    )
    argv = authpolicy_command("validate", "-c", str(path))
    result = subprocess.run(
        [argv[0], "-c", script, *argv],
        env=subprocess_env({}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    *lines, peak = result.stderr.splitlines()
    result.stderr = "\n".join(lines) + ("\n" if lines else "")
    return result, int(peak)


def test_billion_laughs_is_refused_at_the_first_alias_with_bounded_memory(tmp_path: Path) -> None:
    result, peak = _validate(tmp_path, BILLION_LAUGHS)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{tmp_path / 'policies.yaml'}:3:8: b[0]: YAML aliases (*a) are not supported; "
        "write the value out"
    ]
    assert peak < MEMORY_LIMIT_KIB, peak


def test_100000_rules_are_refused_at_the_limit_with_bounded_memory(tmp_path: Path) -> None:
    assert len(RULES_100K) < 5 * 1024 * 1024  # under the size limit: the rule limit must act
    result, peak = _validate(tmp_path, RULES_100K)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert "assignments.rules" in line and "1000" in line.replace(",", ""), line
    assert "Traceback" not in result.stderr
    assert peak < MEMORY_LIMIT_KIB, peak


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ('"Line one\\nLine two"', "policies"),
        ('"bell\\a"', "policies"),
    ],
    # A bidi override (U+202E) is accepted: Exchange allows it, export writes it escaped and
    # every renderer shows it escaped (tests/reliability/test_hostile.py).
    ids=["newline", "control"],
)
def test_policy_names_the_terminal_or_exchange_cannot_carry_are_refused(
    tmp_path: Path, name: str, fragment: str
) -> None:
    text = f"version: 1\npolicies:\n  {name}:\n    allow: []\n"
    result, _ = _validate(tmp_path, text)
    assert result.returncode == 1, result.stdout
    [line] = result.stderr.splitlines()
    assert fragment in line
    assert "\n" not in line and "\u202e" not in line and "\a" not in line
