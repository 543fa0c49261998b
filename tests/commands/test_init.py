"""`authpolicy init` and `authpolicy schema`, and the files the package ships for them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler import cli
from reconciler.desired import load_desired_state
from reconciler.desired.starter import SCHEMA_HEADER

ROOT = Path(__file__).resolve().parents[2]


def test_init_in_an_empty_folder_writes_a_file_that_validates_and_its_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "new"
    assert cli.main(["init", str(target)]) == 0
    policies, schema = target / "policies.yaml", target / "policies.schema.json"
    assert capsys.readouterr().out.splitlines()[0] == f"wrote {policies} and {schema}"
    text = policies.read_text(encoding="utf-8")
    assert text.splitlines()[0] == SCHEMA_HEADER  # resolves beside the file, anywhere
    assert json.loads(schema.read_text(encoding="utf-8")) == json.loads(
        (ROOT / "schema" / "policies.schema.json").read_text(encoding="utf-8")
    )
    state = load_desired_state(str(policies))
    assert [p.name for p in state.policies] == ["Block Basic Auth"]
    assert state.tenant is None  # the user fills it in
    assert cli.main(["validate", "-c", str(policies)]) == 0


def test_init_never_replaces_a_users_file_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "policies.yaml").write_text("mine\n", encoding="utf-8")
    assert cli.main(["init", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"error: {tmp_path / 'policies.yaml'} already exists; edit it, or pass --force to "
        "replace it with the starter\n"
    )
    assert (tmp_path / "policies.yaml").read_text(encoding="utf-8") == "mine\n"
    assert cli.main(["init", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "policies.yaml").read_text(encoding="utf-8").startswith(SCHEMA_HEADER)


def test_schema_prints_the_shipped_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert printed == json.loads((ROOT / "schema" / "policies.schema.json").read_text("utf-8"))


def test_the_packaged_sample_is_the_repositorys_policies_yaml() -> None:
    packaged = (ROOT / "reconciler" / "samples" / "policies.yaml").read_text(encoding="utf-8")
    root = (ROOT / "policies.yaml").read_text(encoding="utf-8")
    assert packaged.splitlines()[0] == SCHEMA_HEADER
    assert packaged.splitlines()[1:] == root.splitlines()[1:]


def test_demo_outside_the_repository_uses_the_packaged_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no policies.yaml here, as after `pip install` of the wheel
    assert cli.main(["demo", "--users", "300"]) == 0
    out = capsys.readouterr().out
    assert "The tenant now matches the file" in out or "No changes." in out
    assert not (tmp_path / "policies.yaml").exists()  # nothing left in the user's folder
    assert cli.main(["demo", "-c", "missing.yaml"]) == 1
    assert capsys.readouterr().err == (
        f"error: missing.yaml not found in {tmp_path}: check the path\n"
    )


def test_init_and_export_never_write_through_a_link_or_over_a_device(tmp_path: Path) -> None:
    import os

    from reconciler.commands.export import write_file
    from reconciler.desired.starter import write_starter
    from reconciler.errors import AuthPolicyError

    target = tmp_path / "elsewhere.yaml"
    target.write_text("keep me\n", encoding="utf-8")
    (tmp_path / "policies.yaml").symlink_to(target)
    with pytest.raises(AuthPolicyError, match="it is a symbolic link"):
        write_starter(tmp_path, force=True)
    assert target.read_text(encoding="utf-8") == "keep me\n"
    fifo = tmp_path / "out.yaml"
    os.mkfifo(fifo)
    with pytest.raises(AuthPolicyError, match="not a regular file"):
        write_file(str(fifo), "version: 1\n", force=True)
