"""The plan fingerprint: sha256 over the canonical config and the live objects the plan read.

Each input gets its own digest (`Plan.inputs`) so that a stale saved plan can say WHAT moved
(the config, the policies, the default, the users, the groups); the fingerprint is the hash of
the tenant name and those digests. Nothing volatile (time, random ids, read order) goes in:
lists are sorted, and only the fields the planner reads are hashed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from reconciler.model import (
    PROTOCOL_NAMES,
    DesiredState,
    MatchSpec,
    SmtpAuthSpec,
    TenantSnapshot,
    TenantUser,
)
from reconciler.plan.columns import Columns, user_columns
from reconciler.plan.needs import snapshot_needs

INPUT_NAMES: tuple[str, ...] = (
    "config",
    "policies",
    "default",
    "users",
    "groups",
    "smtp_org",
    "as_of",
)


def _canonical(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _digest(data: Any) -> str:
    return "sha256:" + hashlib.sha256(_canonical(data).encode("utf-8", "surrogatepass")).hexdigest()


def _users_digest(
    users: Sequence[TenantUser], fields: Sequence[str], columns: Columns | None = None
) -> str:
    """The users' `fields` (the first is the id), in id order, hashed column by column.

    Columns, not rows, because a column of 100,000 values mostly holds a few distinct ones
    (recipient types, departments, policies): each distinct value is JSON-encoded once, and
    the column is put in id order and joined in C; a fraction of the cost of JSON-encoding
    100,000 rows. Ids and UPNs, all different, are joined as they are.
    """
    if columns is None or not all(name in columns for name in fields):
        columns = user_columns(users, fields)
    ids = columns[fields[0]]
    order = sorted(range(len(ids)), key=ids.__getitem__)  # the read order is noise
    # itemgetter(*order)(column): the whole permutation in one C call.
    in_order: Callable[[list[Any]], Sequence[Any]] = (
        itemgetter(*order) if len(order) > 1 else (lambda column: column)
    )
    digest = hashlib.sha256(_canonical({"fields": list(fields), "users": len(ids)}).encode())
    for name in fields:
        column = columns[name]
        text = _column_text(column, in_order, unique=name in ("id", "upn"))
        digest.update(f"\n{len(text)}\n".encode())
        digest.update(text.encode("utf-8", "surrogatepass"))
    return "sha256:" + digest.hexdigest()


def _column_text(
    column: list[str | None], in_order: Callable[[list[Any]], Sequence[Any]], *, unique: bool
) -> str:
    """The column, in id order, as text that splits back into exactly its values, one per line.

    R: strings with no line break in them, as they are (ids, UPNs). T: the JSON of each value
    (JSON never holds a raw line break). J: the whole column as JSON, for an unexpected value
    in a column of the first kind.
    """
    if unique:
        ordered = in_order(column)
        try:
            text = "\n".join(ordered)
        except TypeError:  # a None (or a non-string) among them
            return "J" + _canonical(list(ordered))
        if text.count("\n") == max(len(ordered) - 1, 0):
            return "R" + text
        return "J" + _canonical(list(ordered))
    table = {value: _canonical(value) for value in set(column)}
    encoded = list(map(table.__getitem__, column))
    return "T" + "\n".join(in_order(encoded))


def _allow_list(allow: frozenset[str]) -> list[str]:
    return [name for name in PROTOCOL_NAMES if name in allow]


def _match_data(spec: MatchSpec | None) -> Any:
    if spec is None:
        return None
    if spec.match_all:
        return "all"
    return {
        key: list(getattr(spec, key))
        for key in spec.__dataclass_fields__
        if key != "match_all" and getattr(spec, key)
    }


def canonical_config(desired: DesiredState) -> dict[str, Any]:
    """The desired state as plain data: what it means, not how the file spelled or laid it out.

    Policy order does not matter (sorted); rule order does (first match wins).
    """
    safety = desired.safety
    return {
        "version": desired.version,
        "tenant": desired.tenant,
        "policies": sorted(
            ({"name": p.name, "allow": _allow_list(p.allow)} for p in desired.policies),
            key=lambda p: (p["name"].casefold(), p["name"]),
        ),
        "remove_policies": sorted(desired.remove_policies, key=lambda n: (n.casefold(), n)),
        "prune_policies": desired.prune_policies,
        "default_policy": (
            {"manage": True, "name": desired.default_policy}
            if desired.manage_default
            else {"manage": False}
        ),
        "assignments": {
            "unmatched": desired.assignments.unmatched,
            "revoke_sessions": desired.assignments.revoke_sessions,
            "recipient_types": sorted(desired.assignments.recipient_types),
            "rules": [
                {
                    "name": r.name,
                    "policy": r.policy,
                    "match": _match_data(r.match),
                    "except": _match_data(r.except_),
                    **({"smtp_auth": r.smtp_auth} if r.smtp_auth else {}),
                    **({"owner": r.owner} if r.owner else {}),
                    **({"reason": r.reason} if r.reason else {}),
                    **({"expires": r.expires.isoformat()} if r.expires else {}),
                }
                for r in desired.assignments.rules
            ],
        },
        **(
            {
                "smtp_auth": {
                    "organization": desired.smtp_auth.organization,
                    "unmatched": desired.smtp_auth.unmatched,
                }
            }
            if desired.smtp_auth != SmtpAuthSpec()
            else {}
        ),
        "safety": {
            "max_user_changes": str(safety.max_user_changes) if safety.max_user_changes else None,
            "max_policy_deletes": (
                str(safety.max_policy_deletes) if safety.max_policy_deletes else None
            ),
        },
    }


def user_fields(desired: DesiredState) -> tuple[str, ...]:
    """The user fields a plan of `desired` reads (and its fingerprint covers); id first."""
    smtp = ("smtp_auth",) if desired.manages_mailboxes else ()
    return (
        "id",
        "upn",
        "recipient_type",
        "policy",
        *smtp,
        *sorted(snapshot_needs(desired).attributes),
    )


def input_digests(
    desired: DesiredState,
    snapshot: TenantSnapshot,
    columns: Columns | None = None,
    as_of: str | None = None,
) -> dict[str, str]:
    """One digest per input, in INPUT_NAMES order (`columns`: the users' already read); the
    organization's SMTP AUTH when it was read, and the date the plan was made for."""
    needs = snapshot_needs(desired)
    wanted_groups = {g.casefold() for g in needs.groups}
    groups = {
        name: sorted(members)
        for name, members in snapshot.groups.items()
        if name.casefold() in wanted_groups
    }
    # Groups asked for but absent are part of what was read, too.
    for name in wanted_groups - {n.casefold() for n in groups}:
        groups[name] = None  # type: ignore[assignment]
    digests = {
        "config": _digest(canonical_config(desired)),
        "policies": _digest(sorted([p.name, _allow_list(p.allow)] for p in snapshot.policies)),
        "default": _digest(snapshot.default_policy),
        "users": _users_digest(snapshot.users, user_fields(desired), columns),
        "groups": _digest(groups),
    }
    if snapshot.smtp_org_read:
        digests["smtp_org"] = _digest(snapshot.smtp_org)
    if as_of is not None:
        digests["as_of"] = _digest(as_of)
    return digests


def fingerprint_of(tenant: str, inputs: Mapping[str, str]) -> str:
    """The plan fingerprint: a hash of the tenant and the per-input digests."""
    return _digest({"tenant": tenant, "inputs": dict(inputs)})


def moved_inputs(saved: Mapping[str, str], current: Mapping[str, str]) -> list[str]:
    """The names of the inputs whose digest differs between a saved plan and now."""
    names = list(INPUT_NAMES) + sorted((set(saved) | set(current)) - set(INPUT_NAMES))
    return [n for n in names if saved.get(n) != current.get(n)]
