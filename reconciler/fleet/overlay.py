"""A tenant's desired state: the shared base with its overlay merged over it, by stated rules.

- `policies` replace by name (case-insensitively) or are added;
- `assignments.rules` replace by name in place; a new rule goes before the rule its `before:`
  names, else last (after a `match: all` rule it could never match: a warning, and the rule is
  left out, which changes nothing the plan does);
- `safety`, `smtp_auth` and `evidence` merge key by key (an overlay that sets one guard keeps
  the others); every other key replaces the base's;
- `tenant:` may be in neither file: the inventory's `tenant` is the one checked, and is written
  into the merged file.

Every problem names the file it is in (base or overlay), its line and column, as validate does.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Any

import yaml

from reconciler.desired.loader import place, placed_problems
from reconciler.desired.problems import Finding, Path, Problem
from reconciler.desired.schema import schema_findings
from reconciler.desired.source import Document
from reconciler.errors import ConfigError
from reconciler.fleet.inventory import TenantEntry, parse_file

KEY_BY_KEY = ("safety", "smtp_auth", "evidence")


@dataclass
class Merged:
    """The merged document, which file each part came from, and the merge's warnings."""

    doc: Document
    origin: dict[Path, str]
    warnings: list[str] = field(default_factory=list)

    def file_of(self, path: Path) -> str:
        while path not in self.origin and path:
            path = path[:-1]
        return self.origin.get(path, self.origin[()])

    def text(self, entry: TenantEntry, sources: str) -> str:
        """The merged desired state as a policies.yaml (what plan and apply read)."""
        data = dict(self.doc.data) if isinstance(self.doc.data, dict) else {}
        data = {
            "version": 1,
            "tenant": entry.tenant,
            **{k: v for k, v in data.items() if k not in ("version", "tenant")},
        }
        header = (
            f"# Made by authpolicy for tenant {entry.name} ({entry.tenant}) from {sources}.\n"
            "# Do not edit: change the base or the overlay, and plan again.\n"
        )
        return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


class _Builder:
    def __init__(self, base: Document, base_name: str, overlay: Document, overlay_name: str):
        self.base, self.overlay = base, overlay
        self.base_name, self.overlay_name = base_name, overlay_name
        self.data: dict[str, Any] = copy.deepcopy(base.data) if isinstance(base.data, dict) else {}
        self.values = dict(base.values)
        self.keys = dict(base.keys)
        self.origin: dict[Path, str] = {(): base_name}
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def fail(self, path: Path, message: str, *, at_key: bool = False) -> None:
        problem = place(self.overlay, Finding(path, message, at_key=at_key))
        self.problems.append(problem.format(self.overlay_name))

    def _drop(self, dst: Path) -> None:
        for table in (self.values, self.keys):
            for path in [p for p in table if p[: len(dst)] == dst]:
                del table[path]

    def graft(self, dst: Path, src_doc: Document, src: Path, name: str) -> None:
        """Positions of `src` in `src_doc` now describe `dst` of the merged document."""
        self._drop(dst)
        for table, source in ((self.values, src_doc.values), (self.keys, src_doc.keys)):
            for path, position in source.items():
                if path[: len(src)] == src:
                    table[dst + path[len(src) :]] = position
        self.origin[dst] = name

    def merge(self) -> None:
        over = self.overlay.data
        if not isinstance(over, dict):
            return
        for key, value in over.items():
            if key == "version":
                continue
            if key == "tenant":
                self.fail(
                    ("tenant",),
                    "the inventory (tenants.yaml) names this tenant; remove `tenant:` here",
                    at_key=True,
                )
            elif key == "policies":
                self._policies(value)
            elif key == "assignments":
                self._assignments(value)
            elif key in KEY_BY_KEY:
                self._key_by_key(key, value)
            else:
                self.data[key] = copy.deepcopy(value)
                self.graft((key,), self.overlay, (key,), self.overlay_name)

    def _mapping(self, key: str, value: Any) -> dict[str, Any] | None:
        current = self.data.get(key)
        if current is None:
            current = self.data[key] = {}
        if not isinstance(current, dict) or not isinstance(value, dict):
            self.fail((key,), f"can't be merged: `{key}` must be a mapping in both files")
            return None
        return current

    def _policies(self, value: Any) -> None:
        current = self._mapping("policies", value)
        if current is None:
            return
        for name, spec in value.items():
            match = next((k for k in current if k.casefold() == str(name).casefold()), None)
            if match is not None:
                rebuilt = {}
                for k, v in current.items():
                    rebuilt[name if k == match else k] = spec if k == match else v
                current.clear()
                current.update(rebuilt)
                self._drop(("policies", match))
            else:
                current[name] = copy.deepcopy(spec)
            self.graft(("policies", name), self.overlay, ("policies", name), self.overlay_name)

    def _key_by_key(self, key: str, value: Any) -> None:
        current = self._mapping(key, value)
        if current is None:
            return
        for sub, sub_value in value.items():
            current[sub] = copy.deepcopy(sub_value)
            self.graft((key, sub), self.overlay, (key, sub), self.overlay_name)

    def _assignments(self, value: Any) -> None:
        current = self._mapping("assignments", value)
        if current is None:
            return
        for sub, sub_value in value.items():
            if sub == "rules":
                self._rules(current, sub_value)
            else:
                current[sub] = copy.deepcopy(sub_value)
                self.graft(
                    ("assignments", sub), self.overlay, ("assignments", sub), self.overlay_name
                )

    def _rules(self, assignments: dict[str, Any], overlay_rules: Any) -> None:
        base_rules = assignments.get("rules", [])
        if not isinstance(base_rules, list) or not isinstance(overlay_rules, list):
            self.fail(("assignments", "rules"), "can't be merged: `rules` must be a list in both")
            return
        # (rule, document it comes from, its index there)
        rules: list[tuple[dict[str, Any], Document, int]] = [
            (r, self.base, i) for i, r in enumerate(base_rules) if isinstance(r, dict)
        ]

        def index_of(name: str) -> int | None:
            folded = name.casefold()
            return next(
                (
                    i
                    for i, (r, _, _) in enumerate(rules)
                    if str(r.get("name", "")).casefold() == folded
                ),
                None,
            )

        for position, rule in enumerate(overlay_rules):
            if not isinstance(rule, dict):
                continue
            rule = dict(rule)
            before = rule.pop("before", None)
            where = ("assignments", "rules", position)
            existing = index_of(str(rule.get("name", "")))
            if existing is not None:
                rules.pop(existing)
            if before is not None:
                target = index_of(str(before))
                if target is None:
                    self.fail(
                        (*where, "before"),
                        f"no rule named {before!r} to put this rule before; name a rule of "
                        "the base or of this overlay",
                    )
                    continue
                rules.insert(target, (rule, self.overlay, position))
            elif existing is not None:
                rules.insert(existing, (rule, self.overlay, position))
            else:
                catch_all = next(
                    (
                        r.get("name")
                        for r, _, _ in rules
                        if r.get("match") == "all" and not r.get("except")
                    ),
                    None,
                )
                if catch_all is not None:
                    # It could never match: leaving it out changes nothing the plan does.
                    line, column = self.overlay.position(where)
                    self.warnings.append(
                        f"{self.overlay_name}:{line}:{column}: rule {rule.get('name')!r} would "
                        f"come after rule {catch_all!r} (match: all), where it can never match, "
                        f"so it is left out; give it `before: {catch_all}`"
                    )
                    continue
                rules.append((rule, self.overlay, position))
        assignments["rules"] = [r for r, _, _ in rules]
        self._drop(("assignments", "rules"))
        for index, (_, doc, source_index) in enumerate(rules):
            name = self.base_name if doc is self.base else self.overlay_name
            self.graft(
                ("assignments", "rules", index), doc, ("assignments", "rules", source_index), name
            )


