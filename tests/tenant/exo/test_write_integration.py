"""Writes against the emulator: policies, default, users in $batch; faults never double a write."""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest

from reconciler.emulator import Emulator
from reconciler.errors import TenantNotFoundError
from reconciler.model import SnapshotNeeds, TenantUser
from reconciler.tenant.base import MailboxWrite, UserWrite
from reconciler.tenant.exo.errors import (
    ExoAlreadyExistsError,
    ExoPermissionError,
    ExoThrottledError,
)
from reconciler.tenant.exo.tenant import ExoTenant
from tests.tenant.exo.conftest import connect

pytestmark = pytest.mark.integration

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def writer(emu: Emulator, **options: Any) -> tuple[ExoTenant, list[TenantUser]]:
    tenant = connect(emu.connection_env(app="writer"), **options)
    users = [
        u for u in tenant.read_snapshot(SnapshotNeeds()).users if u.policy == "Block Basic Auth"
    ]
    emu.reset_stats()
    return tenant, users


def user_state(emu: Emulator, user_id: str) -> dict[str, Any]:
    return next(u for u in emu.dump_state()["users"] if u["ExternalDirectoryObjectId"] == user_id)


def set_user_log(emu: Emulator) -> list[dict[str, Any]]:
    return [e for e in emu.write_log() if e["cmdlet"] == "Set-User"]


def test_policy_lifecycle(emu: Emulator) -> None:
    tenant = connect(emu.connection_env(app="writer"))
    tenant.create_policy("Printers", frozenset({"smtp"}))
    with pytest.raises(ExoAlreadyExistsError):
        tenant.create_policy("Printers", frozenset())
    created = tenant.read_snapshot(SnapshotNeeds()).policy("Printers")
    assert created is not None and created.allow == frozenset({"smtp"})
    tenant.update_policy("Printers", {"smtp": False, "pop": True})
    updated = tenant.read_snapshot(SnapshotNeeds()).policy("Printers")
    assert updated is not None and updated.allow == frozenset({"pop"})
    tenant.remove_policy("Printers")
    assert tenant.read_snapshot(SnapshotNeeds()).policy("Printers") is None
    with pytest.raises(TenantNotFoundError):
        tenant.remove_policy("Printers")
    new = [e for e in emu.write_log() if e["cmdlet"] == "New-AuthenticationPolicy"]
    assert len(new) == 1
    assert new[0]["params"]["AllowBasicAuthSmtp"] is True
    assert new[0]["params"]["AllowBasicAuthPop"] is False


def test_default_policy_set_and_cleared(emu: Emulator) -> None:
    tenant = connect(emu.connection_env(app="writer"))
    tenant.set_default_policy("SMTP relay devices")
    assert tenant.read_snapshot(SnapshotNeeds()).default_policy == "SMTP relay devices"
    tenant.set_default_policy(None)
    assert tenant.read_snapshot(SnapshotNeeds()).default_policy is None


@pytest.mark.parametrize("use_batch", [True, False])
def test_user_writes_with_mixed_results(emu: Emulator, use_batch: bool) -> None:
    tenant, users = writer(emu, use_batch=use_batch)
    good = users[:9]
    writes = [UserWrite(u.id, "SMTP relay devices", revoke_sessions=True) for u in good[:8]]
    writes.append(UserWrite(good[8].id, None))
    writes.append(UserWrite(UNKNOWN_ID, "SMTP relay devices"))
    writes.append(UserWrite(users[9].id, "No Such Policy"))
    writes.append(UserWrite(users[10].id, "Block Basic Auth"))  # already so: a no-op write
    results = tenant.set_user_policies(writes)
    requests = emu.stats()["requests"]
    if use_batch:  # 11 known users: 10 + 1, and a read of the user behind "No Such Policy"
        assert requests["$batch"] == {"200": 3}
    else:
        assert "$batch" not in requests
        assert requests["Set-User"] == {"200": 10, "404": 1}
    assert [r.write for r in results] == writes
    assert [r.status for r in results] == ["applied"] * 9 + ["not_found", "failed", "applied"]
    assert "No Such Policy" in results[10].message
    assert results[9].message == f"user {UNKNOWN_ID} does not exist in the tenant"
    assert all(r.attempts == 1 for r in results if r.status == "applied")
    for user in good[:8]:
        state = user_state(emu, user.id)
        assert state["StsRefreshTokensValidFrom"] is not None
    assert tenant.read_users([u.id for u in good] + [UNKNOWN_ID]) == {
        **{u.id: "SMTP relay devices" for u in good[:8]},
        good[8].id: None,
    }
    log = set_user_log(emu)
    assert len(log) == 9
    sent = [
        e["params"]["STSRefreshTokensValidFrom"]
        for e in log
        if "STSRefreshTokensValidFrom" in e["params"]
    ]
    assert len(sent) == 8
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", s) for s in sent)


