"""Execute a plan against a tenant: phases in plan order, prerequisites, bounded concurrency.

The promise: nothing is written that the plan did not show; every planned change ends applied,
failed (with Exchange's message), skipped (with the reason) or not_found; and because the
next apply re-plans from the live tenant, a rerun finishes whatever this run did not.

This module is pure orchestration over the `Tenant` protocol: no HTTP, no printing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Protocol

from reconciler.apply.audit import AuditSink, NullAudit, intent_record, outcome_record, utc_now
from reconciler.apply.concurrency import AimdLimit
from reconciler.apply.report import (
    ApplyReport,
    ChangeOutcome,
    OutcomeStatus,
    describe_change,
)
from reconciler.errors import (
    AuthenticationError,
    AuthPolicyError,
    TenantNotFoundError,
    TenantThrottledError,
)
from reconciler.model import (
    PHASE_ORDER,
    Change,
    DefaultChange,
    MailboxSmtpChange,
    Plan,
    PolicyCreate,
    PolicyDelete,
    PolicyReplace,
    PolicyUpdate,
    ReplaceResume,
    SmtpOrgChange,
    UserChange,
    holding_name,
)
from reconciler.tenant.base import MailboxWrite, Tenant, UserWrite, WriteResult

log = logging.getLogger(__name__)

NULL_REFERENCE_TEXT = "Object reference not set to an instance of an object"
CONCURRENCY_TEXT = "maximum number of concurrent requests"
BATCH_SIZE = 10  # the most requests one $batch may carry
MAX_THROTTLED_RESENDS = 8  # per batch, after the client's own retries gave up
INTERRUPTED = "not started: apply was interrupted"

PHASE_NAMES: Mapping[int, str] = {
    PHASE_ORDER["policy_create"]: "policy creates",
    PHASE_ORDER["policy_update"]: "policy updates",
    PHASE_ORDER["default_change"]: "default policy",
    PHASE_ORDER["smtp_org_change"]: "organization SMTP AUTH",
    PHASE_ORDER["mailbox_smtp_change"]: "mailbox SMTP AUTH",
    PHASE_ORDER["user_assign"]: "user assignments",
    PHASE_ORDER["policy_delete"]: "policy deletes",
}


class ApplyProgress(Protocol):
    """What the executor tells a progress display. All calls come from the calling thread."""

    def start_phase(self, phase: str, total: int) -> None: ...

    def advance(self, done: int, retries: int) -> None:
        """`done` more changes of this phase finished; `retries` is the run's total so far."""
        ...

    def end_phase(self, phase: str, counts: Mapping[str, int]) -> None: ...


class NoProgress:
    """A progress display that shows nothing."""

    def start_phase(self, phase: str, total: int) -> None:
        return None

    def advance(self, done: int, retries: int) -> None:
        return None

    def end_phase(self, phase: str, counts: Mapping[str, int]) -> None:
        return None


def is_null_reference_error(exc: BaseException) -> bool:
    """Exchange's known Set-AuthenticationPolicy bug (Microsoft365DSC#4819)."""
    return NULL_REFERENCE_TEXT.casefold() in str(exc).casefold()


def is_throttle_error(exc: BaseException) -> bool:
    """429 or the per-tenant concurrency error, surfaced after the client's own retries."""
    return isinstance(exc, TenantThrottledError) or CONCURRENCY_TEXT in str(exc).casefold()


