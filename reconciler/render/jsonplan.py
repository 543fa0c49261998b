"""The plan JSON (DESIGN.md, format_version 1) and its exact inverse.

Byte-identical for identical plans: keys in a fixed order (as DESIGN.md lists them), no
timestamps, UTF-8 as is (`ensure_ascii=False`: UPNs stay readable), one change per line so a
100,000-user plan stays diffable and greppable, and a trailing newline.

Additive extensions to DESIGN.md's document: `inputs` (one digest per input, so a stale plan
can say what moved), `default_policy` (the org default after the plan, so a reader can tell
the effective policy of a user without a direct one), `config_file` (the policies.yaml the plan
was made from; `apply PLAN.json` without -c reads it), `affected_users` on policy_update, and
`summary.policy_replace` (only when the plan has replaces: `plan --allow-replace`). A
policy_replace change carries `policy`, `fields`, `after`, `holders` (reassigned after the
recreate), `is_default`, `moved_holders` and `default_moves` (hold it now, moved later by
their own changes: detached if Exchange refuses to remove a policy in use).

Round 2 (DESIGN.md "SMTP AUTH as desired state"): `default_policy_before` (the default when
the plan was made), `as_of` (the UTC date the plan was made for), `mailboxes_read` (mailbox
SMTP AUTH settings were read); change kinds `smtp_org_change` (`before` null when
Get-TransportConfig does not show the switch: unknown) and `mailbox_smtp_change`; every user
change carries `effective_before` / `effective_after` ({"policy", "via": direct | default |
none}), and, when mailboxes were read, user and mailbox changes carry `basic_smtp`
({"before", "after"}: allowed | blocked | unknown). The summary counts the two new kinds.

Evidence (DESIGN.md "Evidence"), when the file asks for sign-ins: a top-level `evidence`
({"status": read | missing, "days", "since", "reason", "active_users_blocked", "unused"}), and
every change that takes a protocol away from users carries `evidence`
({"protocol": {"users": N, "last": ISO}}; `users` null when the log could not be read).
Evidence is never part of what a saved plan is checked against: apply recomputes it.
`tenant_domain` (the tenant's initial domain, for people, when the connection knows it) follows
`tenant`; it is not compared either.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any

from reconciler.errors import PlanError
from reconciler.model import (
    PROTOCOL_NAMES,
    SMTP_SETTINGS,
    Change,
    ChangeEvidence,
    DefaultChange,
    EvidenceSummary,
    FieldChange,
    Guard,
    MailboxSmtpChange,
    Plan,
    PolicyCreate,
    PolicyDelete,
    PolicyReplace,
    PolicyUpdate,
    ProtocolEvidence,
    ReplaceResume,
    SmtpOrgChange,
    UnusedAllowance,
    UserChange,
    switches_of,
)

_BASIC = ("allowed", "blocked", "unknown")


def effective(direct: str | None, default: str | None) -> dict[str, Any]:
    """A user's effective policy and how it applies: direct, default, or none."""
    if direct is not None:
        return {"policy": direct, "via": "direct"}
    if default is not None:
        return {"policy": default, "via": "default"}
    return {"policy": None, "via": "none"}


FORMAT_VERSION = 1
SUMMARY_KINDS: tuple[str, ...] = (
    "policy_create",
    "policy_update",
    "policy_delete",
    "default_change",
    "smtp_org_change",
    "mailbox_smtp_change",
    "user_assign",
    "user_clear",
)
Defaults = tuple[str | None, str | None]  # the organization default before and after the plan


def summary_of(changes: tuple[Change, ...]) -> dict[str, int]:
    """Counts per change kind, in DESIGN.md's order, plus `total`."""
    counts = dict.fromkeys(SUMMARY_KINDS, 0)
    extra: dict[str, int] = {}
    for change in changes:
        if change.kind in counts:
            counts[change.kind] += 1
        else:  # policy_replace, replace_resume: counted only when the plan has them
            extra[change.kind] = extra.get(change.kind, 0) + 1
    for kind in ("policy_replace", "replace_resume"):
        if kind in extra:
            counts[kind] = extra[kind]
    counts["total"] = len(changes)
    return counts


