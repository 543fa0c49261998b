"""`ExoTenant`: the `Tenant` protocol over the admin API.

Reads a complete snapshot (or raises), and makes the five kinds of writes. Every write is made
at most once in effect: when a write fails ambiguously (the connection dropped after sending, a
timeout, a 504) the object is read back and the write is sent again only if it did not take
effect; `WriteResult.attempts` counts the sends.

Throttling contract for the executor (which calls `set_user_policies` from several threads):
- each result's `attempts` > 1 means the client had to retry (throttling or transient errors);
- when a whole group of writes stays throttled through the client's own retry rounds, nothing
  of it having been applied, `set_user_policies` raises `ExoThrottledError` (a
  `TenantThrottledError`, with `retry_after`) so the executor can shrink its concurrency and
  send the group again later;
- `client.stats` counts requests, throttled answers and retries; `on_throttle` (constructor)
  is called for every throttled answer.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from reconciler.errors import TenantError, TenantNotFoundError
from reconciler.model import (
    PROTOCOL_BY_NAME,
    PROTOCOLS,
    Allowed,
    ConditionalAccessRead,
    OrgSmtp,
    SmtpSetting,
    SnapshotNeeds,
    TenantSnapshot,
    smtp_disabled_value,
)
from reconciler.tenant.base import (
    MailboxWrite,
    ProgressCallback,
    UserWrite,
    WriteResult,
    WriteStatus,
)
from reconciler.tenant.exo.client import AdminApiClient, BatchItem, BatchOutcome
from reconciler.tenant.exo.errors import (
    ExoAlreadyExistsError,
    ExoConnectionError,
    ExoError,
    ExoInvalidParameterError,
    ExoNotFoundError,
    ExoPermissionError,
    ExoThrottledError,
)
from reconciler.tenant.exo.settings import is_guid
from reconciler.tenant.exo.snapshot import (
    CAS_SELECT,
    GROUP_MEMBER_SELECT,
    GROUP_RESOLVE_SELECT,
    ORG_SELECT,
    POLICY_SELECT,
    UNIFIED_GROUP_TYPES,
    GroupRef,
    expand_group,
    is_group_type,
    mailbox_setting_of,
    org_smtp_of,
    policy_from_json,
    policy_keys,
    policy_name_from_reference,
    user_select,
    with_mailboxes,
)
from reconciler.tenant.exo.user_reads import (
    MAILBOXES,
    USERS,
    Listing,
    MailboxSet,
    ReadPace,
    Sink,
    UserSet,
    read_cursor,
    read_partitioned,
)
from reconciler.tenant.graph import ConditionalAccessReader, SignInLog, SignInReader
from reconciler.tenant.pause_gc import gc_paused

log = logging.getLogger(__name__)

# Above this many users, verification reads everybody (paged) instead of 10 per $batch.
FULL_READ_THRESHOLD = 2000
_SAFE_ID = re.compile(r"^[0-9A-Za-z-]{1,64}$")
_GROUP_ATTR = "member_of"


def sts_timestamp(now: dt.datetime | None = None) -> str:
    """UTC "YYYY-MM-DDTHH:MM:SS" without Z: how the module sends a DateTime (§4)."""
    now = now or dt.datetime.now(dt.UTC)
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


@dataclass(frozen=True, slots=True)
class TenantFacts:
    """What the tenant told us about itself (for the apply tenant guard)."""

    configured: str
    initial_domain: str | None = None  # Get-OrganizationConfig Name/Identity
    tenant_guid: str | None = None  # the token's tid claim

    def matches(self, name: str) -> bool:
        """Is `name` (policies.yaml `tenant:`) this tenant, by GUID or initial domain?"""
        folded = name.strip().casefold()
        return folded in {
            v.casefold() for v in (self.configured, self.initial_domain, self.tenant_guid) if v
        }


class ExoTenant:
    """The Tenant protocol over HTTPS. Thread-safe for concurrent `set_user_policies` calls."""

    def __init__(
        self,
        client: AdminApiClient,
        *,
        use_batch: bool = True,
        max_write_rounds: int = 4,
        max_read_restarts: int = 2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        # Get-User cursors read side by side (1: one cursor; see user_reads.py).
        self.read_concurrency = 1
        # Reads the Entra sign-in log (evidence) when a plan asks for it; None: not wired.
        self.sign_in_reader: SignInReader | None = None
        self.conditional_access_reader: ConditionalAccessReader | None = None
        self.use_batch = use_batch
        self.max_write_rounds = max_write_rounds
        self.max_read_restarts = max_read_restarts
        self._sleep = sleep
        self._lock = threading.Lock()
        # ExternalDirectoryObjectId -> Exchange GUID, from the last snapshot: Set-User's
        # documented identities are name, UPN, DN and GUID, not the Entra object id.
        self._exchange_guids: dict[str, str] = {}
        self._initial_domain: str | None = None
        # Every form of every policy's reference (name, GUID, DN) -> its name, from the last
        # read of the policies: what turns a re-read's reference into a name.
        self._policies_by_key: dict[str, str] = {}
        self._unknown_references: set[str] = set()

    def request_retries(self) -> int:
        """Requests the client sent again so far (503, resets, throttling, token refresh)."""
        return self.client.stats.as_dict()["retries"]

    # ------------------------------------------------------------------ tenant facts

    @property
    def name(self) -> str:
        """The tenant as configured (GUID or initial *.onmicrosoft.com domain)."""
        return self.client.settings.tenant

    @property
    def initial_domain(self) -> str | None:
        """The tenant's initial domain, once Get-OrganizationConfig was read."""
        return self._initial_domain

    @property
    def tenant_guid(self) -> str | None:
        """The tenant GUID from the token's `tid` claim (or the configured GUID)."""
        if is_guid(self.name):
            return self.name
        try:
            tid = self.client.tokens.claims().get("tid")
        except Exception:  # a fact for comparisons; the real error surfaces on the next call
            return None
        return str(tid) if tid else None

    @property
    def tenant_id(self) -> str | None:
        """Alias of `tenant_guid` (the name some callers look for)."""
        return self.tenant_guid

    @property
    def tenant_domain(self) -> str | None:
        """Alias of `initial_domain`."""
        return self._initial_domain

    def facts(self) -> TenantFacts:
        """Configured name, initial domain and GUID (reads the org config if not yet read)."""
        if self._initial_domain is None:
            self._read_org()
        return TenantFacts(self.name, self._initial_domain, self.tenant_guid)

    # ------------------------------------------------------------------ reads

    def _read_policies(self) -> list[Any]:
        rows = self.client.invoke("Get-AuthenticationPolicy", {}, select=POLICY_SELECT)
        policies = [policy_from_json(row) for row in rows]
        keys = policy_keys(policies)
        with self._lock:
            self._policies_by_key = keys
        return policies

    def _policy_name(self, reference: Any) -> str | None:
        """A reference read back (any form) as a policy name; reads the policies when the
        reference names none known yet (a policy created since the last read)."""
        name = policy_name_from_reference(reference, self._policies_by_key)
        if (
            name is not None
            and name.casefold() not in self._policies_by_key
            and name.casefold() not in self._unknown_references
        ):
            # Once per unknown reference: a dangling link (a deleted policy's GUID) held by many
            # users must not cost one Get-AuthenticationPolicy per user.
            self._unknown_references.add(name.casefold())
            self._read_policies()
            name = policy_name_from_reference(reference, self._policies_by_key)
        return name

    def _read_org(self) -> dict[str, Any]:
        rows = self.client.invoke("Get-OrganizationConfig", {}, select=ORG_SELECT)
        if not rows:
            raise TenantError("Get-OrganizationConfig returned nothing")
        org = rows[0]
        domain = org.get("Name") or org.get("Identity")
        if isinstance(domain, str) and domain:
            self._initial_domain = domain
            self.client.add_tenant_alias(domain)
        return org

    def read_snapshot(
        self, needs: SnapshotNeeds, progress: ProgressCallback | None = None
    ) -> TenantSnapshot:
        """Read everything `needs` asks for, completely, or raise (never a partial snapshot).

        Requests without groups or SMTP settings: 2 + ceil(users / 1000); 2 with
        `needs.users` False (the users are then not read, and `users` is empty).
        A group the rules name that does not exist is an error (`TenantNotFoundError` naming
        it): matching nobody silently would make a rule quietly do something else.
        """
        # Graph (the sign-in log, Conditional Access) is read beside every Exchange read, on
        # its own thread.
        graph = None
        sign_ins = access = None
        if (needs.sign_in_days is not None and needs.users) or needs.conditional_access:
            graph = ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-graph")
            if needs.sign_in_days is not None and needs.users:
                sign_ins = graph.submit(self._read_sign_ins, needs.sign_in_days)
            if needs.conditional_access:
                access = graph.submit(self._read_conditional_access)
        with gc_paused():  # millions of acyclic objects (the Graph read's too): see pause_gc.py
            try:
                snapshot = self._read_exchange(needs, progress)
            finally:
                if graph is not None:
                    graph.shutdown(wait=True)
        if sign_ins is not None:
            snapshot = dataclasses.replace(
                snapshot, sign_ins=sign_ins.result().joined(snapshot.users)
            )
        if access is not None:
            snapshot = dataclasses.replace(snapshot, conditional_access=access.result())
        return snapshot

    def _read_conditional_access(self) -> ConditionalAccessRead:
        if self.conditional_access_reader is None:
            return ConditionalAccessRead("missing", "this connection has no Graph reader")
        return self.conditional_access_reader.read()

    def _read_sign_ins(self, days: int) -> SignInLog:
        if self.sign_in_reader is None:
            return SignInLog("missing", days, "", "this connection has no Graph reader")
        return self.sign_in_reader.read(days)

    def _read_exchange(
        self, needs: SnapshotNeeds, progress: ProgressCallback | None
    ) -> TenantSnapshot:
        policies = self._read_policies()
        org = self._read_org()
        policies_by_key = self._policies_by_key  # set by _read_policies, once
        default = policy_name_from_reference(
            org.get("DefaultAuthenticationPolicy"), policies_by_key
        )
        smtp_org: OrgSmtp | None = None
        if needs.smtp_org or needs.mailboxes:
            smtp_org = self.read_smtp_org()
        mailboxes: dict[str, SmtpSetting] | None = None
        mailbox_names: dict[str, str] = {}
        if needs.mailboxes and needs.users:
            # The CAS mailbox pages are read beside the Get-User pages, then joined: managing
            # SMTP AUTH costs requests, not twice the waiting. Partitioned, both reads share
            # one pace: together no more pages at once than --read-concurrency.
            with (
                ReadPace(self.client, self.read_concurrency) as pace,
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-cas") as pool,
            ):
                reading = pool.submit(self._read_mailboxes, pace)
                users = self._read_users(needs, policies_by_key, progress, pace)
                mailboxes, mailbox_names = reading.result()
            users = with_mailboxes(users, self._exchange_guids, mailboxes)
        else:
            users = self._read_users(needs, policies_by_key, progress) if needs.users else ()
        without_user: tuple[str, ...] = ()
        if mailbox_names:
            joined = {u.id for u in users} | set(self._exchange_guids.values())
            without_user = tuple(
                sorted(
                    (name for key, name in mailbox_names.items() if key not in joined),
                    key=str.casefold,
                )
            )
        groups: dict[str, frozenset[str]] = {}
        if needs.groups:
            groups = self._read_groups(needs.groups)
        return TenantSnapshot(
            tenant=self.name,
            policies=tuple(sorted(policies, key=lambda p: p.name.casefold())),
            default_policy=default,
            users=users,
            groups=groups,
            smtp_org=smtp_org,
            smtp_org_read=needs.smtp_org or needs.mailboxes,
            mailboxes_read=mailboxes is not None,
            mailboxes_without_user=without_user,
            modern_auth=_flag(org.get("OAuth2ClientProfileEnabled")),
        )

    def _read_users(
        self,
        needs: SnapshotNeeds,
        policies_by_key: Mapping[str, str],
        progress: ProgressCallback | None,
        pace: ReadPace | None = None,
    ) -> tuple[Any, ...]:
        found = UserSet(tuple(sorted(needs.attributes)), policies_by_key, progress)
        self._read_all(USERS, user_select(needs.attributes), found, pace)
        return self._keep_users(found)

    def _read_all(
        self,
        listing: Listing,
        select: Sequence[str],
        found: Sink,
        pace: ReadPace | None,
    ) -> None:
        """Every object of `listing` into `found`: partitioned unless --read-concurrency 1,
        on one cursor when the service refuses the partition filter."""
        restarts = self.max_read_restarts
        if self.read_concurrency > 1:
            try:
                issued = read_partitioned(
                    self.client,
                    listing,
                    select,
                    found,
                    ways=self.read_concurrency,
                    restarts=restarts,
                    pace=pace,
                )
                self.client.stats.add(partitions=issued)
                return
            except ExoInvalidParameterError as exc:
                # The service refused the partition filter: the single cursor reads everything.
                log.warning(
                    "partitioned %s refused (%s); reading on one cursor", listing.cmdlet, exc
                )
        read_cursor(
            self.client,
            listing,
            {"ResultSize": "Unlimited"},
            select,
            found,
            restarts=restarts,
        )

    def _keep_users(self, found: UserSet) -> tuple[Any, ...]:
        if found.without_id:
            # Without an Entra object id the planner could not address them by id.
            log.info(
                "%d Get-User object(s) without ExternalDirectoryObjectId left out",
                found.without_id,
            )
        with self._lock:
            self._exchange_guids = found.guids
        users = list(found.users.values())
        users.sort(key=lambda u: (u.upn.casefold(), u.id))
        return tuple(users)

    def read_smtp_org(self) -> OrgSmtp | None:
        """Get-TransportConfig's SMTP AUTH switch; None when the API does not show it."""
        rows = self.client.invoke(
            "Get-TransportConfig", {}, select=["Identity", "SmtpClientAuthenticationDisabled"]
        )
        value = org_smtp_of(rows[0]) if rows else None
        return None if value is None else ("disabled" if value else "enabled")

    def _read_mailboxes(
        self, pace: ReadPace | None = None
    ) -> tuple[dict[str, SmtpSetting], dict[str, str]]:
        """Every CAS mailbox's SMTP AUTH setting by Entra object id and by Exchange GUID (the
        join keys to Get-User), and each mailbox's name by its first key (to name mailboxes
        no user matches); read like the users (partitioned by Name, repeats dropped, a
        refused cursor restarted)."""
        found = MailboxSet()
        self._read_all(MAILBOXES, CAS_SELECT, found, pace)
        return found.settings, found.names

    def _read_groups(self, names: frozenset[str]) -> dict[str, frozenset[str]]:
        members_cache: dict[str, list[dict[str, Any]]] = {}

        def list_members(group: GroupRef) -> list[dict[str, Any]]:
            key = group.guid.lower() or group.name.casefold()
            if key not in members_cache:
                identity = group.guid or group.name
                if group.recipient_type in UNIFIED_GROUP_TYPES:
                    rows = self.client.invoke(
                        "Get-UnifiedGroupLinks",
                        {"Identity": identity, "LinkType": "Members", "ResultSize": "Unlimited"},
                        select=GROUP_MEMBER_SELECT,
                    )
                else:
                    rows = self.client.invoke(
                        "Get-DistributionGroupMember",
                        {"Identity": identity, "ResultSize": "Unlimited"},
                        select=GROUP_MEMBER_SELECT,
                    )
                # Keep only what expansion needs, not the whole JSON.
                members_cache[key] = [{k: row.get(k) for k in GROUP_MEMBER_SELECT} for row in rows]
            return members_cache[key]

        out: dict[str, frozenset[str]] = {}
        for name in sorted(names, key=str.casefold):
            root = self._resolve_group(name)
            out[name.casefold()] = expand_group(root, list_members)
        return out

    def _resolve_group(self, name: str) -> GroupRef:
        try:
            rows = self.client.invoke(
                "Get-Recipient", {"Identity": name}, select=GROUP_RESOLVE_SELECT
            )
        except ExoNotFoundError:
            rows = []
        # Get-Recipient -Identity <missing> may answer every recipient (round2-facts.md §3):
        # keep only rows that are the group asked for.
        rows = [row for row in rows if _is_named(row, name)]
        if not rows:
            raise TenantNotFoundError(
                f"the group {name!r} named in the rules (member_of) does not exist in tenant "
                f"{self.name}; fix the name in policies.yaml or create the group"
            )
        if len(rows) > 1:
            raise TenantError(
                f"the group name {name!r} matches {len(rows)} recipients; use a unique name"
            )
        row = rows[0]
        rtd = str(row.get("RecipientTypeDetails") or "")
        if not is_group_type(rtd):
            raise TenantError(
                f"{name!r} named in the rules (member_of) is a {rtd or 'recipient'}, not a group"
            )
        return GroupRef(str(row.get("Name") or name), str(row.get("Guid") or ""), rtd)

    def read_users(self, user_ids: Sequence[str]) -> Mapping[str, str | None]:
        """Direct policy of each given user (for verification); missing users are left out."""
        found = self._direct_policies(list(user_ids))
        return {uid: policy for uid, (exists, policy) in found.items() if exists}

    def _direct_policies(self, user_ids: list[str]) -> dict[str, tuple[bool, str | None]]:
        """user id -> (exists, direct policy name)."""
        return self._current(
            user_ids,
            "Get-User",
            ["ExternalDirectoryObjectId", "Guid", "AuthenticationPolicy"],
            lambda row: self._policy_name(row.get("AuthenticationPolicy")),
        )

    def read_mailbox_settings(self, user_ids: Sequence[str]) -> Mapping[str, SmtpSetting]:
        """SMTP AUTH setting of each given user's mailbox (verification); missing ones left out."""
        found = self._mailbox_settings(list(user_ids))
        return {uid: value for uid, (exists, value) in found.items() if exists and value}

    def _mailbox_settings(self, user_ids: list[str]) -> dict[str, tuple[bool, Any]]:
        """user id -> (the mailbox exists, its SMTP AUTH setting)."""
        return self._current(
            user_ids,
            "Get-CASMailbox",
            list(CAS_SELECT),
            lambda row: mailbox_setting_of(row)[1],
        )

    def _current(
        self,
        user_ids: list[str],
        cmdlet: str,
        select: list[str],
        value_of: Callable[[Mapping[str, Any]], Any],
    ) -> dict[str, tuple[bool, Any]]:
        """user id -> (exists, value) read with a Get- cmdlet by identity. Reads go 10 per
        $batch when batching; for many users one paged read of everybody is cheaper (1 request
        per 1000 users)."""
        result: dict[str, tuple[bool, Any]] = {}
        if len(user_ids) > FULL_READ_THRESHOLD:
            wanted = {uid.lower(): uid for uid in user_ids}
            for row in self.client.invoke(cmdlet, {"ResultSize": "Unlimited"}, select=select):
                uid = wanted.get(str(row.get("ExternalDirectoryObjectId") or "").lower())
                if uid is not None:
                    result[uid] = (True, value_of(row))
            for uid in user_ids:
                result.setdefault(uid, (False, None))
            return result
        known: list[tuple[str, str]] = []
        for uid in user_ids:
            guid = self._guid_for(uid)
            if guid:
                known.append((uid, guid))
            else:
                result[uid] = (False, None)
        step = 10 if self.use_batch else 1
        for start in range(0, len(known), step):
            chunk = known[start : start + step]
            items = [BatchItem(cmdlet, {"Identity": g}, select) for _, g in chunk]
            if self.use_batch:
                outcomes = self.client.batch(items)
            else:
                outcomes = [self._single(item) for item in items]
            for (uid, guid), outcome in zip(chunk, outcomes, strict=True):
                if outcome.ok:
                    rows = outcome.value or []
                elif isinstance(outcome.error, ExoNotFoundError):
                    rows = []
                else:
                    # Retry this one alone (the client retries it properly), or raise.
                    rows = self.client.invoke(cmdlet, {"Identity": guid}, select=select)
                # -Identity <missing> may return every object (round2-facts.md §3): only a
                # single row that is the one asked for counts.
                if len(rows) == 1 and _is_user(rows[0], uid, guid):
                    result[uid] = (True, value_of(rows[0]))
                else:
                    result[uid] = (False, None)
        return result

    def _single(self, item: BatchItem) -> BatchOutcome:
        """One call outside $batch, its failure as an outcome (permission problems raise)."""
        try:
            if item.cmdlet.lower().startswith("get-"):
                return BatchOutcome(
                    item, value=self.client.invoke(item.cmdlet, item.parameters, select=item.select)
                )
            return BatchOutcome(item, value=self.client.invoke_write(item.cmdlet, item.parameters))
        except ExoPermissionError:
            raise
        except ExoError as exc:
            return BatchOutcome(item, error=exc)

    def _lookup_user(self, user_id: str) -> dict[str, Any] | None:
        """Get-User by ExternalDirectoryObjectId (when the last snapshot did not see it)."""
        if not _SAFE_ID.match(user_id):
            return None
        rows = self.client.invoke(
            "Get-User",
            {"Filter": f"ExternalDirectoryObjectId -eq '{user_id}'", "ResultSize": 2},
            select=["ExternalDirectoryObjectId", "Guid", "AuthenticationPolicy", "Name"],
        )
        rows = [r for r in rows if _is_user(r, user_id, "")]
        if len(rows) != 1:
            return None
        row = rows[0]
        guid = row.get("Guid")
        if guid:
            with self._lock:
                self._exchange_guids[user_id.lower()] = str(guid).lower()
        return row

    def _guid_for(self, user_id: str) -> str | None:
        guid = self._exchange_guids.get(user_id.lower())
        if guid:
            return guid
        row = self._lookup_user(user_id)
        return str(row["Guid"]).lower() if row and row.get("Guid") else None

    # ------------------------------------------------------------------ policy writes

    def _policy_row(self, name: str) -> dict[str, Any] | None:
        """The policy named `name`, or None. Filters client-side: Get-AuthenticationPolicy
        -Identity <missing> may return every policy (exo-authpolicy-semantics.md §9)."""
        try:
            rows = self.client.invoke(
                "Get-AuthenticationPolicy", {"Identity": name}, select=POLICY_SELECT
            )
        except ExoNotFoundError:
            return None
        for row in rows:
            if str(row.get("Name") or row.get("Identity") or "").casefold() == name.casefold():
                return row
        return None

    def _write(
        self,
        cmdlet: str,
        parameters: Mapping[str, Any],
        took_effect: Callable[[], bool],
        *,
        exists_means_done: bool = False,
        missing_means_done: bool = False,
    ) -> int:
        """Send a write; after an ambiguous failure, re-read and resend only if needed.

        Returns the number of sends. `exists_means_done`: an AlreadyExists answer to a resend
        means the first send took (New-). `missing_means_done`: a NotFound answer to a resend
        means the first send took (Remove-).
        """
        last: ExoConnectionError | None = None
        for send in range(1, self.max_write_rounds + 1):
            try:
                self.client.invoke_write(cmdlet, parameters)
                return send
            except ExoAlreadyExistsError:
                if send > 1 and exists_means_done:
                    return send
                raise
            except ExoNotFoundError:
                if send > 1 and missing_means_done:
                    return send
                raise
            except ExoConnectionError as exc:
                if not exc.maybe_sent:
                    raise
                last = exc
                log.warning("%s: %s; checking whether it took effect", cmdlet, exc)
                if took_effect():
                    return send
        assert last is not None
        raise TenantError(
            f"{cmdlet} did not go through after {self.max_write_rounds} sends: {last}"
        )

    def create_policy(self, name: str, allow: Allowed) -> None:
        """New-AuthenticationPolicy with all 12 switches given explicitly."""
        switches = {p.switch: p.name in allow for p in PROTOCOLS}

        def took_effect() -> bool:
            return self._policy_row(name) is not None

        self._write(
            "New-AuthenticationPolicy",
            {"Name": name, **switches, "Confirm": False},
            took_effect,
            exists_means_done=True,
        )

    def update_policy(self, name: str, switches: Mapping[str, bool]) -> None:
        """Set-AuthenticationPolicy with only the given switches (short protocol names)."""
        params = {PROTOCOL_BY_NAME[p].switch: bool(v) for p, v in switches.items()}

        def took_effect() -> bool:
            row = self._policy_row(name)
            if row is None:
                raise TenantNotFoundError(f"policy {name!r} no longer exists")
            return all(bool(row.get(k)) == v for k, v in params.items())

        self._write(
            "Set-AuthenticationPolicy", {"Identity": name, **params, "Confirm": False}, took_effect
        )

    def remove_policy(self, name: str) -> None:
        """Remove-AuthenticationPolicy; TenantNotFoundError when it is already gone."""

        def took_effect() -> bool:
            return self._policy_row(name) is None

        self._write(
            "Remove-AuthenticationPolicy",
            {"Identity": name, "Confirm": False},
            took_effect,
            missing_means_done=True,
        )
        # Its name, GUID and DN name nothing any more: a link that still carries them is
        # dangling, and must read back as such, not as the policy.
        with self._lock:
            self._policies_by_key = {
                k: v for k, v in self._policies_by_key.items() if v.casefold() != name.casefold()
            }

    def set_default_policy(self, name: str | None) -> None:
        """Set-OrganizationConfig -DefaultAuthenticationPolicy (None clears it)."""

        def took_effect() -> bool:
            current = self._policy_name(self._read_org().get("DefaultAuthenticationPolicy"))
            return _same_name(current, name)

        self._write(
            "Set-OrganizationConfig",
            {"DefaultAuthenticationPolicy": name, "Confirm": False},
            took_effect,
        )

    def set_smtp_org(self, setting: OrgSmtp) -> None:
        """Set-TransportConfig -SmtpClientAuthenticationDisabled ($true: disabled)."""

        def took_effect() -> bool:
            return self.read_smtp_org() == setting

        self._write(
            "Set-TransportConfig",
            {"SmtpClientAuthenticationDisabled": setting == "disabled", "Confirm": False},
            took_effect,
        )

    # ------------------------------------------------------------------ user writes

    def set_user_policies(self, writes: Sequence[UserWrite]) -> list[WriteResult]:
        """Write user assignments (Set-User); one result per write, in order.

        Up to 10 go in one $batch (unless batching is off). Members answered with throttling
        are sent again after Retry-After, up to the retry policy's throttle budget and deadline;
        members that failed transiently or ambiguously (checked by re-reading first) up to
        `max_write_rounds` sends. See the module docstring for the throttling contract.
        """
        stamp = sts_timestamp()
        return self._write_recipients(
            writes,
            "Set-User",
            lambda write, guid: _set_user_parameters(write, guid, stamp),  # type: ignore[arg-type]
            self._direct_policies,
            lambda current, write: _same_name(current, write.policy),  # type: ignore[union-attr]
        )

    def set_mailbox_smtp(self, writes: Sequence[MailboxWrite]) -> list[WriteResult]:
        """Write mailboxes' SMTP AUTH settings (Set-CASMailbox), exactly as set_user_policies
        writes policies: batched, retried, ambiguous sends checked by reading back."""
        return self._write_recipients(
            writes,
            "Set-CASMailbox",
            lambda write, guid: {
                "Identity": guid,
                "SmtpClientAuthenticationDisabled": smtp_disabled_value(write.setting),  # type: ignore[union-attr]
                "Confirm": False,
            },
            self._mailbox_settings,
            lambda current, write: current == write.setting,  # type: ignore[union-attr]
        )

    def _write_recipients(
        self,
        writes: Sequence[UserWrite | MailboxWrite],
        cmdlet: str,
        parameters: Callable[[UserWrite | MailboxWrite, str], dict[str, Any]],
        current: Callable[[list[str]], dict[str, tuple[bool, Any]]],
        holds: Callable[[Any, UserWrite | MailboxWrite], bool],
    ) -> list[WriteResult]:
        """The one write loop for per-recipient cmdlets (see set_user_policies)."""
        results: list[WriteResult | None] = [None] * len(writes)
        sends = [0] * len(writes)
        throttled_rounds = [0] * len(writes)
        last_error: dict[int, ExoError] = {}
        guids: dict[int, str] = {}
        pending: list[int] = []
        for index, write in enumerate(writes):
            guid = self._guid_for(write.user_id)
            if guid is None:
                results[index] = WriteResult(
                    write, "not_found", f"user {write.user_id} does not exist in the tenant", 0
                )
            else:
                guids[index] = guid
                pending.append(index)
        policy = self.client.retry
        started = policy.clock()
        round_number = 0
        while pending:
            round_number += 1
            outcomes = self._send_writes(
                [BatchItem(cmdlet, parameters(writes[i], guids[i])) for i in pending]
            )
            retry_next: list[int] = []
            ambiguous: list[int] = []
            missing: list[int] = []
            wait = 0.0
            for index, outcome in zip(pending, outcomes, strict=True):
                sends[index] += 1
                if outcome.ok:
                    results[index] = WriteResult(writes[index], "applied", "", sends[index])
                    continue
                error = outcome.error
                assert error is not None
                if isinstance(error, ExoPermissionError):
                    raise error  # the app may not write at all: one error, not one per user
                last_error[index] = error
                if isinstance(error, ExoNotFoundError):
                    missing.append(index)  # the user, or the policy it names, is gone
                elif isinstance(error, ExoConnectionError) and error.maybe_sent:
                    ambiguous.append(index)
                elif isinstance(error, ExoThrottledError):
                    throttled_rounds[index] += 1
                    retry_next.append(index)
                    wait = max(wait, policy.throttle_delay(error.retry_after, round_number))
                elif error.retryable:
                    retry_next.append(index)
                    wait = max(wait, policy.backoff(round_number))
                else:
                    results[index] = WriteResult(writes[index], "failed", str(error), sends[index])
            if missing:
                state = current([writes[i].user_id for i in missing])
                for index in missing:
                    exists, _ = state.get(writes[index].user_id, (False, None))
                    status: WriteStatus = "failed" if exists else "not_found"
                    results[index] = WriteResult(
                        writes[index], status, str(last_error[index]), sends[index]
                    )
            if ambiguous:
                state = current([writes[i].user_id for i in ambiguous])
                for index in ambiguous:
                    exists, now = state.get(writes[index].user_id, (False, None))
                    if not exists:
                        results[index] = WriteResult(
                            writes[index], "not_found", "the user no longer exists", sends[index]
                        )
                    elif holds(now, writes[index]):
                        results[index] = WriteResult(writes[index], "applied", "", sends[index])
                    else:
                        retry_next.append(index)
            # Who may go again: throttled ones within the throttle budget, the others within
            # max_write_rounds sends; everybody within the deadline and a bearable wait.
            out_of_time = policy.clock() - started + wait > policy.deadline
            bearable = wait <= policy.max_retry_after and not out_of_time

            def may_go_again(index: int) -> bool:
                if isinstance(last_error.get(index), ExoThrottledError):
                    return throttled_rounds[index] < policy.max_throttle_attempts
                return sends[index] - throttled_rounds[index] < self.max_write_rounds

            # The others stay without a result and are settled below.
            pending = [i for i in sorted(retry_next) if bearable and may_go_again(i)]
            if pending:
                self._sleep(wait)
        leftovers = [i for i, r in enumerate(results) if r is None and i in guids]
        if leftovers:
            throttled = [
                e for i in leftovers if isinstance(e := last_error.get(i), ExoThrottledError)
            ]
            if len(throttled) == len(writes):  # nothing of the group was applied
                waits = [e.retry_after for e in throttled if e.retry_after is not None]
                raise ExoThrottledError(
                    f"Exchange kept throttling {cmdlet} for {len(writes)} user(s); nothing of "
                    "this group was applied",
                    retry_after=max(waits) if waits else None,
                    status=429,
                    cmdlet=cmdlet,
                )
            for index in leftovers:
                text = str(last_error.get(index) or "no answer")
                results[index] = WriteResult(writes[index], "failed", text, sends[index])
        return [r for r in results if r is not None]

    def _send_writes(self, batch_items: list[BatchItem]) -> list[BatchOutcome]:
        if not self.use_batch:
            return [self._single(item) for item in batch_items]
        outcomes: list[BatchOutcome] = []
        for start in range(0, len(batch_items), 10):
            chunk = batch_items[start : start + 10]
            try:
                outcomes.extend(self.client.batch(chunk))
            except ExoPermissionError:
                raise
            except ExoError as exc:  # the $batch itself failed (after the client's retries)
                outcomes.extend(BatchOutcome(item, error=exc) for item in chunk)
        return outcomes

    def batches_for(self, count: int) -> int:
        """Requests `set_user_policies` needs for `count` writes without retries."""
        return math.ceil(count / 10) if self.use_batch else count


