"""tenants.yaml: the fleet's inventory (DESIGN.md "Many tenants"), read with located errors.

```yaml
version: 1
base: policies.yaml
clouds:                                   # optional: each cloud's app registration
  gcc-high: {client_id: ..., credential_env_prefix: GCCH_}
tenants:
  contoso:
    tenant: contoso.onmicrosoft.com       # the one checked
    groups: [pilot, eu]
    overlay: overlays/contoso.yaml
    credential_env_prefix: CONTOSO_       # CONTOSO_AZURE_CLIENT_SECRET, ...
```
Paths are relative to tenants.yaml. Every problem is one line `FILE:LINE:COL: path: message`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.desired.loader import place
from reconciler.desired.problems import Problem
from reconciler.desired.schema import schema_findings, tenants_validator
from reconciler.desired.source import Document, FileProblem, decode, parse
from reconciler.errors import ConfigError

MAX_INVENTORY_BYTES = 1024 * 1024
# The variables a tenant's credential is read from (a prefix selects another set).
CREDENTIAL_VARIABLES = (
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "AZURE_FEDERATED_TOKEN_FILE",
)


@dataclass(frozen=True, slots=True)
class CloudApp:
    client_id: str | None = None
    credential_env_prefix: str | None = None


@dataclass(frozen=True, slots=True)
class TenantEntry:
    """One tenant of the fleet."""

    name: str
    tenant: str
    cloud: str = "commercial"
    groups: tuple[str, ...] = ()
    overlay: Path | None = None  # resolved against tenants.yaml's folder
    client_id: str | None = None
    credential_env_prefix: str | None = None

    def environ(self, inventory: Inventory, environ: Mapping[str, str]) -> dict[str, str]:
        """The environment this tenant's commands run with: its tenant id and cloud, and its
        app's credential (the tenant's, else its cloud's, else the usual AZURE_* variables)."""
        cloud_app = inventory.clouds.get(self.cloud, CloudApp())
        env = {k: v for k, v in environ.items() if not k.startswith("AZURE_TENANT_ID")}
        env["AZURE_TENANT_ID"] = self.tenant
        env["AUTHPOLICY_CLOUD"] = self.cloud
        prefix = self.credential_env_prefix or cloud_app.credential_env_prefix
        if prefix:
            for variable in CREDENTIAL_VARIABLES:
                env.pop(variable, None)
                if f"{prefix}{variable}" in environ:
                    env[variable] = environ[f"{prefix}{variable}"]
        client_id = self.client_id or cloud_app.client_id
        if client_id:
            env["AZURE_CLIENT_ID"] = client_id
        return env


@dataclass(frozen=True, slots=True)
class Inventory:
    path: Path
    base: Path
    tenants: tuple[TenantEntry, ...]
    clouds: Mapping[str, CloudApp]

    def select(self, only: Sequence[str]) -> tuple[TenantEntry, ...]:
        """The tenants `--only NAME|@GROUP ...` names (all when empty), in inventory order."""
        if not only:
            return self.tenants
        names = {t.name for t in self.tenants}
        groups = {g for t in self.tenants for g in t.groups}
        wanted: set[str] = set()
        for item in only:
            for word in (w.strip() for w in item.split(",") if w.strip()):
                if word.startswith("@"):
                    if word[1:] not in groups:
                        raise ConfigError(
                            [f"--only {word}: no tenant in {self.path} is in group {word[1:]!r}"]
                        )
                    wanted |= {t.name for t in self.tenants if word[1:] in t.groups}
                elif word in names:
                    wanted.add(word)
                else:
                    raise ConfigError([f"--only {word}: {self.path} names no tenant {word!r}"])
        return tuple(t for t in self.tenants if t.name in wanted)


def _read(path: Path, what: str) -> str:
    try:
        if not path.is_file():
            raise ConfigError([f"{path}: {what} not found (or not a regular file)"])
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    if len(data) > MAX_INVENTORY_BYTES:
        raise ConfigError([f"{path}:1:1: (document): larger than 1 MiB, not an inventory"])
    try:
        return decode(data)
    except FileProblem as exc:
        raise ConfigError([exc.problem.format(str(path))]) from None


def parse_file(path: Path, what: str) -> Document:
    """A YAML file as a Document (positions kept), or a located ConfigError."""
    text = _read(path, what)
    try:
        doc = parse(text)
    except FileProblem as exc:
        raise ConfigError([exc.problem.format(str(path))]) from None
    return doc


def load_inventory(path: str | os.PathLike[str]) -> Inventory:
    """Read and check tenants.yaml. Raises ConfigError listing every problem."""
    file = Path(path)
    doc = parse_file(file, "the inventory")
    if doc.data is None:
        raise ConfigError([f"{file}:1:1: (document): the file is empty; expected version: 1"])
    findings = [*doc.problems, *schema_findings(doc, tenants_validator())]
    problems: list[Problem] = [place(doc, finding, []) for finding in findings]
    if problems:
        raise ConfigError([p.format(str(file)) for p in sorted(problems)])
    data = doc.data
    assert isinstance(data, dict)
    folder = file.parent
    seen: dict[str, str] = {}
    entries = []
    for name, spec in data["tenants"].items():
        folded = spec["tenant"].casefold()
        if folded in seen:
            line, column = doc.position(("tenants", name, "tenant"))
            problems.append(
                Problem(
                    line,
                    column,
                    f"tenants.{name}.tenant",
                    f"tenant {spec['tenant']!r} is already listed as {seen[folded]!r}; one "
                    "entry per tenant",
                )
            )
        seen.setdefault(folded, name)
        entries.append(
            TenantEntry(
                name=name,
                tenant=spec["tenant"],
                cloud=spec.get("cloud", "commercial"),
                groups=tuple(spec.get("groups", ())),
                overlay=folder / spec["overlay"] if "overlay" in spec else None,
                client_id=spec.get("client_id"),
                credential_env_prefix=spec.get("credential_env_prefix"),
            )
        )
    if problems:
        raise ConfigError([p.format(str(file)) for p in sorted(problems)])
    clouds = {
        cloud: CloudApp(app.get("client_id"), app.get("credential_env_prefix"))
        for cloud, app in data.get("clouds", {}).items()
    }
    return Inventory(file, folder / data["base"], tuple(entries), clouds)