def _fields_to_dict(fields: tuple[FieldChange, ...]) -> dict[str, dict[str, bool]]:
    return {f.protocol: {"before": f.before, "after": f.after} for f in fields}


def change_to_dict(change: Change, defaults: Defaults | None = None) -> dict[str, Any]:
    """One change as DESIGN.md's JSON object (keys in a fixed order). With `defaults` (the
    plan's default before and after), a user change also carries its effective policies."""
    data: dict[str, Any] = {"kind": change.kind}
    if isinstance(change, PolicyCreate):
        data |= {"policy": change.policy, "after": switches_of(change.after)}
    elif isinstance(change, PolicyUpdate):
        data |= {
            "policy": change.policy,
            "fields": _fields_to_dict(change.fields),
            "affected_users": change.affected_users,
        }
    elif isinstance(change, PolicyReplace):
        data |= {
            "policy": change.policy,
            "fields": _fields_to_dict(change.fields),
            "after": switches_of(change.after),
            "holders": list(change.holders),
            "is_default": change.is_default,
            "moved_holders": list(change.moved_holders),
            "default_moves": change.default_moves,
        }
    elif isinstance(change, PolicyDelete):
        data |= {"policy": change.policy}
    elif isinstance(change, ReplaceResume):
        data |= {
            "policy": change.policy,
            "holding": change.holding,
            "holders": list(change.holders),
            "default": change.default,
        }
    elif isinstance(change, DefaultChange | SmtpOrgChange):
        data |= {
            "before": change.before,
            "after": change.after,
            "affected_users": change.affected_users,
        }
    else:
        data |= {
            "user": change.user,
            "user_id": change.user_id,
            "before": change.before,
            "after": change.after,
            "rule": change.rule,
        }
        if isinstance(change, UserChange) and defaults is not None:
            data["effective_before"] = effective(change.before, defaults[0])
            data["effective_after"] = effective(change.after, defaults[1])
        if change.basic_smtp_before is not None:
            data["basic_smtp"] = {
                "before": change.basic_smtp_before,
                "after": change.basic_smtp_after,
            }
    if change.weakens:
        data["weakens"] = True
    evidence = getattr(change, "evidence", None)
    if evidence is not None:
        data["evidence"] = evidence_to_dict(evidence)
    return data


def evidence_to_dict(evidence: ChangeEvidence) -> dict[str, Any]:
    """A change's evidence: {"protocol": {"users": N, "last": ISO}}, protocols in order."""
    return {
        name: {"users": use.users, "last": use.last}
        for name in PROTOCOL_NAMES
        if (use := evidence.protocols.get(name)) is not None
    }


def evidence_summary_to_dict(summary: EvidenceSummary) -> dict[str, Any]:
    """The plan's top-level `evidence`."""
    return {
        "status": summary.status,
        "days": summary.days,
        "since": summary.since,
        "reason": summary.reason,
        "active_users_blocked": summary.active_users_blocked,
        "unused": [
            {"policy": u.policy, "protocol": u.protocol, "users": u.users, "rules": list(u.rules)}
            for u in summary.unused
        ],
    }


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


_string = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) uses, in C


def _optional_string(value: str | None) -> str:
    return "null" if value is None else _string(value)


def _effective_json(direct: str | None, default: str | None) -> str:
    if direct is not None:
        return f'{{"policy": {_string(direct)}, "via": "direct"}}'
    if default is not None:
        return f'{{"policy": {_string(default)}, "via": "default"}}'
    return '{"policy": null, "via": "none"}'


