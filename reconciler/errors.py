"""The exceptions a user may see. The CLI maps each to a one-line message and an exit code.

Messages must never contain a secret (client secret, certificate key or password, token).
"""

from __future__ import annotations

from reconciler.model import ExitCode


class AuthPolicyError(Exception):
    """Base of every error meant for the user: `str(err)` is the one-line message."""

    exit_code: int = ExitCode.ERROR


class ConfigError(AuthPolicyError):
    """policies.yaml is unreadable or invalid. `problems` holds every line to print."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems[0] if problems else "invalid configuration")
        self.problems = problems


class ConnectionSettingsError(AuthPolicyError):
    """Missing or unusable connection settings (environment variables, credential files)."""


class AuthenticationError(AuthPolicyError):
    """Entra ID refused the credential, or Exchange refused the token (permission, role)."""


class TenantError(AuthPolicyError):
    """Exchange Online answered with an error that is not retried."""


class PlanError(AuthPolicyError):
    """The desired state cannot be planned against this tenant (e.g. deleting a held policy)."""


class StalePlanError(AuthPolicyError):
    """A saved plan no longer matches what would be planned now."""


class GuardError(AuthPolicyError):
    """A safety guard blocks apply; --force overrides."""

    exit_code = ExitCode.BLOCKED


class TenantThrottledError(TenantError):
    """Exchange kept throttling a call (HTTP 429 or its concurrency limit) after the client's
    own retries. The executor backs off and tries the work again later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TenantNotFoundError(TenantError):
    """The object a call named does not exist (any more), e.g. a user deleted since the plan."""
