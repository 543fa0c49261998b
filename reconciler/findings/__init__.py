"""Findings for machines: SARIF (code scanning) and JUnit XML (pipelines that gate on tests),
shared by `report --baseline` and `drift`."""