def test_connection_reset_after_a_committed_write_is_not_doubled(emu: Emulator) -> None:
    tenant, users = writer(emu, use_batch=False)
    emu.set_faults(one_shot=["reset_after_write"])
    [result] = tenant.set_user_policies(
        [UserWrite(users[0].id, "SMTP relay devices", revoke_sessions=True)]
    )
    assert result.status == "applied"
    assert result.attempts == 1  # sent once; the re-read showed it had taken effect
    assert len(set_user_log(emu)) == 1
    assert emu.stats()["faults_injected"] == {"reset_after_write": 1}
    assert user_state(emu, users[0].id)["StsRefreshTokensValidFrom"] is not None


def test_connection_reset_before_the_write_is_sent_again(emu: Emulator) -> None:
    tenant, users = writer(emu, use_batch=False)
    emu.set_faults(one_shot=["reset_before_write"])
    [result] = tenant.set_user_policies([UserWrite(users[0].id, "SMTP relay devices")])
    assert result.status == "applied"
    assert result.attempts == 2
    assert len(set_user_log(emu)) == 1


def test_gateway_timeout_on_a_batch_is_verified_then_resent(emu: Emulator) -> None:
    tenant, users = writer(emu)
    emu.set_faults(one_shot=["error_504"])
    writes = [UserWrite(u.id, "SMTP relay devices") for u in users[:10]]
    results = tenant.set_user_policies(writes)
    assert [r.status for r in results] == ["applied"] * 10
    assert [r.attempts for r in results] == [2] * 10
    assert len(set_user_log(emu)) == 10


@pytest.mark.parametrize(
    ("fault", "call", "cmdlet"),
    [
        (
            "reset_after_write",
            lambda t: t.create_policy("Kiosks", frozenset({"pop"})),
            "New-AuthenticationPolicy",
        ),
        (
            "reset_before_write",
            lambda t: t.create_policy("Kiosks", frozenset({"pop"})),
            "New-AuthenticationPolicy",
        ),
        (
            "reset_after_write",
            lambda t: t.update_policy("Legacy 2018 Policy", {"pop": False}),
            "Set-AuthenticationPolicy",
        ),
        (
            "reset_after_write",
            lambda t: t.remove_policy("Legacy 2018 Policy"),
            "Remove-AuthenticationPolicy",
        ),
        (
            "reset_after_write",
            lambda t: t.set_default_policy("SMTP relay devices"),
            "Set-OrganizationConfig",
        ),
        ("reset_before_write", lambda t: t.set_default_policy(None), "Set-OrganizationConfig"),
    ],
)
def test_ambiguous_policy_writes_take_effect_once(
    emu: Emulator, fault: str, call: Any, cmdlet: str
) -> None:
    tenant = connect(emu.connection_env(app="writer"))
    tenant.facts()
    emu.reset_stats()
    emu.set_faults(one_shot=[fault])
    call(tenant)
    assert [e["cmdlet"] for e in emu.write_log()] == [cmdlet]
    assert emu.stats()["faults_injected"] == {fault: 1}


def test_write_throttling_recovers(emu: Emulator) -> None:
    tenant, users = writer(emu)
    emu.set_faults(throttle_budget=4, throttle_window_seconds=0.3)
    writes = [UserWrite(u.id, "SMTP relay devices") for u in users[:20]]
    results = tenant.set_user_policies(writes)
    assert [r.status for r in results] == ["applied"] * 20
    assert any(r.attempts > 1 for r in results)
    assert len(set_user_log(emu)) == 20
    assert tenant.client.stats.throttled >= 1


def test_a_group_throttled_throughout_raises_for_the_executor(emu: Emulator) -> None:
    tenant, users = writer(emu)
    tenant.client.retry.max_retry_after = 1.0
    emu.set_faults(throttle_budget=1, throttle_window_seconds=30)
    writes = [UserWrite(u.id, "SMTP relay devices") for u in users[:5]]
    with pytest.raises(ExoThrottledError) as err:
        tenant.set_user_policies(writes)
    assert err.value.retry_after is not None and err.value.retry_after > 1.0
    assert str(err.value) == (
        "Exchange kept throttling Set-User for 5 user(s); nothing of this group was applied"
    )
    assert set_user_log(emu) == []


