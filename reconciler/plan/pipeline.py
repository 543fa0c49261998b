"""load config -> open tenant -> read snapshot -> plan: shared by plan, drift, apply, report.

Commands call `add_plan_source_arguments(parser)` and `plan_from_args(args)`; nothing here
prints (the commands do).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import os
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from reconciler.desired import load_desired_state
from reconciler.errors import AuthPolicyError
from reconciler.model import DesiredState, Plan, TenantSnapshot
from reconciler.plan.needs import snapshot_needs
from reconciler.plan.planner import make_plan, utc_today
from reconciler.tenant.base import ProgressCallback, Tenant
from reconciler.tenant.connect import add_connection_arguments, open_tenant

log = logging.getLogger(__name__)

_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


class PlanRun(NamedTuple):
    desired: DesiredState
    tenant: Tenant
    snapshot: TenantSnapshot
    plan: Plan


def add_plan_source_arguments(parser: argparse.ArgumentParser) -> None:
    """-c/--config and the tenant connection flags."""
    parser.add_argument(
        "-c",
        "--config",
        default=None,
        metavar="FILE",
        help=f"the desired state (default: {DEFAULT_CONFIG}; apply PLAN.json: the file the "
        "plan was made from)",
    )
    add_connection_arguments(parser)


DEFAULT_CONFIG = "policies.yaml"
# Pins the date plans are made for (YYYY-MM-DD), for tests and the demo only: it is honoured
# only against an endpoint on this machine (the emulator). Against Exchange Online every verb,
# apply included, plans for today's UTC date, so a pinned date can revive nothing there.
TODAY_VARIABLE = "AUTHPOLICY_TODAY"
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def plan_date(verb: str, environ: Mapping[str, str] = os.environ) -> dt.date:
    """The UTC date a plan is made for: today, or AUTHPOLICY_TODAY against the emulator."""
    pinned = environ.get(TODAY_VARIABLE, "").strip()
    if not pinned:
        return utc_today()
    from urllib.parse import urlsplit

    host = urlsplit(environ.get("AUTHPOLICY_ENDPOINT", "")).hostname or ""
    if host.casefold() not in _LOCAL_HOSTS:
        log.warning(
            "%s is ignored: it pins the date only against the local emulator (tests, the "
            "demo); %s plans for today's UTC date",
            TODAY_VARIABLE,
            verb,
        )
        return utc_today()
    try:
        return dt.date.fromisoformat(pinned)
    except ValueError:
        raise AuthPolicyError(
            f"{TODAY_VARIABLE}={pinned!r} is not a date; write YYYY-MM-DD (it is for tests "
            "and the demo) or unset it"
        ) from None


def tenant_warning(desired: DesiredState, tenant: Any, snapshot: TenantSnapshot) -> str | None:
    """A warning when policies.yaml names another tenant than the one connected (for
    `report -c`, which reads the file only for this; the planning verbs refuse)."""
    if not desired.tenant:
        return None
    known = tenant_identities(tenant, snapshot)
    if desired.tenant.casefold() in known:
        return None
    wanted_is_guid = bool(_GUID.match(desired.tenant))
    if all(bool(_GUID.match(n)) != wanted_is_guid for n in known):
        return (
            f'policies.yaml names tenant "{desired.tenant}" and this plan was made against '
            f'"{snapshot.tenant}"; one is a GUID and the other a domain, so they could not be '
            "compared here (apply checks)"
        )
    return (
        f'policies.yaml names tenant "{desired.tenant}" but this plan was made against '
        f'"{snapshot.tenant}"; apply refuses to run against another tenant'
    )


def tenant_identities(tenant: Any, snapshot: TenantSnapshot) -> set[str]:
    """Every name the connected tenant is known by (configured id, initial domain, GUID, other
    domains), casefolded: what `tenant:` in policies.yaml may say."""
    names = {str(tenant.name), snapshot.tenant}
    for attr in ("initial_domain", "domain", "tenant_domain", "tenant_id", "tenant_guid", "guid"):
        value = getattr(tenant, attr, None)
        if isinstance(value, str) and value:
            names.add(value)
    for attr in ("identities", "domains"):
        for value in getattr(tenant, attr, None) or ():
            if isinstance(value, str):
                names.add(value)
    return {n.casefold() for n in names if n}


def check_tenant_guard(
    desired: DesiredState, tenant: Any, snapshot: TenantSnapshot, verb: str = "apply"
) -> None:
    """policies.yaml's `tenant:` must name the tenant we are connected to (GUID or domain)."""
    if desired.tenant is None:
        return
    if desired.tenant.casefold() in tenant_identities(tenant, snapshot):
        return
    facts = getattr(tenant, "facts", None)
    if callable(facts) and facts().matches(desired.tenant):
        return
    raise AuthPolicyError(
        f"{desired.source} is for tenant '{desired.tenant}' but the connection is to "
        f"'{tenant.name}'; refusing to {verb} (check AZURE_TENANT_ID)"
    )


def plan_from_args(
    args: argparse.Namespace,
    environ: Mapping[str, str] = os.environ,
    progress: ProgressCallback | None = None,
    verb: str = "plan",
) -> PlanRun:
    """Load args.config, connect, read what the rules need, and plan.

    Raises ConfigError, ConnectionSettingsError, AuthenticationError, TenantError, PlanError.
    """
    desired = load_desired_state(args.config or DEFAULT_CONFIG)
    tenant = open_tenant(args, environ=environ)
    snapshot = tenant.read_snapshot(snapshot_needs(desired), progress)
    # A file for another tenant is refused by every verb that plans, not only apply: a plan
    # or a drift check against the wrong tenant would report nonsense as if it were true.
    check_tenant_guard(desired, tenant, snapshot, verb)
    as_of = plan_date(verb, environ)
    return PlanRun(desired, tenant, snapshot, plan_for(desired, tenant, snapshot, as_of))


def plan_for(
    desired: DesiredState, tenant: Any, snapshot: TenantSnapshot, as_of: dt.date | None = None
) -> Plan:
    """make_plan, plus what only the pipeline knows: the config file it read. (Which tenant:
    `check_tenant_guard` has refused another one before this runs.)"""
    domain = getattr(tenant, "initial_domain", None)
    return dataclasses.replace(
        make_plan(desired, snapshot, as_of),
        config_file=desired.source,
        tenant_domain=domain if isinstance(domain, str) and domain else None,
    )
