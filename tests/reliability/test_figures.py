"""The figures docs/reliability.md quotes, measured: bad policies.yaml files through the real
CLI (every one refused with located one-line errors, never a traceback), and tampered saved
plans against the emulator (every one refused, nothing written). Each test prints its tally.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from reconciler import cli
from reconciler.emulator import Emulator
from tests.desired.test_bad_input import CASES
from tests.reliability.harness import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

ROOT_FILE = (ROOT / "policies.yaml").read_text(encoding="utf-8")
# One bad value for a scalar, each refused wherever a scalar is expected: a mapping, an alias,
# an infinite number, a tag that would run code, a NUL character, an integer of 30 digits, a
# nested list.
BAD_VALUES = (
    "{x: 1}",
    "*nope",
    "1e999",
    "!!python/object:os.system x",
    '"a\\0b"',
    "123456789012345678901234567890",
    "[[1]]",
)
_SCALAR_LINE = re.compile(r"^(\s*(?:- )?[A-Za-z_]+:\s+)([^\s#{\[][^#]*?)(\s*(?:#.*)?)$")


def _mutants() -> list[tuple[str, str]]:
    """(label, text) of bad files: the located cases of tests/desired, every scalar of the
    sample policies.yaml replaced by each bad value, and an unknown key in every mapping."""
    out: list[tuple[str, str]] = []
    for label, text, _ in CASES:
        out.append((label, text.decode("utf-8", "replace") if isinstance(text, bytes) else text))
    lines = ROOT_FILE.splitlines()
    for number, line in enumerate(lines):
        match = _SCALAR_LINE.match(line)
        if match is None or match.group(1).strip() == "version:":
            continue
        for bad in BAD_VALUES:
            mutated = [*lines[:number], match.group(1) + bad, *lines[number + 1 :]]
            out.append((f"line {number + 1} = {bad}", "\n".join(mutated) + "\n"))
    for number, line in enumerate(lines):
        if line.rstrip().endswith(":") and not line.lstrip().startswith("#"):
            indent = len(line) - len(line.lstrip()) + 2
            mutated = [*lines[: number + 1], " " * indent + "zzz_unknown: 1", *lines[number + 1 :]]
            out.append((f"unknown key under line {number + 1}", "\n".join(mutated) + "\n"))
    return out


def test_bad_policy_files_are_all_refused_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mutants = _mutants()
    refused = tracebacks = 0
    accepted: list[str] = []
    for index, (label, text) in enumerate(mutants):
        path = tmp_path / f"bad-{index}.yaml"
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        capsys.readouterr()
        code = cli.main(["validate", "-c", str(path)])
        out, err = capsys.readouterr()
        if "Traceback" in err + out or "internal error" in err:
            tracebacks += 1
        if code == 1 and err and all(line.startswith(str(path)) for line in err.splitlines()):
            refused += 1
        else:
            accepted.append(f"{label}: exit {code}: {err or out}")
    print(
        f"\nbad policies.yaml files: {len(mutants)} tried, {refused} refused, "
        f"{tracebacks} tracebacks"
    )
    assert len(mutants) >= 200
    assert accepted == [] and tracebacks == 0


TAMPERINGS = {
    "guards deleted": lambda d: {k: v for k, v in d.items() if k != "guards"},
    "guards emptied": lambda d: {**d, "guards": []},
    "a change's after edited": lambda d: _edit_change(d, "after", "SMTP relay devices"),
    "a change's rule edited": lambda d: _edit_change(d, "rule", "devices"),
    "a change's kind edited": lambda d: _edit_change(d, "kind", "user_clear", after=None),
    "a change added": lambda d: {
        **d,
        "changes": [*d["changes"], {**d["changes"][-1], "user_id": "0000-forged", "user": "x@y"}],
        "summary": {**d["summary"], "total": d["summary"]["total"] + 1},
    },
    "summary edited": lambda d: {**d, "summary": {**d["summary"], "total": 0}},
    "format_version 2": lambda d: {**d, "format_version": 2},
    "tenant edited": lambda d: {**d, "tenant": "fabrikam.onmicrosoft.com"},
    "config digest edited": lambda d: {**d, "inputs": {**d["inputs"], "config": "sha256:0"}},
    "config_file pointed elsewhere": lambda d: {**d, "config_file": "other.yaml"},
    "as_of moved a year on": lambda d: {**d, "as_of": "2027-12-27"},
}
RAW_TAMPERINGS = {
    "duplicate guards key": lambda t: t.replace('  "guards": ', '  "guards": [],\n  "guards": ', 1),
    "truncated": lambda t: t[: len(t) // 2],
    "not UTF-8": lambda t: t.replace('"tenant"', '"t\udcffnant"', 1),
    "a byte-order mark": lambda t: "\ufeff" + t,
    "nested 100,000 deep": lambda t: "[" * 100_000 + "]" * 100_000,
    "duplicate key inside a change": lambda t: t.replace('"kind": ', '"kind": "x", "kind": ', 1),
    "65 MiB": lambda t: t + " " * (65 * 2**20),
    "empty": lambda t: "",
}


def _edit_change(data: dict, key: str, value: object, **more: object) -> dict:  # type: ignore[type-arg]
    changes = list(data["changes"])
    index = next(i for i, c in enumerate(changes) if c["kind"] == "user_assign")
    changes[index] = {**changes[index], key: value, **more}
    return {**data, "changes": changes}


def test_tampered_saved_plans_are_refused_and_write_nothing(
    connected: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "policies.yaml"
    (tmp_path / "other.yaml").write_text(ROOT_FILE.replace("10%", "50%"), encoding="utf-8")
    # A guard that blocks this plan: deleting or emptying it in the file must not help.
    config.write_text(ROOT_FILE.replace("max_user_changes: 10%", "max_user_changes: 1"), "utf-8")
    plan_file = tmp_path / "plan.json"
    assert cli.main(["plan", "-c", str(config), "--out", str(plan_file)]) == 0
    text = plan_file.read_text(encoding="utf-8")
    data = json.loads(text)
    variants = [
        (label, json.dumps(edit(data), ensure_ascii=False)) for label, edit in TAMPERINGS.items()
    ]
    variants += [(label, edit(text)) for label, edit in RAW_TAMPERINGS.items()]
    refused = 0
    problems = []
    for label, body in variants:
        path = tmp_path / "tampered.json"
        path.write_bytes(body.encode("utf-8", "surrogateescape"))
        connected.reset_stats()
        capsys.readouterr()
        code = cli.main(["apply", str(path), "-c", str(config), "--audit-log", str(tmp_path / "a")])
        _, err = capsys.readouterr()
        writes = connected.stats()["writes_changed_state"]
        if code in (1, 3) and writes == 0 and "internal error" not in err:
            refused += 1
        else:
            problems.append(f"{label}: exit {code}, {writes} writes: {err[-300:]}")
    print(f"\ntampered plans: {len(variants)} tried, {refused} refused with 0 writes")
    assert problems == []
