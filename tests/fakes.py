"""An in-memory tenant implementing the `Tenant` protocol, with fault injection.

It behaves like the emulator where that matters to the executor and planner (case-insensitive
policy names, removing a policy drops every link to it, writes to a missing user answer
not-found) and records every state-changing call, so tests can count writes exactly.

Faults are plain attributes, set by a test before the call they should affect:

    tenant.fail_create["SMTP relay devices"] = "The policy could not be created."
    tenant.fail_update["Block Basic Auth"] = NULL_REFERENCE_MESSAGE
    tenant.fail_user["u-17"] = "User is read-only."
    tenant.throttle_batches = 3          # the next 3 set_user_policies calls raise throttled
    tenant.retried_batches = 2           # the next 2 calls succeed after an internal retry
    tenant.delete_user("u-5")            # later writes to u-5 answer not_found
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from reconciler.errors import TenantError, TenantNotFoundError, TenantThrottledError
from reconciler.model import Allowed, SnapshotNeeds, TenantPolicy, TenantSnapshot, TenantUser
from reconciler.tenant.base import MailboxWrite, ProgressCallback, UserWrite, WriteResult

NULL_REFERENCE_MESSAGE = "Object reference not set to an instance of an object."
THROTTLE_MESSAGE = (
    "You have reached the maximum number of concurrent requests per tenant. Please wait and retry."
)


@dataclass
class WriteCall:
    """One state-changing call the fake accepted (what the emulator's stats would count)."""

    cmdlet: str  # New-/Set-/Remove-AuthenticationPolicy, Set-OrganizationConfig, Set-User
    target: str  # policy name, user id, or "" for the organization
    value: object = None
    revoke_sessions: bool = False


@dataclass
class FakeTenant:
    """A tenant held in memory. Thread-safe: the executor calls set_user_policies concurrently."""

    name: str = "contoso.onmicrosoft.com"
    policies: dict[str, Allowed] = field(default_factory=dict)
    default_policy: str | None = None
    users: dict[str, TenantUser] = field(default_factory=dict)
    groups: dict[str, frozenset[str]] = field(default_factory=dict)
    smtp_org: str | None = None  # Set-TransportConfig's switch (None: not shown)

    # fault injection
    fail_create: dict[str, str] = field(default_factory=dict)
    fail_update: dict[str, str] = field(default_factory=dict)
    fail_remove: dict[str, str] = field(default_factory=dict)
    fail_default: str | None = None
    fail_user: dict[str, str] = field(default_factory=dict)
    # Remove-AuthenticationPolicy of a policy users or the default still name: "clear" drops
    # the links (what a dangling link amounts to), "reject" refuses like the emulator's default.
    remove_referenced: str = "clear"
    throttle_batches: int = 0  # next N set_user_policies calls raise TenantThrottledError
    retried_batches: int = 0  # next N calls succeed but report attempts=2 (a 429 retried inside)
    before_user_batch: Callable[[Sequence[UserWrite]], None] | None = None

    # observation
    writes: list[WriteCall] = field(default_factory=list)
    user_batches: list[int] = field(default_factory=list)  # size of each set_user_policies call
    max_in_flight: int = 0
    snapshot_reads: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0

    # ------------------------------------------------------------------ building

    @classmethod
    def with_users(
        cls,
        count: int,
        *,
        policy: str | None = None,
        policies: Mapping[str, Iterable[str]] | None = None,
        default_policy: str | None = None,
        name: str = "contoso.onmicrosoft.com",
    ) -> FakeTenant:
        """A tenant with `count` users u-0..u-N (user0@contoso.com ...) all holding `policy`."""
        users = {
            f"u-{i}": TenantUser(
                id=f"u-{i}",
                upn=f"user{i}@contoso.com",
                identity=f"user{i}",
                recipient_type="UserMailbox",
                policy=policy,
            )
            for i in range(count)
        }
        return cls(
            name=name,
            policies={k: frozenset(v) for k, v in (policies or {}).items()},
            default_policy=default_policy,
            users=users,
        )

    def delete_user(self, user_id: str) -> None:
        """Remove a user, as if deleted in Entra between plan and apply."""
        with self._lock:
            del self.users[user_id]

    # ------------------------------------------------------------------ Tenant protocol

    def read_snapshot(
        self, needs: SnapshotNeeds, progress: ProgressCallback | None = None
    ) -> TenantSnapshot:
        with self._lock:
            self.snapshot_reads += 1
            users = tuple(sorted(self.users.values(), key=lambda u: u.upn)) if needs.users else ()
            if progress is not None:
                progress(len(users), len(users))
            return TenantSnapshot(
                tenant=self.name,
                policies=tuple(
                    TenantPolicy(name=n, allow=a) for n, a in sorted(self.policies.items())
                ),
                default_policy=self.default_policy,
                users=users,
                groups=dict(self.groups),
                smtp_org=self.smtp_org,  # type: ignore[arg-type]
                smtp_org_read=needs.smtp_org or needs.mailboxes,
                mailboxes_read=needs.mailboxes and needs.users,
            )

    def create_policy(self, name: str, allow: Allowed) -> None:
        with self._lock:
            if name in self.fail_create:
                raise TenantError(self.fail_create[name])
            if self._find_policy(name) is not None:
                raise TenantError(f"An authentication policy named '{name}' already exists.")
            self.policies[name] = frozenset(allow)
            self.writes.append(WriteCall("New-AuthenticationPolicy", name, frozenset(allow)))

    def update_policy(self, name: str, switches: Mapping[str, bool]) -> None:
        with self._lock:
            key = self._find_policy(name)
            if key in self.fail_update or name in self.fail_update:
                raise TenantError(self.fail_update.get(name) or self.fail_update[key or ""])
            if key is None:
                raise TenantNotFoundError(f"The authentication policy '{name}' was not found.")
            allow = set(self.policies[key])
            for protocol, allowed in switches.items():
                (allow.add if allowed else allow.discard)(protocol)
            self.policies[key] = frozenset(allow)
            self.writes.append(WriteCall("Set-AuthenticationPolicy", key, dict(switches)))

    def remove_policy(self, name: str) -> None:
        with self._lock:
            if name in self.fail_remove:
                raise TenantError(self.fail_remove[name])
            key = self._find_policy(name)
            if key is None:
                raise TenantNotFoundError(f"The authentication policy '{name}' was not found.")
            held = (
                any(
                    u.policy is not None and u.policy.casefold() == key.casefold()
                    for u in self.users.values()
                )
                or (self.default_policy or "").casefold() == key.casefold()
            )
            if held and self.remove_referenced == "reject":
                raise TenantError(
                    f"The authentication policy '{key}' can't be removed because it's in use."
                )
            del self.policies[key]
            # The links point at the removed object (by DN): they are gone with it.
            for uid, user in self.users.items():
                if user.policy is not None and user.policy.casefold() == key.casefold():
                    self.users[uid] = replace(user, policy=None)
            if self.default_policy is not None and self.default_policy.casefold() == key.casefold():
                self.default_policy = None
            self.writes.append(WriteCall("Remove-AuthenticationPolicy", key))

    def set_default_policy(self, name: str | None) -> None:
        with self._lock:
            if self.fail_default is not None:
                raise TenantError(self.fail_default)
            key = None if name is None else self._find_policy(name)
            if name is not None and key is None:
                raise TenantNotFoundError(f"The authentication policy '{name}' was not found.")
            self.default_policy = key
            self.writes.append(WriteCall("Set-OrganizationConfig", "", key))

    def set_user_policies(self, writes: Sequence[UserWrite]) -> list[WriteResult]:
        if len(writes) > 10:
            raise AssertionError(f"a $batch holds at most 10 requests, got {len(writes)}")
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            if self.before_user_batch is not None:
                self.before_user_batch(writes)
            with self._lock:
                self.user_batches.append(len(writes))
                if self.throttle_batches > 0:
                    self.throttle_batches -= 1
                    raise TenantThrottledError(THROTTLE_MESSAGE, retry_after=0.0)
                attempts = 1
                if self.retried_batches > 0:
                    self.retried_batches -= 1
                    attempts = 2
                return [self._write_user(w, attempts) for w in writes]
        finally:
            with self._lock:
                self._in_flight -= 1

    def read_users(self, user_ids: Sequence[str]) -> Mapping[str, str | None]:
        with self._lock:
            return {uid: self.users[uid].policy for uid in user_ids if uid in self.users}

    def set_smtp_org(self, setting: str) -> None:
        with self._lock:
            self.smtp_org = setting
            self.writes.append(WriteCall("Set-TransportConfig", "", setting))

    def read_smtp_org(self) -> str | None:
        return self.smtp_org

    def set_mailbox_smtp(self, writes: Sequence[MailboxWrite]) -> list[WriteResult]:
        if len(writes) > 10:
            raise AssertionError(f"a $batch holds at most 10 requests, got {len(writes)}")
        results = []
        with self._lock:
            self.user_batches.append(len(writes))
            if self.throttle_batches > 0:
                self.throttle_batches -= 1
                raise TenantThrottledError(THROTTLE_MESSAGE, retry_after=0.0)
            for write in writes:
                user = self.users.get(write.user_id)
                if user is None or user.smtp_auth is None:
                    results.append(WriteResult(write, "not_found", "no such mailbox", 1))
                    continue
                self.users[write.user_id] = replace(user, smtp_auth=write.setting)
                self.writes.append(WriteCall("Set-CASMailbox", write.user_id, write.setting))
                results.append(WriteResult(write, "applied", "", 1))
        return results

    def read_mailbox_settings(self, user_ids: Sequence[str]) -> Mapping[str, str]:
        with self._lock:
            return {
                uid: self.users[uid].smtp_auth  # type: ignore[misc]
                for uid in user_ids
                if uid in self.users and self.users[uid].smtp_auth is not None
            }

    # ------------------------------------------------------------------ helpers

    def _find_policy(self, name: str) -> str | None:
        folded = name.casefold()
        return next((n for n in self.policies if n.casefold() == folded), None)

    def _write_user(self, write: UserWrite, attempts: int) -> WriteResult:
        user = self.users.get(write.user_id)
        if user is None:
            return WriteResult(
                write,
                "not_found",
                f"The operation couldn't be performed because object '{write.user_id}' "
                "couldn't be found.",
                attempts,
            )
        if write.user_id in self.fail_user:
            return WriteResult(write, "failed", self.fail_user[write.user_id], attempts)
        key = None if write.policy is None else self._find_policy(write.policy)
        if write.policy is not None and key is None:
            return WriteResult(
                write,
                "failed",
                f"The authentication policy '{write.policy}' was not found.",
                attempts,
            )
        self.users[write.user_id] = replace(
            user,
            policy=key,
            sts_refresh_tokens_valid_from="now"
            if write.revoke_sessions
            else user.sts_refresh_tokens_valid_from,
        )
        self.writes.append(WriteCall("Set-User", write.user_id, key, write.revoke_sessions))
        return WriteResult(write, "applied", "", attempts)
