"""Compliance checks in the auditor's words (`report --baseline`): CISA SCuBA, CIS and our own,
each evaluated once from a snapshot, rendered as text, markdown, json, SARIF or JUnit."""
