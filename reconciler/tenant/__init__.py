"""Everything that talks to Exchange Online, behind the small `Tenant` protocol."""

from reconciler.tenant.base import Tenant, UserWrite, WriteResult

__all__ = ["Tenant", "UserWrite", "WriteResult"]