def _change_json(change: Change, defaults: Defaults) -> str:
    """One change as a JSON line; user changes (most of a big plan) by a fast path that
    writes exactly what `_dumps(change_to_dict(change, defaults))` would (a test holds it)."""
    if isinstance(change, UserChange) and change.evidence is None:
        basic = (
            f', "basic_smtp": {{"before": "{change.basic_smtp_before}", '
            f'"after": "{change.basic_smtp_after}"}}'
            if change.basic_smtp_before is not None
            else ""
        )
        return (
            f'{{"kind": "{change.kind}", "user": {_string(change.user)}, '
            f'"user_id": {_string(change.user_id)}, "before": {_optional_string(change.before)}, '
            f'"after": {_optional_string(change.after)}, "rule": {_string(change.rule)}, '
            f'"effective_before": {_effective_json(change.before, defaults[0])}, '
            f'"effective_after": {_effective_json(change.after, defaults[1])}'
            + basic
            + (', "weakens": true}' if change.weakens else "}")
        )
    return _dumps(change_to_dict(change, defaults))


# Characters that are invisible or reorder text (C1 controls, bidi overrides, zero-width,
# line/paragraph separators): written as \uXXXX so a plan viewed with `cat` or in a diff
# shows what is there. They can only occur inside JSON strings, so this is still the same JSON.
_INVISIBLE = re.compile(
    "[\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]"
)


