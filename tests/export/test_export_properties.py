"""Property: for any tenant, export then plan against the same tenant gives zero changes."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.desired import load_desired_state
from reconciler.export import export_policies_yaml
from reconciler.model import PROTOCOL_NAMES, TenantPolicy, TenantSnapshot, TenantUser
from reconciler.plan import make_plan

# Names with the characters YAML, Markdown and shells care about, plus non-ASCII.
name_chars = st.sampled_from(list("abcXYZ019 -_.:#'\"[]{}&*!|>%@`,?=+~ÄéÜ\u00e8\u4e2d"))
policy_names = st.text(name_chars, min_size=1, max_size=20).filter(lambda s: s.strip() == s)
local_parts = st.text(st.sampled_from(list("abcxyz019._-+'")), min_size=1, max_size=12)
upns = st.builds(lambda local, domain: f"{local}@{domain}", local_parts, st.sampled_from(
    ["contoso.com", "Contoso.COM", "sub.contoso.com", "weird-domain.example"]
))  # fmt: skip
allows = st.frozensets(st.sampled_from(PROTOCOL_NAMES))


@st.composite
def snapshots(draw: st.DrawFn) -> TenantSnapshot:
    names = draw(st.lists(policy_names, min_size=0, max_size=5, unique_by=str.casefold))
    policies = tuple(TenantPolicy(n, draw(allows)) for n in names)
    held = st.sampled_from([*names, None]) if names else st.none()
    user_upns = draw(st.lists(upns, max_size=25, unique_by=str.casefold))
    # With the SMTP AUTH switches read: each mailbox's own setting (None: no mailbox), and the
    # org's (None: not shown).
    mailboxes = draw(st.booleans())
    settings_ = st.sampled_from(["enabled", "disabled", "organization", None])
    users = tuple(
        TenantUser(
            id=f"id-{i}",
            upn=upn,
            identity=f"u{i}",
            recipient_type=draw(st.sampled_from(["UserMailbox", "SharedMailbox"])),
            policy=draw(held),
            smtp_auth=draw(settings_) if mailboxes else None,
        )
        for i, upn in enumerate(user_upns)
    )
    default = draw(held)
    return TenantSnapshot(
        tenant="contoso.onmicrosoft.com",
        policies=policies,
        default_policy=default,
        users=users,
        smtp_org=draw(st.sampled_from(["enabled", "disabled", None])) if mailboxes else None,
        smtp_org_read=mailboxes,
        mailboxes_read=mailboxes,
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots())
def test_export_then_plan_is_empty_for_any_tenant(snapshot: TenantSnapshot) -> None:
    result = export_policies_yaml(snapshot)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "policies.yaml"
        path.write_text(result.text, encoding="utf-8")
        desired = load_desired_state(str(path))
    plan = make_plan(desired, snapshot)
    assert plan.changes == ()
    assert result.skipped == ()  # every generated name and UPN is expressible