def test_concurrent_callers_share_one_client(emu: Emulator) -> None:
    tenant, users = writer(emu)
    emu.set_faults(max_concurrent_per_tenant=2)
    groups = [users[i : i + 10] for i in range(0, 60, 10)]
    outcomes: list[list[str]] = [[] for _ in groups]

    def run(n: int) -> None:
        results = tenant.set_user_policies(
            [UserWrite(u.id, "SMTP relay devices") for u in groups[n]]
        )
        outcomes[n] = [r.status for r in results]

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(groups))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes == [["applied"] * 10] * 6
    assert len(set_user_log(emu)) == 60
    assert emu.stats()["token_requests"] == {}  # the token of the snapshot read was reused


def test_users_unknown_to_the_last_snapshot_are_looked_up(emu: Emulator) -> None:
    _, users = writer(emu)
    fresh = connect(emu.connection_env(app="writer"))  # never read a snapshot
    [result] = fresh.set_user_policies([UserWrite(users[0].id, None)])
    assert result.status == "applied"
    assert fresh.read_users([users[0].id]) == {users[0].id: None}


def test_verifying_many_users_reads_everybody_in_pages(emu: Emulator) -> None:
    tenant, users = writer(emu)
    ids = [u.id for u in users[:2001]] + [UNKNOWN_ID]
    found = tenant.read_users(ids)
    assert len(found) == 2001
    assert set(found.values()) == {"Block Basic Auth"}
    assert emu.stats()["requests"]["Get-User"] == {"200": 3}


@pytest.mark.parametrize("use_batch", [True, False])
def test_read_only_app_gets_one_permission_error_not_one_per_user(
    emu: Emulator, use_batch: bool
) -> None:
    reader = connect(emu.connection_env(app="reader"), use_batch=use_batch)
    users = reader.read_snapshot(SnapshotNeeds()).users[:12]
    with pytest.raises(ExoPermissionError) as err:
        reader.set_user_policies([UserWrite(u.id, "SMTP relay devices") for u in users])
    assert str(err.value).startswith(
        "Exchange refused Set-User (403): the app's role does not allow changes"
    )
    assert emu.write_log() == []


@pytest.mark.parametrize("use_batch", [True, False])
def test_mailbox_smtp_writes_are_batched_read_back_and_never_doubled(
    emu: Emulator, use_batch: bool
) -> None:
    tenant = connect(emu.connection_env(app="writer"), use_batch=use_batch)
    snapshot = tenant.read_snapshot(SnapshotNeeds(smtp_org=True, mailboxes=True))
    boxes = [u for u in snapshot.users if u.smtp_auth == "organization"][:12]
    mail_user = next(u for u in snapshot.users if u.smtp_auth is None)  # no mailbox
    emu.reset_stats()
    emu.set_faults(one_shot=["reset_after_write"])  # the first send lands, its answer is lost
    writes = [MailboxWrite(u.id, "disabled") for u in boxes]
    results = tenant.set_mailbox_smtp([*writes, MailboxWrite(mail_user.id, "enabled")])
    assert [r.status for r in results] == ["applied"] * 12 + ["not_found"]
    sent = [e for e in emu.write_log() if e["cmdlet"] == "Set-CASMailbox"]
    assert len(sent) == 12  # each once: the lost answer was checked by reading back
    assert all(user_state(emu, u.id)["_smtp_disabled"] is True for u in boxes)
    assert tenant.read_mailbox_settings([u.id for u in boxes[:3]]) == {
        u.id: "disabled" for u in boxes[:3]
    }
    # $null: follow the organization again.
    [back] = tenant.set_mailbox_smtp([MailboxWrite(boxes[0].id, "organization")])
    assert back.status == "applied" and user_state(emu, boxes[0].id)["_smtp_disabled"] is None


def test_org_smtp_switch_round_trips(emu: Emulator) -> None:
    tenant = connect(emu.connection_env(app="writer"))
    assert tenant.read_smtp_org() is None  # Microsoft's default-off, not shown (hidden)
    tenant.set_smtp_org("enabled")
    assert tenant.read_smtp_org() == "enabled"
    assert emu.dump_state()["transport"]["SmtpClientAuthenticationDisabled"] is False
    tenant.set_smtp_org("disabled")
    assert tenant.read_smtp_org() == "disabled"
