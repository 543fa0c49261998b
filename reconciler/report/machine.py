"""The exposure report for machines: deterministic JSON, and CSV with one row per user."""

from __future__ import annotations

import csv
import io
import json

from reconciler.render.escape import visible
from reconciler.report.model import REPORT_FORMAT_VERSION, ExposureReport, last_uses

CSV_COLUMNS = (
    "upn",
    "recipient_type",
    "direct_policy",
    "effective_policy",
    "via",
    "smtp_basic_auth_possible",
    "allowed_protocols",
    "basic_auth_last_use",
)

# Spreadsheets run a cell that starts with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def report_data(report: ExposureReport) -> dict[str, object]:
    """The report as plain JSON-able data (every user, every policy)."""
    return {
        "format_version": REPORT_FORMAT_VERSION,
        "tenant": report.tenant,
        **({"made_at": report.made_at} if report.made_at else {}),
        "default_policy": report.default_policy,
        "default_policy_found": report.default_policy_found,
        "smtp_auth_disabled_org": report.smtp_auth_disabled_org,
        "smtp_settings_read": report.smtp_settings_read,
        "summary": report.counts(),
        "policies": [
            {
                "name": p.name,
                "exists": p.exists,
                "is_default": p.is_default,
                "direct_users": p.direct_users,
                "via_default_users": p.default_users,
                "total_users": p.total_users,
                "allowed": list(p.allowed),
                "allowed_no_effect": list(p.allowed_inert),
                "smtp_basic_auth_possible_users": p.smtp_exposed_users,
            }
            for p in report.policies
        ],
        "users": [
            {
                "upn": u.upn,
                "user_id": u.id,
                "recipient_type": u.recipient_type,
                "direct_policy": u.direct_policy,
                "effective_policy": u.effective_policy,
                "via": u.via,
                "policy_found": u.policy_found,
                "allowed": list(u.allowed),
                "smtp_auth_enabled": u.smtp_auth_enabled,
                "smtp_auth_source": u.smtp_auth_source,
                "smtp_basic_auth_possible": u.smtp_basic_auth_possible,
                "basic_smtp": u.basic_smtp,
                **(
                    {
                        "basic_auth_use": {
                            p: {
                                "count": use.count,
                                "last": use.last,
                                "failures": use.failures,
                                "last_failure": use.last_failure,
                            }
                            for p, use in u.basic_use.items()
                        }
                    }
                    if report.sign_ins is not None and report.sign_ins.read
                    else {}
                ),
            }
            for u in report.users
        ],
        **(
            {
                "sign_ins": {
                    "status": report.sign_ins.status,
                    "days": report.sign_ins.days,
                    "since": report.sign_ins.since,
                    "reason": report.sign_ins.reason,
                    "events": report.sign_ins.events,
                    "used_but_no_longer_allowed": [
                        {"upn": u.upn, "protocol": p, "last": u.basic_use[p].last}
                        for u, p in report.used_not_allowed
                    ],
                    "allowed_but_unused": [
                        {"policy": r.policy, "protocol": r.protocol, "users": r.users}
                        for r in report.sign_ins.unused
                    ],
                }
            }
            if report.sign_ins is not None
            else {}
        ),
    }


def render_json(report: ExposureReport) -> str:
    """Deterministic JSON: same snapshot, same bytes."""
    return json.dumps(report_data(report), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _cell(value: str) -> str:
    """A tenant string for a spreadsheet: control, bidi and zero-width characters shown as
    escapes (as the text renderer shows them), and a formula made text the OWASP way (a leading
    apostrophe)."""
    value = visible(value)
    return "'" + value if value.startswith(_FORMULA_START) else value


def render_csv(report: ExposureReport) -> str:
    """One row per user, columns CSV_COLUMNS; booleans as true/false, protocols space-separated."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for u in report.users:
        writer.writerow(
            [
                _cell(u.upn),
                _cell(u.recipient_type),
                _cell(u.direct_policy or ""),
                _cell(u.effective_policy or ""),
                u.via,
                "true" if u.smtp_basic_auth_possible else "false",
                " ".join(u.allowed),
                last_uses(u),
            ]
        )
    return out.getvalue()
