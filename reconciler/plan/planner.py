"""make_plan: the pure function from (DesiredState, TenantSnapshot) to a Plan.

Effective policy everywhere: the user's direct policy, else the organization default, else
none ("no policy layer": Basic auth is not blocked by a policy). Policy names compare
case-insensitively; changes name policies the way the file declares them (user changes'
`after`, the default) or the way the tenant spells them (updates and deletes of tenant objects).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gc
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from itertools import compress
from operator import itemgetter
from typing import Literal

from reconciler.desired.semantics import code_points, look_alike_key
from reconciler.errors import PlanError
from reconciler.model import (
    HOLDING_PREFIX,
    PHASE_ORDER,
    PROTOCOL_NAMES,
    PROTOCOLS,
    Allowed,
    BasicSmtp,
    Change,
    DefaultChange,
    DesiredState,
    FieldChange,
    Guard,
    MailboxSmtpChange,
    OrgSmtp,
    Plan,
    PolicyCreate,
    PolicyDelete,
    PolicyReplace,
    PolicySpec,
    PolicyUpdate,
    ReplaceResume,
    Rule,
    SmtpOrgChange,
    SmtpSetting,
    TenantPolicy,
    TenantSnapshot,
    TenantUser,
    UserChange,
    basic_smtp,
    changed_user_ids,
    holding_name,
)
from reconciler.plan.columns import user_columns
from reconciler.plan.fingerprint import fingerprint_of, input_digests, user_fields
from reconciler.plan.rules import RuleEvaluation, UserIndex, evaluate_rules
from reconciler.render.escape import visible

ALL_ALLOWED: Allowed = frozenset(PROTOCOL_NAMES)
UNMATCHED_RULE = "(unmatched)"  # the `rule` of a change made by `assignments.unmatched: clear`
NAMES_SHOWN = 10  # how many users an error or warning names before "and N more"
EXPIRY_NOTICE_DAYS = 30  # from this many days before a rule expires, every plan warns


def utc_today() -> dt.date:
    """Today's date in UTC: the date a plan is made for unless a caller pins one."""
    return dt.datetime.now(dt.UTC).date()


def _fold(name: str | None) -> str | None:
    return None if name is None else name.casefold()


def quoted(name: str | None) -> str:
    """A policy/rule name for a message: in double quotes; None reads as (none).

    Tenant-side names may hold line breaks or bidi controls: shown escaped, so an error
    stays one line and reads as what it is."""
    return "(none)" if name is None else f'"{visible(name)}"'


def name_list(names: Sequence[str], shown: int = NAMES_SHOWN) -> str:
    """`a, b, c` or `a, b, ... and 7 more`: who, without flooding a one-line message."""
    listed = ", ".join(visible(n) for n in names[:shown])
    rest = len(names) - shown
    return f"{listed} and {rest} more" if rest > 0 else listed


