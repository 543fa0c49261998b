"""Starter files: the commented policies.yaml `init` writes, the sample tenant's file the demo
uses outside the repository, and the schema beside either (so the file's `$schema` header
resolves wherever it lives)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from reconciler.errors import AuthPolicyError
from reconciler.files import refuse_unless_regular_or_absent

SCHEMA_NAME = "policies.schema.json"
SCHEMA_HEADER = f"# yaml-language-server: $schema={SCHEMA_NAME}"


def schema_text() -> str:
    """The JSON Schema of policies.yaml, as shipped in the package."""
    return resources.files("reconciler").joinpath("schema", SCHEMA_NAME).read_text("utf-8")


def sample_text(*, sample: bool = False) -> str:
    """The starter policies.yaml (`sample`: the emulated Contoso tenant's, as the demo uses)."""
    name = "policies.yaml" if sample else "starter.yaml"
    return resources.files("reconciler").joinpath("samples", name).read_text("utf-8")


def write_starter(directory: Path, *, sample: bool = False, force: bool = False) -> list[Path]:
    """Write policies.yaml and the schema into `directory` (created if missing). Refuses,
    naming the file, to replace an existing policies.yaml unless `force`; the schema is
    always brought up to date (it is the package's, not the user's)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AuthPolicyError(f"cannot create {directory}: {exc.strerror}") from None
    policies = directory / "policies.yaml"
    schema = directory / SCHEMA_NAME
    if policies.exists() and not force:
        raise AuthPolicyError(
            f"{policies} already exists; edit it, or pass --force to replace it with the starter"
        )
    for path, text in ((policies, sample_text(sample=sample)), (schema, schema_text())):
        refuse_unless_regular_or_absent(str(path), "starter file")  # never through a link
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise AuthPolicyError(f"cannot write {path}: {exc.strerror}") from None
    return [policies, schema]