def _overlay_problems(doc: Document, name: str) -> list[str]:
    """The overlay alone, against the policies.yaml schema (`before:` allowed on rules)."""
    data = doc.data
    if data is None:
        return []
    checked = copy.deepcopy(data)
    if isinstance(checked, dict):
        checked.setdefault("version", 1)
        rules = (
            (checked.get("assignments") or {}).get("rules")
            if isinstance(checked.get("assignments"), dict)
            else None
        )
        for rule in rules if isinstance(rules, list) else ():
            if isinstance(rule, dict):
                rule.pop("before", None)
    view = Document(checked, doc.values, doc.keys, doc.problems, doc.broken)
    placed = [place(doc, finding) for finding in [*doc.problems, *schema_findings(view)]]
    return [problem.format(name) for problem in sorted(placed)]


def merge_files(base: FilePath, overlay: FilePath | None, entry: TenantEntry) -> Merged:
    """The tenant's merged desired state, checked; ConfigError naming file, line and key."""
    base_doc = parse_file(base, "the base")
    base_name = str(base)
    problems: list[str] = []
    if isinstance(base_doc.data, dict) and "tenant" in base_doc.data:
        line, column = base_doc.key_position(("tenant",))
        problems.append(
            f"{base_name}:{line}:{column}: tenant: a shared base names no tenant (tenants.yaml "
            "names each one); remove it"
        )
    if overlay is None:
        merged = Merged(base_doc, {(): base_name})
    else:
        overlay_doc = parse_file(overlay, f"the overlay of tenant {entry.name}")
        problems += _overlay_problems(overlay_doc, str(overlay))
        if problems:
            raise ConfigError(problems)
        builder = _Builder(base_doc, base_name, overlay_doc, str(overlay))
        builder.merge()
        problems += builder.problems
        doc = Document(builder.data, builder.values, builder.keys, list(base_doc.problems))
        merged = Merged(doc, builder.origin, builder.warnings)
    if problems:
        raise ConfigError(problems)
    merged_problems = _placed(merged, placed_problems(merged.doc))
    if merged_problems:
        raise ConfigError(merged_problems)
    return merged


def _placed(merged: Merged, problems: Iterable[tuple[Path, Problem]]) -> list[str]:
    return sorted(problem.format(merged.file_of(path)) for path, problem in problems)