def _escape_invisible(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def plan_to_json(plan: Plan) -> str:
    """The plan as format_version 1 JSON; identical plans give identical bytes."""
    guards = [
        {"name": g.name, "message": g.message, "count": g.count, "limit": g.limit}
        for g in plan.guards
    ]
    lines = [
        "{",
        f'  "format_version": {FORMAT_VERSION},',
        f'  "tenant": {_dumps(plan.tenant)},',
        *([f'  "tenant_domain": {_dumps(plan.tenant_domain)},'] if plan.tenant_domain else []),
        f'  "fingerprint": {_dumps(plan.fingerprint)},',
        f'  "inputs": {_dumps(dict(plan.inputs))},',
        f'  "default_policy": {_dumps(plan.default_policy)},',
        f'  "default_policy_before": {_dumps(plan.default_before)},',
        *([f'  "config_file": {_dumps(plan.config_file)},'] if plan.config_file else []),
        f'  "as_of": {_dumps(plan.as_of)},',
        f'  "mailboxes_read": {_dumps(plan.mailboxes_read)},',
        *(
            [f'  "evidence": {_dumps(evidence_summary_to_dict(plan.evidence))},']
            if plan.evidence is not None
            else []
        ),
        f'  "summary": {_dumps(summary_of(plan.changes))},',
    ]
    if plan.changes:
        lines.append('  "changes": [')
        defaults = (plan.default_before, plan.default_policy)
        body = ["    " + _change_json(c, defaults) for c in plan.changes]
        lines.append(",\n".join(body))
        lines.append("  ],")
    else:
        lines.append('  "changes": [],')
    lines.append(f'  "warnings": {_dumps(list(plan.warnings))},')
    lines.append(f'  "guards": {_dumps(guards)}')
    lines.append("}")
    return _INVISIBLE.sub(_escape_invisible, "\n".join(lines) + "\n")


# --------------------------------------------------------------------------- reading


class _Reader:
    """Typed access to a parsed plan that turns every surprise into a one-line PlanError."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, problem: str) -> PlanError:
        return PlanError(f"{self.source} is not a valid authpolicy plan: {where}: {problem}")

    def obj(self, value: Any, where: str) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, "expected an object")
        return value

    def key(self, data: Mapping[str, Any], key: str, where: str) -> Any:
        if key not in data:
            raise self.fail(where, f"missing {key!r}")
        return data[key]

    def text(self, data: Mapping[str, Any], key: str, where: str) -> str:
        value = self.key(data, key, where)
        if not isinstance(value, str):
            raise self.fail(f"{where}.{key}", "expected a string")
        return value

    def optional_text(self, data: Mapping[str, Any], key: str, where: str) -> str | None:
        value = self.key(data, key, where)
        if value is not None and not isinstance(value, str):
            raise self.fail(f"{where}.{key}", "expected a string or null")
        return value

    def integer(self, data: Mapping[str, Any], key: str, where: str) -> int:
        value = self.key(data, key, where)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(f"{where}.{key}", "expected an integer")
        return value

    def boolean(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, "expected true or false")
        return value

    def switches(self, value: Any, where: str) -> frozenset[str]:
        data = self.obj(value, where)
        if set(data) != set(PROTOCOL_NAMES):
            raise self.fail(where, "expected exactly the 12 protocol switches")
        return frozenset(name for name in PROTOCOL_NAMES if self.boolean(data[name], where))

    def fields(self, value: Any, where: str) -> tuple[FieldChange, ...]:
        data = self.obj(value, where)
        result = []
        for name in PROTOCOL_NAMES:  # canonical order, whatever order the file has
            if name in data:
                field = self.obj(data[name], f"{where}.{name}")
                result.append(
                    FieldChange(
                        name,
                        self.boolean(self.key(field, "before", where), f"{where}.{name}.before"),
                        self.boolean(self.key(field, "after", where), f"{where}.{name}.after"),
                    )
                )
        unknown = sorted(set(data) - set(PROTOCOL_NAMES))
        if unknown:
            raise self.fail(where, f"unknown protocol {unknown[0]!r}")
        return tuple(result)

    def change(self, value: Any, where: str) -> Change:
        change = self._change(value, where)
        data = self.obj(value, where)
        if "evidence" in data and hasattr(change, "evidence"):
            evidence = self.evidence(data["evidence"], f"{where}.evidence")
            change = dataclasses.replace(change, evidence=evidence)  # type: ignore[arg-type]
        return change

    def evidence(self, value: Any, where: str) -> ChangeEvidence:
        data = self.obj(value, where)
        unknown = sorted(set(data) - set(PROTOCOL_NAMES))
        if unknown:
            raise self.fail(where, f"unknown protocol {unknown[0]!r}")
        protocols = {}
        for name in PROTOCOL_NAMES:
            if name in data:
                use = self.obj(data[name], f"{where}.{name}")
                users, last = use.get("users"), use.get("last")
                if users is not None and (not isinstance(users, int) or isinstance(users, bool)):
                    raise self.fail(f"{where}.{name}.users", "expected an integer or null")
                if last is not None and not isinstance(last, str):
                    raise self.fail(f"{where}.{name}.last", "expected a time string or null")
                protocols[name] = ProtocolEvidence(users, last)
        return ChangeEvidence(protocols)

    def evidence_summary(self, value: Any, where: str) -> EvidenceSummary:
        data = self.obj(value, where)
        status = self.text(data, "status", where)
        if status not in ("read", "missing"):
            raise self.fail(f"{where}.status", "expected 'read' or 'missing'")
        unused_data = data.get("unused", [])
        if not isinstance(unused_data, list):
            raise self.fail(f"{where}.unused", "expected a list")
        unused = []
        for i, item in enumerate(unused_data):
            at = f"{where}.unused[{i}]"
            u = self.obj(item, at)
            rules = u.get("rules", [])
            if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
                raise self.fail(f"{at}.rules", "expected a list of rule names")
            unused.append(
                UnusedAllowance(
                    self.text(u, "policy", at),
                    self.text(u, "protocol", at),
                    self.integer(u, "users", at),
                    tuple(rules),
                )
            )
        return EvidenceSummary(
            status=status,  # type: ignore[arg-type]  # checked above
            days=self.integer(data, "days", where),
            since=self.text(data, "since", where),
            reason=self.text(data, "reason", where),
            active_users_blocked=self.integer(data, "active_users_blocked", where),
            unused=tuple(unused),
        )

    def _change(self, value: Any, where: str) -> Change:
        data = self.obj(value, where)
        kind = self.text(data, "kind", where)
        weakens = self.boolean(data.get("weakens", False), f"{where}.weakens")
        if kind == "policy_create":
            return PolicyCreate(
                policy=self.text(data, "policy", where),
                after=self.switches(self.key(data, "after", where), f"{where}.after"),
                weakens=weakens,
            )
        if kind == "policy_update":
            return PolicyUpdate(
                policy=self.text(data, "policy", where),
                fields=self.fields(self.key(data, "fields", where), f"{where}.fields"),
                weakens=weakens,
                affected_users=self.integer(data, "affected_users", where)
                if "affected_users" in data
                else 0,
            )
        if kind == "policy_replace":
            holders = self.key(data, "holders", where)
            if not isinstance(holders, list) or not all(isinstance(h, str) for h in holders):
                raise self.fail(f"{where}.holders", "expected a list of user ids")
            moved = data.get("moved_holders", [])
            if not isinstance(moved, list) or not all(isinstance(h, str) for h in moved):
                raise self.fail(f"{where}.moved_holders", "expected a list of user ids")
            return PolicyReplace(
                policy=self.text(data, "policy", where),
                fields=self.fields(self.key(data, "fields", where), f"{where}.fields"),
                after=self.switches(self.key(data, "after", where), f"{where}.after"),
                holders=tuple(holders),
                is_default=self.boolean(self.key(data, "is_default", where), f"{where}.is_default"),
                moved_holders=tuple(moved),
                default_moves=self.boolean(
                    data.get("default_moves", False), f"{where}.default_moves"
                ),
                weakens=weakens,
            )
        if kind == "policy_delete":
            return PolicyDelete(policy=self.text(data, "policy", where), weakens=weakens)
        if kind == "replace_resume":
            held = self.key(data, "holders", where)
            if not isinstance(held, list) or not all(isinstance(h, str) for h in held):
                raise self.fail(f"{where}.holders", "expected a list of user ids")
            return ReplaceResume(
                policy=self.text(data, "policy", where),
                holding=self.text(data, "holding", where),
                holders=tuple(held),
                default=self.boolean(self.key(data, "default", where), f"{where}.default"),
                weakens=weakens,
            )
        if kind == "default_change":
            return DefaultChange(
                before=self.optional_text(data, "before", where),
                after=self.optional_text(data, "after", where),
                affected_users=self.integer(data, "affected_users", where),
                weakens=weakens,
            )
        if kind == "smtp_org_change":
            before = self.optional_text(data, "before", where)
            after_org = self.text(data, "after", where)
            if before not in (None, "enabled", "disabled") or after_org not in (
                "enabled",
                "disabled",
            ):
                raise self.fail(where, "expected before/after 'enabled' or 'disabled'")
            affected = data.get("affected_users")
            if affected is not None and (
                not isinstance(affected, int) or isinstance(affected, bool)
            ):
                raise self.fail(f"{where}.affected_users", "expected an integer or null")
            return SmtpOrgChange(
                before=before,  # type: ignore[arg-type]  # checked above
                after=after_org,  # type: ignore[arg-type]
                affected_users=affected,
                weakens=weakens,
            )
        if kind == "mailbox_smtp_change":
            before_s = self.text(data, "before", where)
            after_s = self.text(data, "after", where)
            if before_s not in SMTP_SETTINGS or after_s not in SMTP_SETTINGS:
                raise self.fail(where, f"expected before/after among {', '.join(SMTP_SETTINGS)}")
            basic_before, basic_after = self.basic_smtp(data, where)
            return MailboxSmtpChange(
                user=self.text(data, "user", where),
                user_id=self.text(data, "user_id", where),
                before=before_s,  # checked above
                after=after_s,
                rule=self.text(data, "rule", where),
                weakens=weakens,
                basic_smtp_before=basic_before,  # type: ignore[arg-type]
                basic_smtp_after=basic_after,  # type: ignore[arg-type]
            )
        if kind in ("user_assign", "user_clear"):
            after = self.optional_text(data, "after", where)
            if (kind == "user_clear") != (after is None):
                raise self.fail(f"{where}.after", f"does not fit kind {kind!r}")
            return UserChange(
                kind=kind,  # type: ignore[arg-type]  # narrowed by the test above
                user=self.text(data, "user", where),
                user_id=self.text(data, "user_id", where),
                before=self.optional_text(data, "before", where),
                after=after,
                rule=self.text(data, "rule", where),
                weakens=weakens,
                basic_smtp_before=self.basic_smtp(data, where)[0],  # type: ignore[arg-type]
                basic_smtp_after=self.basic_smtp(data, where)[1],  # type: ignore[arg-type]
            )
        raise self.fail(f"{where}.kind", f"unknown change kind {kind!r}")

    def basic_smtp(self, data: Mapping[str, Any], where: str) -> tuple[str | None, str | None]:
        """A change's `basic_smtp` (absent: mailboxes were not read)."""
        if "basic_smtp" not in data:
            return None, None
        value = self.obj(data["basic_smtp"], f"{where}.basic_smtp")
        before, after = value.get("before"), value.get("after")
        if before not in _BASIC or after not in _BASIC:
            raise self.fail(f"{where}.basic_smtp", f"expected {', '.join(_BASIC)}")
        return before, after


class DuplicateKeyError(ValueError):
    """A JSON object names a key twice (a second "guards" must not hide the first)."""


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(f"the key {json.dumps(key)} appears twice in one object")
        out[key] = value
    return out


def plan_from_json(text: str, source: str = "the plan file") -> Plan:
    """Read a plan written by plan_to_json: the exact inverse, or a one-line PlanError."""
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise PlanError(
            f"{source} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    except DuplicateKeyError as exc:
        raise PlanError(f"{source} is not a plan file authpolicy wrote: {exc}") from None
    reader = _Reader(source)
    top = reader.obj(data, "the document")
    version = top.get("format_version")
    if version != FORMAT_VERSION:
        raise PlanError(
            f"{source} has plan format_version {json.dumps(version)}; this authpolicy reads "
            f"format_version {FORMAT_VERSION} (make the plan again with this version)"
        )
    changes_data = reader.key(top, "changes", "the document")
    if not isinstance(changes_data, list):
        raise reader.fail("changes", "expected a list")
    changes = tuple(reader.change(c, f"changes[{i}]") for i, c in enumerate(changes_data))
    warnings = reader.key(top, "warnings", "the document")
    if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
        raise reader.fail("warnings", "expected a list of strings")
    guards_data = reader.key(top, "guards", "the document")
    if not isinstance(guards_data, list):
        raise reader.fail("guards", "expected a list")
    guards = []
    for i, value in enumerate(guards_data):
        where = f"guards[{i}]"
        g = reader.obj(value, where)
        guards.append(
            Guard(
                name=reader.text(g, "name", where),
                message=reader.text(g, "message", where),
                count=reader.integer(g, "count", where),
                limit=reader.integer(g, "limit", where),
            )
        )
    inputs = reader.obj(top.get("inputs", {}), "inputs")
    if not all(isinstance(v, str) for v in inputs.values()):
        raise reader.fail("inputs", "expected string digests")
    default_policy = top.get("default_policy")
    if default_policy is not None and not isinstance(default_policy, str):
        raise reader.fail("default_policy", "expected a string or null")
    config_file = top.get("config_file")
    if config_file is not None and not isinstance(config_file, str):
        raise reader.fail("config_file", "expected a string")
    default_before = top.get("default_policy_before", default_policy)
    if default_before is not None and not isinstance(default_before, str):
        raise reader.fail("default_policy_before", "expected a string or null")
    as_of = top.get("as_of")
    if as_of is not None and not isinstance(as_of, str):
        raise reader.fail("as_of", "expected a date string")
    mailboxes_read = reader.boolean(top.get("mailboxes_read", False), "mailboxes_read")
    tenant_domain = top.get("tenant_domain")
    if tenant_domain is not None and not isinstance(tenant_domain, str):
        raise reader.fail("tenant_domain", "expected a string")
    evidence = reader.evidence_summary(top["evidence"], "evidence") if "evidence" in top else None
    summary = reader.obj(reader.key(top, "summary", "the document"), "summary")
    if dict(summary) != summary_of(changes):
        raise reader.fail("summary", "the counts do not match the changes (was the file edited?)")
    return Plan(
        tenant=reader.text(top, "tenant", "the document"),
        fingerprint=reader.text(top, "fingerprint", "the document"),
        changes=changes,
        warnings=tuple(warnings),
        guards=tuple(guards),
        inputs=dict(inputs),
        format_version=FORMAT_VERSION,
        default_policy=default_policy,
        config_file=config_file,
        as_of=as_of,
        default_before=default_before,
        mailboxes_read=mailboxes_read,
        evidence=evidence,
        tenant_domain=tenant_domain,
    )