def plural(count: int, word: str) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What the plan does to every user with one (direct policy, governing rule) pair."""

    # (kind, before, after, rule) of their UserChange; None: they do not change
    change: tuple[Literal["user_assign", "user_clear"], str | None, str | None, str] | None
    weakens: bool
    dangling: bool  # the direct policy is a link to a policy the tenant does not list
    unmatched: bool  # no rule matched, and `unmatched: clear`
    holds_doomed: str | None  # the folded policy to delete these users would still hold
    # (before, after, weakens) of their mailbox's SMTP AUTH setting; None: it does not change
    mailbox: tuple[SmtpSetting, SmtpSetting, bool] | None = None
    basic_before: BasicSmtp | None = None  # effective Basic SMTP now (None: mailboxes not read)
    basic_after: BasicSmtp | None = None
    no_mailbox: bool = False  # a rule sets smtp_auth for them, but they have no mailbox

    @property
    def visit(self) -> bool:
        return (
            self.change is not None
            or self.dangling
            or self.unmatched
            or self.holds_doomed is not None
            or self.mailbox is not None
            or self.no_mailbox
        )


@dataclass(frozen=True, slots=True)
class _PolicyTable:
    """Policy switches before and after the plan, by casefolded name."""

    before: dict[str, Allowed]
    after: dict[str, Allowed]

    def allowed_before(self, folded: str | None) -> Allowed:
        # None = no policy layer: everything allowed. A dangling name (the tenant holds a link
        # to a policy it does not list) counts as allowing nothing, so that moving away from
        # it is never hidden as "not weaker".
        return ALL_ALLOWED if folded is None else self.before.get(folded, frozenset())

    def allowed_after(self, folded: str | None) -> Allowed:
        return ALL_ALLOWED if folded is None else self.after.get(folded, frozenset())

    def weakens(self, before: str | None, after: str | None) -> bool:
        """Does moving from effective `before` (now) to `after` (after the plan) allow more?"""
        return not self.allowed_after(after) <= self.allowed_before(before)


def _tenant_policies(snapshot: TenantSnapshot) -> dict[str, TenantPolicy]:
    policies: dict[str, TenantPolicy] = {}
    for policy in sorted(snapshot.policies, key=lambda p: (p.name.casefold(), p.name)):
        policies.setdefault(policy.name.casefold(), policy)
    return policies


def _policy_changes(
    declared: dict[str, PolicySpec], tenant: dict[str, TenantPolicy]
) -> tuple[list[PolicyCreate], list[PolicyUpdate]]:
    creates: list[PolicyCreate] = []
    updates: list[PolicyUpdate] = []
    for folded in sorted(declared):
        spec = declared[folded]
        existing = tenant.get(folded)
        if existing is None:
            # Creating a policy weakens nothing by itself; moving users onto it may.
            creates.append(PolicyCreate(policy=spec.name, after=spec.allow))
            continue
        # All 12 switches are compared: one flipped in the admin center is drift even when
        # the file never mentions it.
        fields = tuple(
            FieldChange(name, name in existing.allow, name in spec.allow)
            for name in PROTOCOL_NAMES
            if (name in existing.allow) != (name in spec.allow)
        )
        if fields:
            updates.append(
                PolicyUpdate(
                    policy=existing.name,
                    fields=fields,
                    weakens=any(f.after and not f.before for f in fields),
                )
            )
    return creates, updates


def _policies_to_delete(
    desired: DesiredState, declared: dict[str, PolicySpec], tenant: dict[str, TenantPolicy]
) -> list[str]:
    """Folded names of tenant policies to delete: remove_policies, or the undeclared (prune)."""
    both = sorted({n for n in desired.remove_policies if n.casefold() in declared})
    if both:
        raise PlanError(
            f"policy {quoted(both[0])} is both declared under policies and listed in "
            "remove_policies; keep it in one place"
        )
    doomed = {n.casefold() for n in desired.remove_policies if n.casefold() in tenant}
    if desired.prune_policies:
        doomed |= {folded for folded in tenant if folded not in declared}
    return sorted(doomed)


def _resolve(
    name: str,
    declared: dict[str, PolicySpec],
    tenant: dict[str, TenantPolicy],
    doomed: set[str],
    what: str,
) -> str:
    """The spelling to write for a policy the file refers to (declared first, then tenant)."""
    folded = name.casefold()
    if folded in declared:
        return declared[folded].name
    if folded in tenant and folded not in doomed:
        return tenant[folded].name
    if folded in doomed:
        raise PlanError(f"{what} {quoted(name)}, which this plan deletes")
    raise PlanError(f"{what} {quoted(name)}, which is neither declared nor in the tenant")


def make_plan(
    desired: DesiredState, snapshot: TenantSnapshot, as_of: dt.date | None = None
) -> Plan:
    """Diff the desired state against the tenant: the changes, in execution order.

    `as_of` is the UTC date the plan is made for (rules expire on it); today when omitted,
    so nobody revives an expired rule by forgetting it. Otherwise pure: no I/O. Raises
    PlanError when the desired state cannot be planned, e.g. a policy to delete that users
    would still hold after the plan (naming how many and who).
    """
    with _collector_paused():
        plan = _make_plan(desired, snapshot, as_of or utc_today())
    if snapshot.sign_ins is None:
        return plan
    from reconciler.plan.evidence import attach_evidence

    plan = attach_evidence(plan, snapshot, desired)
    return dataclasses.replace(
        plan,
        guards=tuple(guards_of(desired, snapshot, plan.changes, plan.relying_after)),
        warnings=plan.warnings + tuple(evidence_warnings(plan)),
    )


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause CPython's cycle collector while planning.

    Planning 100,000 users allocates a few hundred thousand short-lived, acyclic objects
    (columns, pairs, changes); each allocation burst makes the collector walk every object
    alive, the whole snapshot included, again and again: about a quarter of the planning CPU
    at that size (docs/benchmarks.md). Nothing the planner builds forms a cycle, so reference
    counting frees all of it; the collector resumes as it was when the plan is made.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _unfinished_replaces(
    desired: DesiredState, snapshot: TenantSnapshot
) -> tuple[TenantSnapshot, list[Change], list[str]]:
    """Holding policies an earlier replace left (it was stopped between moving the holders
    off a policy and back): the snapshot as if the replace had finished (holders and default on
    the policy, no holding policy), the resumes that finish it, and a warning for each."""
    holdings = [p for p in snapshot.policies if p.name.casefold().startswith(HOLDING_PREFIX)]
    if not holdings:
        return snapshot, [], []
    names = {holding_name(n).casefold(): n for n in [
        *(p.name for p in snapshot.policies), *(s.name for s in desired.policies)
    ]}  # fmt: skip
    resumes: list[Change] = []
    warnings: list[str] = []
    back: dict[str, str] = {}
    recreated: list[TenantPolicy] = []
    for holding in sorted(holdings, key=lambda p: p.name.casefold()):
        owner = names.get(holding.name.casefold())
        holders = tuple(
            sorted(u.id for u in snapshot.users if _fold(u.policy) == holding.name.casefold())
        )
        on_default = _fold(snapshot.default_policy) == holding.name.casefold()
        if owner is None or (desired.policy(owner) is None and snapshot.policy(owner) is None):
            raise PlanError(
                f"the tenant holds {quoted(holding.name)}, the holding policy of a replace that "
                f"did not finish, with {plural(len(holders), 'user')}"
                f"{' and the organization default' if on_default else ''}, and the policy it "
                "holds them for is neither declared nor in the tenant; declare that policy, or "
                "move them and remove the holding policy by hand"
            )
        owner = (desired.policy(owner) or snapshot.policy(owner)).name  # type: ignore[union-attr]
        back[holding.name.casefold()] = owner
        if snapshot.policy(owner) is None:
            # Killed after the remove: create it with the holding policy's protection (any
            # switch the file wants different follows as an update), as if never removed.
            resumes.append(PolicyCreate(owner, holding.allow))
            recreated.append(TenantPolicy(owner, holding.allow))
        resumes.append(ReplaceResume(owner, holding.name, holders, on_default))
        warnings.append(
            f"an earlier replace of policy {quoted(owner)} did not finish: "
            f"{quoted(holding.name)} holds {plural(len(holders), 'user')}"
            f"{' and the organization default' if on_default else ''} for it; apply moves them "
            "back and removes it before anything else"
        )
    users = tuple(
        replace(u, policy=back[u.policy.casefold()])
        if u.policy is not None and u.policy.casefold() in back
        else u
        for u in snapshot.users
    )
    default = snapshot.default_policy
    if default is not None and default.casefold() in back:
        default = back[default.casefold()]
    policies = tuple(p for p in snapshot.policies if p.name.casefold() not in back) + tuple(
        recreated
    )
    return (
        replace(snapshot, users=users, default_policy=default, policies=policies),
        resumes,
        warnings,
    )


def _make_plan(desired: DesiredState, snapshot: TenantSnapshot, as_of: dt.date) -> Plan:
    snapshot, resumes, resume_warnings = _unfinished_replaces(desired, snapshot)
    declared = {spec.name.casefold(): spec for spec in desired.policies}
    tenant = _tenant_policies(snapshot)
    creates, updates = _policy_changes(declared, tenant)
    doomed_list = _policies_to_delete(desired, declared, tenant)
    doomed = set(doomed_list)

    after_switches = {folded: p.allow for folded, p in tenant.items() if folded not in doomed}
    after_switches.update({folded: spec.allow for folded, spec in declared.items()})
    table = _PolicyTable(before={f: p.allow for f, p in tenant.items()}, after=after_switches)

    # The default after the plan.
    default_before = snapshot.default_policy
    default_after = default_before
    if desired.manage_default:
        default_after = (
            None
            if desired.default_policy is None
            else _resolve(desired.default_policy, declared, tenant, doomed, "default_policy is")
        )
    default_changes = _fold(default_after) != _fold(default_before)
    default_before_f, default_after_f = _fold(default_before), _fold(default_after)

    all_rules = desired.assignments.rules
    # From its `expires` date on, a rule matches nobody: its users fall to the later rules.
    rules = tuple(r for r in all_rules if r.expires is None or r.expires > as_of)
    targets = [
        None
        if rule.policy is None
        else _resolve(rule.policy, declared, tenant, doomed, f"rule {quoted(rule.name)} assigns")
        for rule in rules
    ]
    targets_f = [_fold(t) for t in targets]
    rule_names = [rule.name for rule in rules]
    # Every user field the plan reads, in one pass over the users (plan/columns.py).
    columns = user_columns(snapshot.users, user_fields(desired))
    index = UserIndex(snapshot.users, snapshot.groups, columns)
    evaluation = evaluate_rules(rules, index)
    rule_of_user, unmanaged = _leave_out_unmanaged(
        evaluation.rule_of_user, snapshot.users, desired.assignments.recipient_types
    )
    clear_unmatched = desired.assignments.unmatched == "clear"
    expired_notes = (
        _expired_rules(all_rules, rules, evaluation, index, as_of)
        if len(rules) < len(all_rules)
        else []
    )

    # SMTP AUTH: the organization's switch before and after, each rule's mailbox setting.
    mailboxes = snapshot.mailboxes_read
    org_before: OrgSmtp | None = snapshot.smtp_org
    org_after: OrgSmtp | None = desired.smtp_auth.organization or org_before
    smtp_of_rule: list[SmtpSetting | None] = [rule.smtp_auth for rule in rules]
    reset_unmatched = desired.smtp_auth.unmatched == "organization"

    # What happens to a user depends only on (direct policy now, governing rule): work it out
    # once per such pair (a few dozen in a real tenant), count the pairs in C, and visit only
    # the users that change or that a list must name (dangling links, unmatched, holders of
    # a policy to delete).
    users = snapshot.users
    # Each user's mailbox setting (a column when the file manages mailboxes); all None when the
    # mailboxes were not read, so the outcomes do not split by it.
    smtp_column: list[SmtpSetting | None] = (
        (columns.get("smtp_auth") or [u.smtp_auth for u in users])
        if mailboxes
        else [None] * len(users)
    )
    pairs = list(zip(columns["policy"], rule_of_user, smtp_column, strict=True))
    pair_counts = Counter(pairs)
    outcomes: dict[tuple[str | None, int, SmtpSetting | None], _Outcome] = {}
    effective_after_count: dict[str | None, int] = {}
    default_affected = 0
    relying_after = 0
    org_followers_allowed = 0  # mailboxes that follow the org after the plan, policy allows smtp
    org_followers = 0
    for pair, count in pair_counts.items():
        before, rule, smtp_before = pair
        before_f = _fold(before)
        is_dangling = before_f is not None and before_f not in tenant
        if rule >= 0:
            after, after_f, rule_name = targets[rule], targets_f[rule], rule_names[rule]
        elif clear_unmatched and rule != UNMANAGED:
            after, after_f, rule_name = None, None, UNMATCHED_RULE
        else:
            after, after_f, rule_name = before, before_f, ""
        effective_before_f = before_f if before_f is not None else default_before_f
        effective_after_f = after_f if after_f is not None else default_after_f
        # A link to a policy the tenant does not list is rewritten even when a rule names the
        # same policy: the link points at an object that is gone, not at the one we manage.
        changes_user = after_f != before_f or (is_dangling and rule >= 0)
        weakens = changes_user and (
            (effective_before_f != effective_after_f or is_dangling)
            and table.weakens(effective_before_f, effective_after_f)
        )
        # The mailbox: its SMTP AUTH setting after the plan, and Basic SMTP before and after.
        wanted: SmtpSetting | None = None
        if rule >= 0:
            wanted = smtp_of_rule[rule]
        if wanted is None and rule != UNMANAGED and reset_unmatched:
            wanted = "organization"
        has_mailbox = smtp_before is not None
        smtp_after = wanted if (wanted is not None and has_mailbox) else smtp_before
        mailbox_change: tuple[SmtpSetting, SmtpSetting, bool] | None = None
        basic_before = basic_after = None
        if mailboxes:
            basic_before = basic_smtp(
                "smtp" in table.allowed_before(effective_before_f),
                smtp_before,
                org_before,
                mailbox=has_mailbox,
            )
            basic_after = basic_smtp(
                "smtp" in table.allowed_after(effective_after_f),
                smtp_after,
                org_after,
                mailbox=has_mailbox,
            )
            if smtp_before is not None and smtp_after is not None and smtp_after != smtp_before:
                mailbox_change = (
                    smtp_before,
                    smtp_after,
                    basic_after == "allowed" and basic_before != "allowed",
                )
            if smtp_after == "organization":
                org_followers += count
                if "smtp" in table.allowed_after(effective_after_f):
                    org_followers_allowed += count
        outcome = _Outcome(
            change=(
                ("user_assign" if after is not None else "user_clear", before, after, rule_name)
                if changes_user
                else None
            ),
            weakens=weakens,
            dangling=is_dangling,
            unmatched=rule < 0 and rule != UNMANAGED and clear_unmatched,
            holds_doomed=after_f if after_f is not None and after_f in doomed else None,
            mailbox=mailbox_change,
            basic_before=basic_before,
            basic_after=basic_after,
            no_mailbox=(
                mailboxes and not has_mailbox and rule >= 0 and smtp_of_rule[rule] is not None
            ),
        )
        outcomes[pair] = outcome
        if after_f is None:
            relying_after += count
            if default_changes and effective_before_f != default_after_f:
                default_affected += count
        effective_after_count[effective_after_f] = (
            effective_after_count.get(effective_after_f, 0) + count
        )

    visit = {pair for pair, outcome in outcomes.items() if outcome.visit}
    user_changes: list[tuple[str, str, UserChange]] = []
    mailbox_changes: list[tuple[str, str, MailboxSmtpChange]] = []
    holders: dict[str, list[str]] = {}
    dangling: dict[str, list[str]] = {}
    unmatched: list[str] = []
    no_mailbox: dict[str, list[str]] = {}
    if visit:
        for position in compress(range(len(users)), map(visit.__contains__, pairs)):
            user = users[position]
            outcome = outcomes[pairs[position]]
            if outcome.dangling:
                dangling.setdefault(user.policy, []).append(user.upn)  # type: ignore[arg-type]
            if outcome.unmatched:
                unmatched.append(user.upn)
            if outcome.holds_doomed is not None:
                holders.setdefault(outcome.holds_doomed, []).append(user.upn)
            upn, user_id = user.upn, user.id
            if outcome.change is not None:
                kind, before, after, rule_name = outcome.change
                change = UserChange(
                    kind,
                    upn,
                    user_id,
                    before,
                    after,
                    rule_name,
                    outcome.weakens,
                    outcome.basic_before,
                    outcome.basic_after,
                )
                user_changes.append((upn.casefold(), user_id, change))
            if outcome.mailbox is not None:
                smtp_before, smtp_after, mailbox_weakens = outcome.mailbox
                rule = pairs[position][1]
                mailbox_changes.append(
                    (
                        upn.casefold(),
                        user_id,
                        MailboxSmtpChange(
                            user=upn,
                            user_id=user_id,
                            before=smtp_before,
                            after=smtp_after,
                            rule=rule_names[rule] if rule >= 0 else UNMATCHED_RULE,
                            weakens=mailbox_weakens,
                            basic_smtp_before=outcome.basic_before,
                            basic_smtp_after=outcome.basic_after,
                        ),
                    )
                )
            if outcome.no_mailbox:
                no_mailbox.setdefault(rule_names[pairs[position][1]], []).append(upn)

    _refuse_held_deletes(doomed_list, tenant, holders, default_after_f)

    changes: list[Change] = [*creates, *resumes]
    changes += [
        PolicyUpdate(
            policy=u.policy,
            fields=u.fields,
            weakens=u.weakens,
            affected_users=effective_after_count.get(u.policy.casefold(), 0),
        )
        for u in updates
    ]
    if default_changes:
        changes.append(
            DefaultChange(
                before=default_before,
                after=default_after,
                affected_users=default_affected,
                weakens=default_after is None or table.weakens(default_before_f, default_after_f),
            )
        )
    if desired.smtp_auth.organization is not None and org_before != org_after:
        assert org_after is not None
        changes.append(
            SmtpOrgChange(
                before=org_before,
                after=org_after,
                affected_users=org_followers if mailboxes else None,
                # Without the mailboxes read, turning it on is assumed to open Basic SMTP.
                weakens=org_after == "enabled"
                and (org_followers_allowed > 0 if mailboxes else True),
            )
        )
    mailbox_changes.sort(key=itemgetter(0, 1))
    changes += [change for _, _, change in mailbox_changes]
    user_changes.sort(key=itemgetter(0, 1))
    changes += [change for _, _, change in user_changes]
    changes += [PolicyDelete(policy=tenant[folded].name) for folded in doomed_list]
    # Already built in phase order; the stable sort keeps it true should phases be added.
    changes.sort(key=lambda c: PHASE_ORDER[c.kind])

    inputs = input_digests(desired, snapshot, columns, as_of.isoformat())
    return Plan(
        tenant=snapshot.tenant,
        fingerprint=fingerprint_of(snapshot.tenant, inputs),
        changes=tuple(changes),
        warnings=tuple(
            resume_warnings
            + _warnings(
                desired,
                rules,
                snapshot,
                evaluation,
                targets_f,
                default_after,
                dangling,
                unmatched,
                effective_after_count.get(None, 0),
                unmanaged,
            )
            + _smtp_warnings(desired, snapshot, rules, targets_f, table, default_after, no_mailbox)
            + _conditional_access_warnings(snapshot, rules, rule_of_user)
            + expired_notes
            + _expiring_soon(rules, evaluation.governed_counts, as_of)
        ),
        guards=tuple(guards_of(desired, snapshot, changes, relying_after)),
        inputs=inputs,
        default_policy=default_after,
        as_of=as_of.isoformat(),
        default_before=default_before,
        mailboxes_read=mailboxes,
        relying_after=relying_after,
    )


def _owner(rule: Rule) -> str:
    return visible(rule.owner) if rule.owner else "(no owner)"


def _expired_rules(
    all_rules: Sequence[Rule],
    live: Sequence[Rule],
    evaluation: RuleEvaluation,
    index: UserIndex,
    as_of: dt.date,
) -> list[str]:
    """One warning per expired rule: since when, whose, and where its users go now."""
    full = evaluate_rules(all_rules, index)
    live_names = [rule.name for rule in live]
    notes: list[str] = []
    for position, rule in enumerate(all_rules):
        if rule.expires is None or rule.expires > as_of:
            continue
        users = [i for i, r in enumerate(full.rule_of_user) if r == position]
        if not users:
            notes.append(
                f"rule {quoted(rule.name)} (owner {_owner(rule)}) expired on "
                f"{rule.expires.isoformat()} and no longer matches anyone; remove it from "
                "policies.yaml"
            )
            continue
        now = Counter(evaluation.rule_of_user[i] for i in users)
        where = ", ".join(
            f"{plural(count, 'user')} to "
            + (f"rule {quoted(live_names[r])}" if r >= 0 else "no rule (assignments.unmatched)")
            for r, count in sorted(now.items(), key=lambda item: (-item[1], item[0]))
        )
        upns = sorted((index.users[i].upn for i in users), key=lambda u: (u.casefold(), u))
        notes.append(
            f"rule {quoted(rule.name)} (owner {_owner(rule)}) expired on "
            f"{rule.expires.isoformat()}: it no longer matches, and its "
            f"{plural(len(users), 'user')} fall to the later rules ({where}): {name_list(upns)}"
        )
    return notes


def _expiring_soon(rules: Sequence[Rule], governed: Sequence[int], as_of: dt.date) -> list[str]:
    """Rules that expire within EXPIRY_NOTICE_DAYS, one warning per owner."""
    by_owner: dict[str, list[str]] = {}
    for position, rule in enumerate(rules):
        if rule.expires is None:
            continue
        days = (rule.expires - as_of).days
        if days > EXPIRY_NOTICE_DAYS:
            continue
        why = f"; reason: {visible(rule.reason)}" if rule.reason else ""
        by_owner.setdefault(_owner(rule), []).append(
            f"rule {quoted(rule.name)} expires on {rule.expires.isoformat()} (in "
            f"{plural(days, 'day')}; governs {plural(governed[position], 'user')}{why})"
        )
    return [
        f"owner {owner}: {'; '.join(items)}; extend `expires` or let the users fall to the "
        "later rules"
        for owner, items in sorted(by_owner.items(), key=lambda item: item[0].casefold())
    ]


def _smtp_warnings(
    desired: DesiredState,
    snapshot: TenantSnapshot,
    rules: Sequence[Rule],
    targets_f: list[str | None],
    table: _PolicyTable,
    default_after: str | None,
    no_mailbox: dict[str, list[str]],
) -> list[str]:
    """SMTP AUTH exceptions that cannot work, recipients the join left out, what is unknown."""
    warnings: list[str] = []
    default_f = _fold(default_after)
    for rule, target_f in zip(rules, targets_f, strict=True):
        if rule.smtp_auth != "enabled":
            continue
        effective = target_f if target_f is not None else default_f
        if "smtp" not in table.allowed_after(effective):
            policy = rule.policy if rule.policy is not None else default_after
            warnings.append(
                f"rule {quoted(rule.name)} sets smtp_auth: enabled, but its policy "
                f"{quoted(policy)} blocks Basic smtp: the exception cannot work (SMTP AUTH with "
                "OAuth only); allow smtp in that policy or assign one that does"
            )
    for name in sorted(no_mailbox, key=lambda n: (n.casefold(), n)):
        upns = sorted(no_mailbox[name], key=lambda u: (u.casefold(), u))
        warnings.append(
            f"rule {quoted(name)} sets smtp_auth for {plural(len(upns), 'user')} without a "
            f"mailbox (no Get-CASMailbox object), left alone: {name_list(upns)}"
        )
    if snapshot.mailboxes_without_user:
        names = list(snapshot.mailboxes_without_user)
        warnings.append(
            f"{plural(len(names), 'mailbox')} from Get-CASMailbox match no Get-User object "
            f"(by ExternalDirectoryObjectId or Guid) and are left alone: {name_list(names)}"
        )
    if snapshot.smtp_org_read and snapshot.smtp_org is None:
        fix = (
            "this plan sets it (smtp_auth.organization)"
            if desired.smtp_auth.organization
            else "declare smtp_auth.organization to set it"
        )
        warnings.append(
            "Get-TransportConfig does not show the organization's SMTP AUTH switch (Microsoft's "
            "service-side default applies): Basic SMTP of mailboxes that follow the "
            f"organization is unknown; {fix}"
        )
    return warnings


def _conditional_access_warnings(
    snapshot: TenantSnapshot, rules: Sequence[Rule], rule_of_user: Sequence[int]
) -> list[str]:
    """An `smtp_auth: enabled` exception that an enforced Conditional Access policy defeats:
    CA blocks legacy authentication ("other clients", which Authenticated SMTP is) for users
    the rule governs, before Exchange's switches are even asked."""
    exceptions = {i for i, rule in enumerate(rules) if rule.smtp_auth == "enabled"}
    access = snapshot.conditional_access
    if access is None or not exceptions:
        return []
    if not access.read:
        return [
            f"Conditional Access could not be read ({access.reason}): whether it blocks the "
            f"smtp_auth: enabled {'exception' if len(exceptions) == 1 else 'exceptions'} is "
            "not known"
        ]
    blocking = [p for p in access.policies if p.blocks_smtp_auth]
    if not blocking:
        return []
    hit: dict[tuple[int, int], tuple[list[str], list[str]]] = {}
    for user, position in zip(snapshot.users, rule_of_user, strict=True):
        if position not in exceptions:
            continue
        for n, policy in enumerate(blocking):
            covered = policy.covers(user.id)
            if covered != "no":
                sure, maybe = hit.setdefault((position, n), ([], []))
                (sure if covered == "yes" else maybe).append(user.upn)
    warnings = []
    for (position, n), (sure, maybe) in sorted(hit.items()):
        rule, policy = rules[position], blocking[n]
        if sure:
            warnings.append(
                f"rule {quoted(rule.name)} sets smtp_auth: enabled, but Conditional Access "
                f"policy {quoted(policy.name)} blocks legacy authentication (other clients, "
                f"which Authenticated SMTP is) for {plural(len(sure), 'user')} it governs: the "
                f"exception cannot work for them until the policy excludes them: "
                f"{name_list(sorted(sure, key=str.casefold))}"
            )
        if maybe:
            warnings.append(
                f"rule {quoted(rule.name)} sets smtp_auth: enabled, and Conditional Access "
                f"policy {quoted(policy.name)} may block legacy authentication for "
                f"{plural(len(maybe), 'user')} it governs (unless a group or role it excludes "
                f"holds them): {name_list(sorted(maybe, key=str.casefold))}"
            )
    return warnings


