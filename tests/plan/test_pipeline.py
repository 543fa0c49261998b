"""The shared pipeline's own logic: the which-tenant warning (plan is read-only: it warns)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from reconciler.plan.pipeline import plan_for, tenant_warning
from tests.plan.scenarios import contoso

GUID = "0b6b6a1e-7e4a-4c39-9d6c-2a3f1c5d9e10"


def test_no_warning_when_the_file_names_no_tenant_or_the_same_one() -> None:
    state, snap = contoso()
    tenant = SimpleNamespace(name="Contoso.onmicrosoft.com")
    assert tenant_warning(state, tenant, snap) is None
    assert tenant_warning(dataclasses.replace(state, tenant=None), tenant, snap) is None


def test_a_guid_matches_when_the_tenant_object_knows_its_id() -> None:
    state, snap = contoso()
    tenant = SimpleNamespace(name="contoso.onmicrosoft.com", tenant_id=GUID.upper())
    assert tenant_warning(dataclasses.replace(state, tenant=GUID), tenant, snap) is None


def test_another_tenant_is_named_in_the_warning() -> None:
    state, snap = contoso()
    other = dataclasses.replace(state, tenant="fabrikam.onmicrosoft.com")
    warning = tenant_warning(other, SimpleNamespace(name="contoso.onmicrosoft.com"), snap)
    assert warning == (
        'policies.yaml names tenant "fabrikam.onmicrosoft.com" but this plan was made against '
        '"contoso.onmicrosoft.com"; apply refuses to run against another tenant'
    )


def test_plan_for_records_the_config_file() -> None:
    state, snap = contoso()
    plan = plan_for(state, SimpleNamespace(name="contoso.onmicrosoft.com"), snap)
    assert plan.config_file == state.source


def test_a_guid_against_a_domain_cannot_be_compared_here() -> None:
    state, snap = contoso()
    warning = tenant_warning(
        dataclasses.replace(state, tenant=GUID),
        SimpleNamespace(name="contoso.onmicrosoft.com"),
        snap,
    )
    assert warning == (
        f'policies.yaml names tenant "{GUID}" and this plan was made against '
        '"contoso.onmicrosoft.com"; one is a GUID and the other a domain, so they could not be '
        "compared here (apply checks)"
    )
