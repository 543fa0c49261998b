"""One apply per tenant per machine (reconciler/apply/lock.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.apply.lock import tenant_lock
from reconciler.errors import AuthPolicyError


def test_a_second_apply_on_the_same_tenant_refuses_with_one_line(tmp_path: Path) -> None:
    with tenant_lock("contoso.onmicrosoft.com", tmp_path) as path:
        assert path.read_text(encoding="ascii") == str(os.getpid())
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        # The same tenant, spelt differently:
        with (
            pytest.raises(AuthPolicyError) as err,
            tenant_lock("CONTOSO.onmicrosoft.com ", tmp_path),
        ):
            pass
        assert str(err.value) == (
            f"another apply against tenant CONTOSO.onmicrosoft.com  is running on this machine "
            f"(pid {os.getpid()}, lock {path}); wait for it to finish, then plan again"
        )
        with tenant_lock("fabrikam.onmicrosoft.com", tmp_path):  # another tenant: independent
            pass
    with tenant_lock("contoso.onmicrosoft.com", tmp_path):  # released when the first ended
        pass


def test_the_lock_file_is_never_a_symlink_target(tmp_path: Path) -> None:
    with tenant_lock("contoso.onmicrosoft.com", tmp_path) as path:
        pass
    victim = tmp_path / "victim"
    victim.write_text("keep", encoding="utf-8")
    path.unlink()
    path.symlink_to(victim)
    with pytest.raises(AuthPolicyError) as err, tenant_lock("contoso.onmicrosoft.com", tmp_path):
        pass
    assert str(err.value).startswith(f"cannot open the apply lock {path}: ")
    assert victim.read_text(encoding="utf-8") == "keep"