# Every guard `guards_of` can raise, by name (what `apply --force=NAME` may name).
GUARD_NAMES = (
    "max_user_changes",
    "max_policy_deletes",
    "default_cleared",
    "default_weakened",
    "max_active_users_blocked",
)
UNMANAGED = -2  # the rule index of a user whose recipient type the plan does not manage


def _leave_out_unmanaged(
    rule_of_user: Sequence[int], users: Sequence[TenantUser], managed: Sequence[str]
) -> tuple[list[int], dict[str, list[str]]]:
    """Rule per user with the unmanaged ones marked UNMANAGED (never changed, whatever rule
    or `unmatched` says), and the left-out UPNs by recipient type."""
    managed_f = {t.casefold() for t in managed}
    types = [user.recipient_type for user in users]
    outside = {t for t in set(types) if t.casefold() not in managed_f}
    out = list(rule_of_user)
    left_out: dict[str, list[str]] = {}
    if outside:
        for position in compress(range(len(users)), map(outside.__contains__, types)):
            out[position] = UNMANAGED
            left_out.setdefault(types[position], []).append(users[position].upn)
    return out, left_out


def _refuse_held_deletes(
    doomed: list[str],
    tenant: dict[str, TenantPolicy],
    holders: dict[str, list[str]],
    default_after: str | None,
) -> None:
    """A policy the tenant would still use after the plan is an error, not a delete."""
    problems: list[str] = []
    for folded in doomed:
        name = quoted(tenant[folded].name)
        held_by = sorted(holders.get(folded, ()), key=lambda u: (u.casefold(), u))
        if held_by:
            problems.append(
                f"cannot delete policy {name}: {plural(len(held_by), 'user')} would still hold "
                f"it after this plan (no rule moves them): {name_list(held_by)}"
            )
        if folded == default_after:
            problems.append(
                f"cannot delete policy {name}: it is the organization default and stays so "
                "(set default_policy to another policy)"
            )
    if problems:
        raise PlanError("; ".join(problems))