def _set_user_parameters(write: UserWrite, guid: str, stamp: str) -> dict[str, Any]:
    params: dict[str, Any] = {
        "Identity": guid,
        "AuthenticationPolicy": write.policy,
        "Confirm": False,
    }
    if write.revoke_sessions:
        # In the same Set-User call, so the new policy applies within ~30 minutes (§3.2).
        params["STSRefreshTokensValidFrom"] = stamp
    return params


def _is_user(row: Mapping[str, Any], user_id: str, guid: str) -> bool:
    """The row is the user asked for: its Entra object id or its Exchange GUID matches."""
    edoid = str(row.get("ExternalDirectoryObjectId") or "").lower()
    row_guid = str(row.get("Guid") or "").lower()
    return (bool(user_id) and edoid == user_id.lower()) or (bool(guid) and row_guid == guid.lower())


def _is_named(row: Mapping[str, Any], name: str) -> bool:
    """The recipient row is the one `name` asked for (name, display name, address, GUID...)."""
    folded = name.strip().casefold()
    return any(
        str(row.get(key) or "").casefold() == folded
        for key in (
            "Name",
            "DisplayName",
            "Identity",
            "Alias",
            "PrimarySmtpAddress",
            "Guid",
            "ExternalDirectoryObjectId",
            "DistinguishedName",
        )
    )


def _same_name(current: str | None, wanted: str | None) -> bool:
    if current is None or wanted is None:
        return current is None and wanted is None
    return current.casefold() == wanted.casefold()


def _flag(value: Any) -> bool | None:
    """A Boolean property as read (True/False, or "True"/"False" text); None when not shown."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None
