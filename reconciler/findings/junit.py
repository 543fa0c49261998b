"""JUnit XML: one <testsuite> per tenant, one <testcase> per check (or drift area).

Failing checks are <failure>, not-assessed ones <skipped> (they count as passing unless
--strict, which makes them failures). Written with the standard library's ElementTree, so
every value is escaped; readers such as Azure DevOps' PublishTestResults, GitLab and Jenkins
take this shape.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

CaseStatus = Literal["pass", "fail", "skipped"]


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    classname: str
    status: CaseStatus
    message: str = ""  # failure or skip message (one line)
    details: str = ""  # the failure's text (evidence, findings, fix)


@dataclass(frozen=True, slots=True)
class Suite:
    name: str
    cases: tuple[Case, ...]
    timestamp: str | None = None


def _clean(text: str) -> str:
    """XML 1.0 cannot hold most control characters, even escaped: tenant values are shown
    with them escaped instead."""
    return "".join(
        ch
        if ch in "\t\n\r" or (ord(ch) >= 0x20 and ord(ch) not in range(0xD800, 0xE000))
        else repr(ch)[1:-1]
        for ch in text
    )


def render_junit(suites: Sequence[Suite]) -> str:
    root = ET.Element("testsuites", name="authpolicy")
    totals = {"tests": 0, "failures": 0, "skipped": 0}
    for suite in suites:
        failures = sum(1 for c in suite.cases if c.status == "fail")
        skipped = sum(1 for c in suite.cases if c.status == "skipped")
        attrs = {
            "name": _clean(suite.name),
            "tests": str(len(suite.cases)),
            "failures": str(failures),
            "errors": "0",
            "skipped": str(skipped),
        }
        if suite.timestamp:
            attrs["timestamp"] = suite.timestamp.rstrip("Z")
        element = ET.SubElement(root, "testsuite", attrs)
        totals["tests"] += len(suite.cases)
        totals["failures"] += failures
        totals["skipped"] += skipped
        for case in suite.cases:
            node = ET.SubElement(
                element,
                "testcase",
                name=_clean(case.name),
                classname=_clean(case.classname),
                time="0",
            )
            if case.status == "fail":
                failure = ET.SubElement(
                    node, "failure", message=_clean(case.message), type="ComplianceFailure"
                )
                failure.text = _clean(case.details or case.message)
            elif case.status == "skipped":
                ET.SubElement(node, "skipped", message=_clean(case.message))
    root.set("tests", str(totals["tests"]))
    root.set("failures", str(totals["failures"]))
    root.set("errors", "0")
    root.set("skipped", str(totals["skipped"]))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