def _exceed(count: int) -> str:
    return "exceeds" if count == 1 else "exceed"


def guards_of(
    desired: DesiredState,
    snapshot: TenantSnapshot,
    changes: Sequence[Change],
    relying_after: int,
) -> list[Guard]:
    """Safety guards of `changes` (a plan's, or the part of it apply will write): the plan is
    still complete; apply refuses without --force. A user whose policy and mailbox both change
    counts once in max_user_changes."""
    guards: list[Guard] = []
    safety = desired.safety
    ids = changed_user_ids(list(changes))
    for change in changes:
        if isinstance(change, PolicyReplace):  # its holders are moved away and back
            ids.update(change.holders + change.moved_holders)
        if isinstance(change, ReplaceResume):
            ids.update(change.holders)
    # Users who rely on the default feel it move as surely as a Set-User.
    relying = sum(c.affected_users for c in changes if isinstance(c, DefaultChange))
    user_changes = len(ids) + relying
    if safety.max_user_changes is not None:
        total = len(snapshot.users)
        limit = safety.max_user_changes.resolve(total)
        if user_changes > limit:
            of_total = f" ({limit:,} of {total:,} users)" if safety.max_user_changes.percent else ""
            guards.append(
                Guard(
                    name="max_user_changes",
                    message=(
                        f"{plural(user_changes, 'user change')}"
                        + (
                            f" (with {plural(relying, 'user')} the default change moves)"
                            if relying
                            else ""
                        )
                        + f" {_exceed(user_changes)} safety.max_user_changes "
                        f"{safety.max_user_changes}{of_total}; review the plan, then apply "
                        "with --force"
                    ),
                    count=user_changes,
                    limit=limit,
                )
            )
    deletes = sum(1 for c in changes if c.kind == "policy_delete")
    if safety.max_policy_deletes is not None:
        limit = safety.max_policy_deletes.resolve(len(snapshot.policies))
        if deletes > limit:
            guards.append(
                Guard(
                    name="max_policy_deletes",
                    message=(
                        f"{plural(deletes, 'policy delete')} {_exceed(deletes)} "
                        "safety.max_policy_deletes "
                        f"{safety.max_policy_deletes}; review the plan, then apply with --force"
                    ),
                    count=deletes,
                    limit=limit,
                )
            )
    guards += _evidence_guards(desired, snapshot, changes)
    for change in changes:
        if isinstance(change, DefaultChange) and change.after is not None and change.weakens:
            guards.append(
                Guard(
                    name="default_weakened",
                    message=(
                        f"this plan changes the organization default from {quoted(change.before)}"
                        f" to {quoted(change.after)}, which allows Basic auth for more "
                        f"({plural(change.affected_users, 'user')} rely on it); apply with "
                        "--force to confirm"
                    ),
                    count=change.affected_users,
                    limit=0,
                )
            )
        if isinstance(change, DefaultChange) and change.after is None:
            guards.append(
                Guard(
                    name="default_cleared",
                    message=(
                        f"this plan clears the organization default policy {quoted(change.before)}"
                        f" ({plural(relying_after, 'user')} would rely on no default); apply "
                        "with --force to confirm"
                    ),
                    count=1,
                    limit=0,
                )
            )
    return guards