def error_text(exc: BaseException) -> str:
    """The message for a failed call: Exchange's text for our errors, else with the type."""
    if isinstance(exc, AuthPolicyError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def null_reference_message(policy: str, exchange_message: str) -> str:
    return (
        f"Exchange failed Set-AuthenticationPolicy for '{policy}' with a known service bug "
        f"({exchange_message.strip()}); nothing was changed for this policy. Rerun "
        "'authpolicy apply --allow-replace' to recreate it (remove, create with the same name "
        "and switches, reassign its users and the default); it plans again and shows the "
        "replace before anything is done."
    )


def execute_plan(
    plan: Plan,
    tenant: Tenant,
    *,
    revoke_sessions: bool,
    audit: AuditSink | None = None,
    allow_replace: bool = False,
    max_concurrency: int = 16,
    initial_concurrency: int = 4,
    progress: ApplyProgress | None = None,
    stop: threading.Event | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ApplyReport:
    """Make the plan's changes, in plan order, and report one outcome per change.

    - Phases run in plan order; within the user phase, batches of up to 10 writes run
      concurrently under an AIMD limit (start `initial_concurrency`, at most `max_concurrency`).
    - A change whose prerequisite did not succeed is skipped with the reason; independent
      changes continue.
    - `stop` (set on Ctrl-C) stops scheduling: in-flight calls finish, everything not started
      is reported skipped and `report.interrupted` is set.
    - A `policy_replace` runs only with `allow_replace` (the plan showed it; this flag is the
      admin's consent to remove and recreate).
    """
    run = _Run(
        plan=plan,
        tenant=tenant,
        revoke_sessions=revoke_sessions,
        audit=audit or NullAudit(),
        allow_replace=allow_replace,
        limit=AimdLimit(initial=initial_concurrency, maximum=max_concurrency),
        progress=progress or NoProgress(),
        stop=stop or threading.Event(),
        sleep=sleep,
    )
    return run.execute()


@dataclass
class _Batch:
    indices: list[int]
    resends: int = 0


class _Run:
    def __init__(
        self,
        *,
        plan: Plan,
        tenant: Tenant,
        revoke_sessions: bool,
        audit: AuditSink,
        allow_replace: bool,
        limit: AimdLimit,
        progress: ApplyProgress,
        stop: threading.Event,
        sleep: Callable[[float], None],
    ) -> None:
        self.plan = plan
        self.changes = plan.changes
        self.tenant = tenant
        self.revoke_sessions = revoke_sessions
        self.audit = audit
        self.allow_replace = allow_replace
        self.limit = limit
        self.progress = progress
        self.stop = stop
        self.sleep = sleep
        self.outcomes: dict[int, ChangeOutcome] = {}
        self.report = ApplyReport()
        # Set by the first write Exchange refuses for want of a role or permission: nothing
        # more is sent, since every other write would be refused the same way.
        self.denied: str | None = None

    def _deny(self, exc: BaseException) -> None:
        if self.denied is None:
            self.denied = error_text(exc)
            self.report.denied = self.denied
            log.error("stopping: %s", self.denied)

    def _not_sent(self) -> str:
        """The skip reason of every change after the refusal (the summary counts them)."""
        if self.report.audit_error is not None:
            return f"not sent: the audit log could not be written ({self.report.audit_error})"
        return f"not sent: an earlier write was refused ({self.denied})"

    def _intend(self, indices: Sequence[int]) -> bool:
        """Write the intents of these changes before they are sent (write-ahead audit). False,
        and nothing more is ever sent, when the audit log cannot take them."""
        try:
            self.audit.intend([intent_record(self.changes[i]) for i in indices])
        except (OSError, ValueError) as exc:  # ValueError: the file was closed under us
            reason = getattr(exc, "strerror", None) or str(exc)
            if self.denied is None:
                self.report.audit_error = reason
                self.denied = f"the audit log could not be written ({reason})"
                log.error("stopping: the audit log could not be written: %s", reason)
            return False
        return True

    def _client_retries(self) -> int:
        """Re-sends the tenant client made inside its own calls (503, resets, 429, 401)."""
        counter = getattr(self.tenant, "request_retries", None)
        return int(counter()) if callable(counter) else 0

    # ------------------------------------------------------------------ driver

    def execute(self) -> ApplyReport:
        client_retries_before = self._client_retries()
        phases: dict[int, list[int]] = {}
        for index, change in enumerate(self.changes):
            phases.setdefault(PHASE_ORDER[change.kind], []).append(index)
        for phase in sorted(phases):
            indices = phases[phase]
            name = PHASE_NAMES.get(phase, f"phase {phase}")
            self.progress.start_phase(name, len(indices))
            if phase in (PHASE_ORDER["user_assign"], PHASE_ORDER["mailbox_smtp_change"]):
                self._run_user_phase(indices)
            else:
                for index in indices:
                    if self.stop.is_set():
                        self._finish(index, "skipped", INTERRUPTED)
                    else:
                        self._run_single(index)
            counts: dict[str, int] = {}
            for index in indices:
                status = self.outcomes[index].status
                counts[status] = counts.get(status, 0) + 1
            self.progress.end_phase(name, counts)
        self.report.interrupted = self.stop.is_set() and any(
            o.message == INTERRUPTED for o in self.outcomes.values()
        )
        self.report.outcomes = [self.outcomes[i] for i in range(len(self.changes))]
        self.report.retries += self._client_retries() - client_retries_before
        return self.report

    def _finish(
        self,
        index: int,
        status: OutcomeStatus,
        message: str = "",
        *,
        attempts: int = 0,
        ts_start: str = "",
        ts_end: str = "",
    ) -> None:
        """Record a change's final outcome: report, audit line, progress tick."""
        change = self.changes[index]
        ts_end = ts_end or (utc_now() if ts_start else "")
        self.outcomes[index] = ChangeOutcome(change, status, message, attempts, ts_start, ts_end)
        self.audit.record(
            outcome_record(
                change,
                status,
                message=message,
                attempts=attempts,
                ts_start=ts_start,
                ts_end=ts_end,
            )
        )
        if status == "failed":
            log.warning("%s failed: %s", describe_change(change), message)
        self.progress.advance(1, self.report.retries)

    # ------------------------------------------------------------------ prerequisites

    def _outcome_of(
        self, kinds: tuple[str, ...], policy: str
    ) -> tuple[Change, ChangeOutcome] | None:
        folded = policy.casefold()
        for index, outcome in self.outcomes.items():
            change = self.changes[index]
            if change.kind in kinds and getattr(change, "policy", "").casefold() == folded:
                return change, outcome
        return None

    def _skip_reason(self, change: Change) -> str | None:
        """Why `change` must not run because something it depends on did not succeed."""
        if self.denied is not None:
            return self._not_sent()
        target: str | None = None
        if isinstance(change, UserChange | DefaultChange):
            target = change.after
        elif isinstance(change, ReplaceResume):
            target = change.policy
        if target is not None:
            found = self._outcome_of(("policy_create", "policy_replace"), target)
            if found is not None and found[1].status != "applied":
                prereq, outcome = found
                return f"skipped because {describe_change(prereq)} {_past(outcome.status)}"
        if isinstance(change, PolicyDelete):
            folded = change.policy.casefold()
            blocking = [
                self.changes[i]
                for i, o in self.outcomes.items()
                if o.status not in ("applied", "not_found")
                and isinstance(self.changes[i], UserChange | DefaultChange)
                and (getattr(self.changes[i], "before", None) or "").casefold() == folded
            ]
            if blocking:
                first = describe_change(blocking[0])
                return (
                    f"skipped because {len(blocking)} change(s) moving off '{change.policy}' "
                    f"did not succeed (first: {first}); deleting it now would orphan them"
                )
        return None

    # ------------------------------------------------------------------ single changes

    def _run_single(self, index: int) -> None:
        change = self.changes[index]
        reason = self._skip_reason(change)
        if reason is not None:
            self._finish(index, "skipped", reason)
            return
        if not self._intend([index]):
            self._finish(index, "skipped", self._not_sent())
            return
        if isinstance(change, PolicyReplace):
            self._run_replace(index, change)
            return
        if isinstance(change, ReplaceResume):
            self._run_resume(index, change)
            return
        started = utc_now()
        try:
            self._write_single(change)
        except TenantNotFoundError as exc:
            status: OutcomeStatus = "not_found"
            message = error_text(exc)
        except AuthenticationError as exc:
            status, message = "failed", error_text(exc)
            self._deny(exc)
        except Exception as exc:  # every failure is reported, never raised: others continue
            status = "failed"
            message = error_text(exc)
            if isinstance(change, PolicyUpdate) and is_null_reference_error(exc):
                message = null_reference_message(change.policy, message)
        else:
            status, message = "applied", ""
        self._finish(index, status, message, attempts=1, ts_start=started)

    def _write_single(self, change: Change) -> None:
        self.report.writes += 1
        if isinstance(change, PolicyCreate):
            self.tenant.create_policy(change.policy, change.after)
        elif isinstance(change, PolicyUpdate):
            self.tenant.update_policy(change.policy, {f.protocol: f.after for f in change.fields})
        elif isinstance(change, PolicyDelete):
            self.tenant.remove_policy(change.policy)
        elif isinstance(change, DefaultChange):
            self.tenant.set_default_policy(change.after)
        elif isinstance(change, SmtpOrgChange):
            self.tenant.set_smtp_org(change.after)
        else:  # pragma: no cover - user changes and replaces have their own paths
            raise AssertionError(f"unexpected change kind {change.kind}")

    # ------------------------------------------------------------------ replace

    def _run_replace(self, index: int, change: PolicyReplace) -> None:
        """Remove and recreate a policy, its holders and the default kept protected throughout.

        Steps (each one an audit record): create the holding policy (reserved name, the
        protection the policy has now and will have, whichever blocks more); move every holder
        and the default onto it; remove the policy; create it again; move them all back; remove
        the holding policy. Killed anywhere in between, the tenant itself shows who must go
        back: the next plan finds the holding policy and finishes the replace first
        (`replace_resume`). Nobody is without a policy at any point.
        """
        if not self.allow_replace:
            self._finish(
                index,
                "skipped",
                f"replacing '{change.policy}' removes and recreates it; rerun with --allow-replace",
            )
            return
        started = utc_now()
        name = change.policy
        holding = holding_name(name)
        attempts = 0
        before = set(change.after)
        for field in change.fields:
            (before.add if field.before else before.discard)(field.protocol)
        protection = frozenset(before & change.after)  # blocks whatever either blocks

        def step(label: str, call: Callable[[], None]) -> str | None:
            nonlocal attempts
            attempts += 1
            step_start = utc_now()
            self.report.writes += 1
            try:
                call()
            except Exception as exc:
                message = error_text(exc)
                self._audit_step(change, label, "failed", message, 1, step_start)
                return message
            self._audit_step(change, label, "applied", "", 1, step_start)
            return None

        everyone = change.holders + change.moved_holders
        names_default = change.is_default or change.default_moves

        def move(label: str, target: str) -> str | None:
            nonlocal attempts
            problems = self._move_users(change, label, everyone, target, started)
            attempts += len(everyone)
            if names_default and not problems:
                failed = step(f"{label}_default", lambda: self.tenant.set_default_policy(target))
                if failed:
                    problems.append(f"the default: {failed}")
            return problems[0] if problems else None

        def fail(message: str) -> None:
            self._finish(index, "failed", message, attempts=attempts, ts_start=started)

        failure = step("hold_create", lambda: self.tenant.create_policy(holding, protection))
        if failure is not None:
            fail(f"the holding policy '{holding}' could not be created, nothing changed: {failure}")
            return
        failure = move("hold", holding)
        if failure is None:
            failure = step("remove", lambda: self.tenant.remove_policy(name))
        if failure is not None:
            # The old policy is still there: put everyone back, drop the holding policy.
            undo = move("unhold", name)
            released = undo or step("release", lambda: self.tenant.remove_policy(holding))
            left = f"; undoing failed too ({released}): rerun apply to finish" if released else ""
            fail(
                "moving its users aside or removing it failed, the policy is unchanged: "
                f"{failure}{left}"
            )
            return
        failure = step("create", lambda: self.tenant.create_policy(name, change.after))
        if failure is not None:
            fail(
                f"'{name}' was removed but could not be created again: {failure}; its users"
                f"{' and the default' if names_default else ''} are on '{holding}' (the same "
                "protection). Rerun apply to finish."
            )
            return
        failure = move("reassign", name)
        if failure is None:
            failure = step("release", lambda: self.tenant.remove_policy(holding))
        if failure is not None:
            fail(f"'{name}' was recreated but a step failed ({failure}); rerun apply to finish")
        else:
            self._finish(index, "applied", attempts=attempts, ts_start=started)

    def _run_resume(self, index: int, change: ReplaceResume) -> None:
        """Finish an earlier replace: holders and the default back from the holding policy."""
        started = utc_now()
        problems = self._move_users(change, "reassign", change.holders, change.policy, started)
        if change.default and not problems:
            try:
                self.report.writes += 1
                self.tenant.set_default_policy(change.policy)
                self._audit_step(change, "restore_default", "applied", "", 1, started)
            except Exception as exc:
                problems.append(f"the default: {error_text(exc)}")
        if not problems:
            try:
                self.report.writes += 1
                self.tenant.remove_policy(change.holding)
                self._audit_step(change, "release", "applied", "", 1, started)
            except TenantNotFoundError:
                pass  # gone already
            except Exception as exc:
                problems.append(f"removing '{change.holding}': {error_text(exc)}")
        if problems:
            self._finish(
                index,
                "failed",
                f"{len(problems)} step(s) failed (first: {problems[0]}); the users stay on "
                f"'{change.holding}' (the same protection): rerun apply to finish",
                attempts=len(change.holders) + 2,
                ts_start=started,
            )
        else:
            self._finish(index, "applied", attempts=len(change.holders) + 2, ts_start=started)

    def _move_users(
        self,
        change: PolicyReplace | ReplaceResume,
        label: str,
        users: tuple[str, ...],
        target: str,
        started: str,
    ) -> list[str]:
        """Point `users` at `target`, 10 per batch; one audit record per user; the problems."""
        problems: list[str] = []
        for start in range(0, len(users), BATCH_SIZE):
            chunk = users[start : start + BATCH_SIZE]
            for result in self._write_batch_with_resends([UserWrite(u, target) for u in chunk]):
                self._audit_step(
                    change,
                    label,
                    result.status,
                    result.message,
                    result.attempts,
                    started,
                    {"user_id": result.write.user_id},
                )
                if result.status == "failed":
                    problems.append(f"{result.write.user_id}: {result.message}")
        return problems

    def _audit_step(
        self,
        change: PolicyReplace | ReplaceResume,
        step: str,
        result: str,
        message: str,
        attempts: int,
        ts_start: str,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.audit.record(
            outcome_record(
                change,
                result,
                message=message,
                attempts=attempts,
                ts_start=ts_start,
                ts_end=utc_now(),
                step=step,
                extra=extra,
            )
        )

    def _write_batch_with_resends(self, writes: Sequence[UserWrite]) -> list[WriteResult]:
        """One batch, sent again (after Retry-After) while Exchange keeps throttling it."""
        for resend in range(MAX_THROTTLED_RESENDS + 1):
            self.report.writes += len(writes)
            try:
                results = self.tenant.set_user_policies(writes)
            except Exception as exc:
                if is_throttle_error(exc) and resend < MAX_THROTTLED_RESENDS:
                    self.report.retries += 1
                    self.sleep(_retry_after(exc, resend))
                    continue
                return [WriteResult(w, "failed", error_text(exc), 1) for w in writes]
            self.report.retries += sum(max(0, r.attempts - 1) for r in results)
            return _complete_results(writes, results)
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ user phase

    def _run_user_phase(self, indices: list[int]) -> None:
        """Set-User (policies) or Set-CASMailbox (SMTP AUTH) writes: one phase holds one kind,
        sent 10 per $batch, concurrently under the AIMD limit."""
        ready: list[int] = []
        for index in indices:
            reason = self._skip_reason(self.changes[index])
            if reason is not None:
                self._finish(index, "skipped", reason)
            else:
                ready.append(index)
        pending = deque(_Batch(ready[i : i + BATCH_SIZE]) for i in range(0, len(ready), BATCH_SIZE))
        in_flight: dict[Future[list[WriteResult]], tuple[_Batch, int, str]] = {}
        not_before = 0.0  # monotonic time before which nothing new is sent (Retry-After)
        with ThreadPoolExecutor(
            max_workers=self.limit.maximum, thread_name_prefix="apply-users"
        ) as pool:
            while pending or in_flight:
                now = time.monotonic()
                while (
                    pending
                    and not self.stop.is_set()
                    and self.denied is None
                    and now >= not_before
                    and len(in_flight) < self.limit.limit
                ):
                    batch = pending.popleft()
                    if batch.resends == 0 and not self._intend(batch.indices):
                        pending.appendleft(batch)  # reported below as not sent
                        break
                    writes = [self._user_write(i) for i in batch.indices]
                    self.report.writes += len(writes)
                    future = pool.submit(self._send, writes)
                    in_flight[future] = (batch, self.limit.epoch, utc_now())
                if not in_flight:
                    if self.stop.is_set() or self.denied is not None:
                        break
                    # Waiting out Retry-After; a Ctrl-C ends the wait at once.
                    self.stop.wait(min(0.5, max(0.0, not_before - time.monotonic())))
                    continue
                # A timeout keeps the main thread responsive to Ctrl-C while calls run.
                done, _ = wait(in_flight, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in done:
                    batch, epoch, started = in_flight.pop(future)
                    delay = self._settle_batch(future, batch, epoch, started, pending)
                    if delay is not None:
                        not_before = max(not_before, time.monotonic() + delay)
        for batch in pending:
            for index in batch.indices:
                if self.denied is not None:
                    self._finish(index, "skipped", self._not_sent())
                else:
                    self._finish(index, "skipped", INTERRUPTED)

    def _user_write(self, index: int) -> UserWrite | MailboxWrite:
        change = self.changes[index]
        if isinstance(change, MailboxSmtpChange):
            return MailboxWrite(change.user_id, change.after)
        assert isinstance(change, UserChange)
        return UserWrite(change.user_id, change.after, revoke_sessions=self.revoke_sessions)

    def _send(self, writes: list[UserWrite | MailboxWrite]) -> list[WriteResult]:
        """One group of one kind of per-recipient writes (a phase never mixes them)."""
        if all(isinstance(w, MailboxWrite) for w in writes):
            return self.tenant.set_mailbox_smtp([w for w in writes if isinstance(w, MailboxWrite)])
        return self.tenant.set_user_policies([w for w in writes if isinstance(w, UserWrite)])

    def _settle_batch(
        self,
        future: Future[list[WriteResult]],
        batch: _Batch,
        epoch: int,
        started: str,
        pending: deque[_Batch],
    ) -> float | None:
        """Record a finished batch; returns a delay to respect before sending more, if any."""
        exc = future.exception()
        if exc is not None:
            if is_throttle_error(exc) and batch.resends < MAX_THROTTLED_RESENDS:
                # Nothing in the batch was applied: send it again, first, once the limit allows.
                self.limit.on_throttle(epoch)
                self.report.retries += 1
                batch.resends += 1
                pending.appendleft(batch)
                return _retry_after(exc, batch.resends - 1)
            if is_throttle_error(exc):
                self.limit.on_throttle(epoch)
            if isinstance(exc, AuthenticationError):
                self._deny(exc)
            message = error_text(exc)
            for index in batch.indices:
                self._finish(index, "failed", message, attempts=1, ts_start=started)
            return None
        writes = [self._user_write(i) for i in batch.indices]
        results = _complete_results(writes, future.result())
        retried = sum(max(0, r.attempts - 1) for r in results)
        self.report.retries += retried
        if retried:
            self.limit.on_throttle(epoch)
        else:
            self.limit.on_success(epoch)
        ended = utc_now()
        for index, result in zip(batch.indices, results, strict=True):
            self._finish(
                index,
                result.status,
                result.message,
                attempts=result.attempts + batch.resends,
                ts_start=started,
                ts_end=ended,
            )
        return None


def _complete_results(
    writes: Sequence[UserWrite | MailboxWrite], results: Sequence[WriteResult]
) -> list[WriteResult]:
    """Results in the order of `writes`; a write the client gave no answer for counts as failed."""
    by_id = {r.write.user_id: r for r in results}
    return [
        by_id.get(w.user_id) or WriteResult(w, "failed", "no result returned for this write", 1)
        for w in writes
    ]


def _retry_after(exc: BaseException, resend: int) -> float:
    """Exchange's Retry-After when it gave one, else a short exponential backoff."""
    value = getattr(exc, "retry_after", None)
    if isinstance(value, int | float) and value >= 0:
        return float(value)
    return min(30.0, 0.5 * (2**resend))


def _past(status: str) -> str:
    return {"failed": "failed", "skipped": "was skipped", "not_found": "found nothing"}.get(
        status, status
    )
