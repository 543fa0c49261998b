"""The `Tenant` protocol: the only view of Exchange Online that the planner and executor get."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from reconciler.model import Allowed, OrgSmtp, SmtpSetting, SnapshotNeeds, TenantSnapshot


@dataclass(frozen=True, slots=True)
class UserWrite:
    """One Set-User: give `user_id` the direct policy `policy` (None clears it)."""

    user_id: str
    policy: str | None
    revoke_sessions: bool = False


@dataclass(frozen=True, slots=True)
class MailboxWrite:
    """One Set-CASMailbox: give `user_id`'s mailbox the SMTP AUTH setting `setting`."""

    user_id: str
    setting: SmtpSetting


WriteStatus = Literal["applied", "failed", "not_found"]


@dataclass(frozen=True, slots=True)
class WriteResult:
    write: UserWrite | MailboxWrite
    status: WriteStatus
    message: str = ""  # Exchange's own text when failed
    attempts: int = 1


# Called as pages arrive: (objects read so far, total if known).
ProgressCallback = Callable[[int, int | None], None]


class Tenant(Protocol):
    """A tenant the reconciler can read and change. Implementations: exo (HTTPS), test fakes."""

    @property
    def name(self) -> str:
        """The tenant as configured (GUID or initial *.onmicrosoft.com domain)."""
        ...

    def read_snapshot(
        self, needs: SnapshotNeeds, progress: ProgressCallback | None = None
    ) -> TenantSnapshot:
        """Read everything, completely, or raise. Never returns a partial snapshot."""
        ...

    def create_policy(self, name: str, allow: Allowed) -> None: ...

    def update_policy(self, name: str, switches: Mapping[str, bool]) -> None:
        """Set only the given switches (short protocol name -> allowed)."""
        ...

    def remove_policy(self, name: str) -> None: ...

    def set_default_policy(self, name: str | None) -> None: ...

    def set_user_policies(self, writes: Sequence[UserWrite]) -> list[WriteResult]:
        """Write a group of user assignments (up to 10 go in one $batch); one result per write."""
        ...

    def read_users(self, user_ids: Sequence[str]) -> Mapping[str, str | None]:
        """Direct policy of each given user (for verification); missing users are left out."""
        ...

    def set_smtp_org(self, setting: OrgSmtp) -> None:
        """Set-TransportConfig -SmtpClientAuthenticationDisabled."""
        ...

    def read_smtp_org(self) -> OrgSmtp | None:
        """The organization's SMTP AUTH switch (None: the API does not show it)."""
        ...

    def set_mailbox_smtp(self, writes: Sequence[MailboxWrite]) -> list[WriteResult]:
        """Write a group of mailbox SMTP AUTH settings; one result per write."""
        ...

    def read_mailbox_settings(self, user_ids: Sequence[str]) -> Mapping[str, SmtpSetting]:
        """SMTP AUTH setting of each given user's mailbox (verification); missing left out."""
        ...