def _evidence_guards(
    desired: DesiredState, snapshot: TenantSnapshot, changes: Sequence[Change]
) -> list[Guard]:
    """max_active_users_blocked: users blocked from a protocol they used in the window; without
    the log, any change that takes a protocol away from users (nothing can be proven)."""
    limit = desired.safety.max_active_users_blocked
    usage = snapshot.sign_ins
    if limit is None or usage is None:
        return []
    from reconciler.plan.evidence import active_blocked_ids, takes_protocols_away

    if not usage.read:
        taken = takes_protocols_away(changes)
        if not taken:
            return []
        what = ", ".join(f"{p} ({plural(n, 'user')})" for p, n in taken.items())
        return [
            Guard(
                name="max_active_users_blocked",
                message=(
                    f"this plan takes Basic auth away ({what}) and the sign-in log could not be "
                    f"read ({usage.reason}), so nobody can say who still uses it; fix access "
                    "to the log, or apply with --force"
                ),
                count=sum(taken.values()),
                limit=limit,
            )
        ]
    ids = active_blocked_ids(changes)
    if len(ids) <= limit:
        return []
    by_upn = {u.id: u.upn for u in snapshot.users if u.id in ids}
    names = name_list(sorted(by_upn.values(), key=str.casefold))
    return [
        Guard(
            name="max_active_users_blocked",
            message=(
                f"{plural(len(ids), 'user')} who used Basic auth in the last {usage.days} days "
                f"would lose it ({names}), {_exceed(len(ids))} safety.max_active_users_blocked "
                f"{limit}; give them an exception rule, or apply with --force"
            ),
            count=len(ids),
            limit=limit,
        )
    ]


def evidence_warnings(plan: Plan) -> list[str]:
    """Why evidence is missing, and the exceptions nobody used (candidates to remove)."""
    summary = plan.evidence
    if summary is None:
        return []
    if summary.status != "read":
        return [f"no sign-in evidence: {summary.reason}"]
    out = []
    for unused in summary.unused:
        if not unused.rules:
            continue  # only exceptions a rule grants are candidates; the default is its own
        out.append(
            f"policy {quoted(unused.policy)} (rule {', '.join(map(quoted, unused.rules))}) allows "
            f"Basic {unused.protocol} for {plural(unused.users, 'user')}, and none of them used "
            f"it in the last {summary.days} days: a candidate to remove"
        )
    return out


def _warnings(
    desired: DesiredState,
    rules: Sequence[Rule],
    snapshot: TenantSnapshot,
    evaluation: RuleEvaluation,
    targets_f: list[str | None],
    default_after: str | None,
    dangling: dict[str, list[str]],
    unmatched: list[str],
    unprotected_after: int,
    unmanaged: dict[str, list[str]],
) -> list[str]:
    """Things an admin must know, in a fixed order (each group sorted)."""
    warnings: list[str] = []
    if unmanaged and (rules or desired.assignments.unmatched == "clear"):
        upns = sorted(
            (u for names in unmanaged.values() for u in names), key=lambda u: (u.casefold(), u)
        )
        by_type = ", ".join(f"{kind} {len(names):,}" for kind, names in sorted(unmanaged.items()))
        warnings.append(
            f"{plural(len(upns), 'user')} left alone: not a recipient type the plan manages "
            f"(assignments.recipient_types; {by_type}): {name_list(upns)}"
        )
    for position, rule in enumerate(rules):
        if evaluation.governed_counts[position]:
            continue
        if evaluation.matched_counts[position]:
            warnings.append(
                f"rule {quoted(rule.name)} governs no user: every user it matches is taken by "
                "an earlier rule"
            )
        else:
            warnings.append(f"rule {quoted(rule.name)} matches no user")
    for group in sorted(evaluation.missing_groups, key=lambda g: (g.casefold(), g)):
        warnings.append(f"group {quoted(group)} (member_of) was not found in the tenant")
    if unmatched:
        upns = sorted(unmatched, key=lambda u: (u.casefold(), u))
        warnings.append(
            f"{plural(len(upns), 'user')} {'matches' if len(upns) == 1 else 'match'} no rule and "
            "get no direct policy "
            f"(assignments.unmatched: clear): {name_list(upns)}"
        )
    used = {t for t in targets_f if t is not None} | {_fold(default_after)}
    for spec in sorted(desired.policies, key=lambda s: (s.name.casefold(), s.name)):
        if spec.name.casefold() not in used:
            warnings.append(
                f"policy {quoted(spec.name)} is declared but no rule assigns it and it is not "
                "the default"
            )
    for spec in sorted(desired.policies, key=lambda s: (s.name.casefold(), s.name)):
        ineffective = [p.name for p in PROTOCOLS if p.name in spec.allow and not p.still_effective]
        if ineffective:
            warnings.append(
                f"policy {quoted(spec.name)} allows {', '.join(ineffective)}: Basic auth for "
                "these was switched off service-wide and allowing it no longer has any effect "
                "in Exchange Online (only smtp still does)"
            )
    known = {p.name.casefold() for p in snapshot.policies}
    by_look = {look_alike_key(p.name): p.name for p in snapshot.policies}
    for spec in sorted(desired.policies, key=lambda s: (s.name.casefold(), s.name)):
        twin = by_look.get(look_alike_key(spec.name))
        if twin is not None and twin.casefold() != spec.name.casefold():
            warnings.append(
                f"policy {quoted(spec.name)} looks like the tenant's {quoted(twin)} but is a "
                f"different name ({code_points(spec.name, twin)}): the plan treats them as two "
                "policies; spell it as the tenant does if it is meant to be the same"
            )
    for name in sorted(dangling, key=lambda n: (n.casefold(), n)):
        upns = sorted(dangling[name], key=lambda u: (u.casefold(), u))
        warnings.append(
            f"{plural(len(upns), 'user')} {'holds' if len(upns) == 1 else 'hold'} policy "
            f"{quoted(name)}, which does not exist in "
            f"the tenant: {name_list(upns)}"
        )
    if snapshot.default_policy is not None and snapshot.default_policy.casefold() not in known:
        warnings.append(
            f"the organization default {quoted(snapshot.default_policy)} does not exist in the "
            "tenant"
        )
    if unprotected_after:
        warnings.append(
            f"{plural(unprotected_after, 'user')} will have no authentication policy after this "
            "plan (no direct policy and no organization default): no policy blocks Basic auth "
            "for them"
        )
    return warnings
