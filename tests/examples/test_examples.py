"""The CI examples under examples/ and .pre-commit-hooks.yaml: they parse, every `authpolicy`
command line in them is accepted by the real argument parser, and they keep the promises made
in docs/gitops.md (no stored secret, OIDC, one apply at a time, the renderer's comment marker)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").rglob("*.yml"))
GITHUB = {p.name: p for p in (ROOT / "examples" / "github").glob("*.yml")}
AZURE = ROOT / "examples" / "azure-devops" / "azure-pipelines.yml"
HOOKS = ROOT / ".pre-commit-hooks.yaml"

# Shell syntax that ends the authpolicy command on a line.
_SHELL_STOP = {">", ">>", "2>", "2>&1", "|", "||", "&&", ";", "<"}


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# Keys whose values are shell scripts: GitHub `run`, Azure DevOps `script` / `inlineScript`.
_SCRIPT_KEYS = {"run", "script", "inlineScript"}


def _scripts(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _SCRIPT_KEYS and isinstance(value, str):
                yield value
            else:
                yield from _scripts(value)
    elif isinstance(node, list):
        for value in node:
            yield from _scripts(value)


ACTION_USES = re.compile(r"^OWNER/authpolicy@v\d+\.\d+\.\d+$")


def _action_steps(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if isinstance(node.get("uses"), str) and node["uses"].startswith("OWNER/authpolicy"):
            yield node
        for value in node.values():
            yield from _action_steps(value)
    elif isinstance(node, list):
        for value in node:
            yield from _action_steps(value)


def _action_argv(step: dict[str, Any]) -> list[str]:
    """The command our action (action/run.sh) runs for a step's `with:` inputs."""
    given = step.get("with") or {}
    verb, config = given.get("verb", "plan"), given.get("config", "policies.yaml")
    extra = shlex.split(given.get("args", ""))
    if verb == "plan":
        fmt = given.get("format", "markdown")
        return ["plan", "-c", config, "--format", fmt, "--out", "plan.json", "--detailed-exitcode"]
    if verb in ("drift",):
        return [verb, "-c", config, "--format", given.get("format", "markdown"), *extra]
    if verb == "apply":
        plan = [given["plan"]] if given.get("plan") else []
        return ["apply", *plan, "-c", config, "--auto-approve", *extra]
    if verb == "validate":
        return ["validate", "-c", config, *extra]
    return [verb, *extra]


def authpolicy_commands(path: Path) -> list[list[str]]:
    """Every `authpolicy ...` command in the file's scripts, as argv without `authpolicy`,
    and what each step of our action runs, in file order."""
    commands: list[list[str]] = [_action_argv(step) for step in _action_steps(_load(path))]
    for script in _scripts(_load(path)):
        joined = re.sub(r"\\\n\s*", " ", script)  # line continuations
        for line in joined.splitlines():
            line = line.strip()
            if not line.startswith("authpolicy "):
                continue
            argv: list[str] = []
            for word in shlex.split(line)[1:]:
                if word in _SHELL_STOP or word.startswith((">", "2>")):
                    break
                argv.append(word)
            commands.append(argv)
    return commands


def test_there_are_examples_for_github_and_azure_devops() -> None:
    assert sorted(GITHUB) == [
        "authpolicy-apply.yml",
        "authpolicy-compliance.yml",
        "authpolicy-drift.yml",
        "authpolicy-fleet.yml",
        "authpolicy-pr.yml",
    ]
    assert (ROOT / "examples" / "azure-devops" / "azure-pipelines-fleet.yml").is_file()
    assert AZURE.is_file()


@pytest.mark.parametrize("path", [*EXAMPLES, HOOKS], ids=lambda p: p.name)
def test_every_file_parses_as_yaml(path: Path) -> None:
    assert _load(path)


@pytest.mark.parametrize("path", [*EXAMPLES, HOOKS], ids=lambda p: p.name)
def test_every_authpolicy_command_line_parses(path: Path) -> None:
    commands = authpolicy_commands(path) if path != HOOKS else []
    if path == HOOKS:
        for hook in _load(HOOKS):
            commands.append(shlex.split(hook["entry"])[1:] + list(hook.get("args", [])))
    assert commands, f"{path.name} runs no authpolicy command"
    parser = build_parser()
    for argv in commands:
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{path.name}: `authpolicy {' '.join(argv)}` is not accepted by the CLI")


def _verbs(path: Path) -> list[str]:
    return [argv[0] for argv in authpolicy_commands(path)]


def test_the_workflows_run_what_the_issue_asks() -> None:
    pr = authpolicy_commands(GITHUB["authpolicy-pr.yml"])
    assert pr[0] == ["validate", "-c", "policies.yaml"]
    plan = pr[1]
    assert plan[0] == "plan" and plan[plan.index("--format") + 1] == "markdown"
    assert "--out" in plan and "--detailed-exitcode" in plan
    apply = authpolicy_commands(GITHUB["authpolicy-apply.yml"])
    assert [a[:2] for a in apply] == [["apply", "reviewed/plan.json"]]
    assert "--auto-approve" in apply[0]
    assert _verbs(GITHUB["authpolicy-drift.yml"]) == ["drift"]
    assert _verbs(AZURE) == ["validate", "plan", "apply", "drift"]


def test_github_workflows_use_oidc_and_no_stored_secret() -> None:
    for name, path in GITHUB.items():
        text = path.read_text(encoding="utf-8")
        workflow = _load(path)
        assert workflow["permissions"]["id-token"] == "write", name
        assert "secrets." not in text, name
        assert "AZURE_CLIENT_SECRET" not in text and "CERTIFICATE" not in text, name
        assert "audience=api://AzureADTokenExchange" in text, name
        assert "AZURE_FEDERATED_TOKEN_FILE=" in text, name
        # YAML 1.1 reads the key `on` as True.
        assert True in workflow or "on" in workflow, name


def test_applies_never_overlap_and_are_never_cancelled() -> None:
    workflow = _load(GITHUB["authpolicy-apply.yml"])
    assert workflow["concurrency"] == {"group": "authpolicy-apply", "cancel-in-progress": False}
    assert workflow[True]["push"]["branches"] == ["main"]
    assert workflow["jobs"]["apply"]["environment"] == "authpolicy-apply"
    pipeline = _load(AZURE)
    assert pipeline["lockBehavior"] == "sequential"


def test_the_fleet_workflow_fans_out_on_the_matrix_and_comments_once() -> None:
    fleet = GITHUB["authpolicy-fleet.yml"]
    workflow = _load(fleet)
    jobs = workflow["jobs"]
    for name in ("plan", "apply"):
        assert jobs[name]["strategy"]["matrix"] == "${{ fromJSON(needs.matrix.outputs.tenants) }}"
        assert jobs[name]["strategy"]["fail-fast"] is False  # one tenant never stops the rest
    # One apply per tenant at a time, never cancelled half-way.
    assert jobs["apply"]["concurrency"] == {
        "group": "authpolicy-apply-${{ matrix.name }}",
        "cancel-in-progress": False,
    }
    commands = authpolicy_commands(fleet)
    assert "$(authpolicy tenants matrix --tenants tenants.yaml)" in fleet.read_text("utf-8")
    build_parser().parse_args(["tenants", "matrix", "--tenants", "tenants.yaml"])
    assert any(c[:2] == ["tenants", "combine"] for c in commands)
    assert any(c[0] == "apply" and "--tenants" in c and "--plans" in c for c in commands)
    comment = jobs["comment"]["steps"][-1]
    from reconciler.fleet.render import FLEET_MARKER

    assert comment["env"]["MARKER"] == FLEET_MARKER
    azure = ROOT / "examples" / "azure-devops" / "azure-pipelines-fleet.yml"
    assert "$(authpolicy tenants matrix --tenants tenants.yaml --format azure-devops)" in (
        azure.read_text("utf-8")
    )


def test_drift_runs_nightly() -> None:
    workflow = _load(GITHUB["authpolicy-drift.yml"])
    assert re.fullmatch(r"\d+ \d+ \* \* \*", workflow[True]["schedule"][0]["cron"])
    assert re.fullmatch(r"\d+ \d+ \* \* \*", _load(AZURE)["schedules"][0]["cron"])


def test_azure_devops_uses_workload_identity_federation() -> None:
    text = AZURE.read_text(encoding="utf-8")
    assert "secret" not in text.casefold()
    assert text.count("addSpnToEnvironment: true") == 3
    assert text.count("printf '%s' \"${idToken}\"") == 3


def test_the_comment_marker_is_the_markdown_renderers() -> None:
    from reconciler.render.markdown import MARKER as marker

    action = _load(ROOT / "action.yml")  # the pull-request workflow comments through it
    comment_step = next(
        s for s in action["runs"]["steps"] if s.get("uses", "").startswith("actions/github-script")
    )
    from reconciler.fleet.render import FLEET_MARKER

    # The single-tenant plan's marker, or the fleet's when the `tenants` input is set.
    assert comment_step["env"]["MARKER"] == (
        f"${{{{ inputs.tenants != '' && '{FLEET_MARKER}' || '{marker}' }}}}"
    )
    assert _load(AZURE)["variables"]["PLAN_MARKER"] == marker


def test_pre_commit_hook_runs_validate_on_policies_yaml_only() -> None:
    (hook,) = _load(HOOKS)
    assert hook["id"] == "authpolicy-validate"
    assert hook["entry"] == "authpolicy validate"
    assert hook["pass_filenames"] is False
    files = re.compile(hook["files"])
    assert files.search("policies.yaml") and files.search("tenants/prod/policies.yml")
    assert not files.search("policies.yaml.bak") and not files.search("mypolicies.yaml")


README = ROOT / "README.md"


def test_readme_keeps_the_two_set_up_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert (
        "```sh\n"
        "make demo   # creates .venv, installs, runs the demo against the embedded emulated "
        "tenant\n"
        "make test   # creates .venv, installs with test extras, runs the test suite\n"
        "```\n"
    ) in text


def test_every_authpolicy_command_in_the_readme_parses() -> None:
    text = README.read_text(encoding="utf-8")
    # `$ authpolicy ...` in any code block; bare `authpolicy ...` lines only in sh blocks
    # (text blocks hold output such as "authpolicy plan for tenant ...").
    shell = "\n".join(re.findall(r"```sh\n(.*?)```", text, flags=re.S))
    lines = re.findall(r"^\s*\$ authpolicy (.+)$", text, flags=re.M)
    lines += re.findall(r"^\s*authpolicy (\w.+?)(?:\s+#.*)?$", shell, flags=re.M)
    assert len(lines) >= 10
    parser = build_parser()
    for line in lines:
        argv: list[str] = []
        for word in shlex.split(line.split(";")[0]):
            if word in _SHELL_STOP or word.startswith((">", "2>")):
                break
            argv.append(word)
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"README: `authpolicy {line}` is not accepted by the CLI")


def test_every_github_step_runs_or_uses_something() -> None:
    for name, path in GITHUB.items():
        for job_name, job in _load(path)["jobs"].items():
            assert job["runs-on"] == "ubuntu-latest", (name, job_name)
            for step in job["steps"]:
                assert ("run" in step) != ("uses" in step), (name, job_name, step)


def test_apply_downloads_the_artifact_the_pr_workflow_uploads() -> None:
    pr_steps = _load(GITHUB["authpolicy-pr.yml"])["jobs"]["plan"]["steps"]
    upload = next(s for s in pr_steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["with"]["name"] == "authpolicy-plan"
    # The action's outputs: RUNNER_TEMP/authpolicy/plan.json and plan.md, so the artifact holds
    # plan.json at its root (action/run.sh).
    assert upload["with"]["path"].split("\n")[:2] == [
        "${{ steps.plan.outputs.plan-path }}",
        "${{ steps.plan.outputs.markdown-path }}",
    ]
    run_sh = (ROOT / "action" / "run.sh").read_text(encoding="utf-8")
    assert 'plan_path="${out_dir}/plan.json"' in run_sh
    apply_text = GITHUB["authpolicy-apply.yml"].read_text(encoding="utf-8")
    assert "gh run list --workflow authpolicy-pr.yml" in apply_text
    assert 'gh run download "${run_id}" --name authpolicy-plan --dir reviewed' in apply_text
    # ...and applies the plan.json that artifact holds.
    assert authpolicy_commands(GITHUB["authpolicy-apply.yml"])[0][1] == "reviewed/plan.json"
    azure = AZURE.read_text(encoding="utf-8")
    assert "artifact: authpolicy-plan" in azure
    assert '"$(Pipeline.Workspace)/authpolicy-plan/plan.json"' in azure


def _all_scripts() -> list[tuple[str, str, str]]:
    """(file, kind, text) of every shell script and github-script body in the examples."""
    found: list[tuple[str, str, str]] = []
    for path in EXAMPLES:

        def walk(node: Any, name: str = path.name) -> None:
            if isinstance(node, dict):
                for key, value in node.items():
                    if key in _SCRIPT_KEYS and isinstance(value, str):
                        found.append((name, "bash", value))
                    elif key == "with" and isinstance(value, dict) and "script" in value:
                        found.append((name, "js", value["script"]))
                    else:
                        walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(_load(path))
    return found


def test_every_shell_script_is_valid_bash() -> None:
    scripts = [s for s in _all_scripts() if s[1] == "bash"]
    assert len(scripts) >= 12
    for name, _, text in scripts:
        result = subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True)
        assert result.returncode == 0, f"{name}: {result.stderr}\n{text}"


def test_the_embedded_python_of_the_azure_pipeline_compiles() -> None:
    bodies = [
        m.group(1)
        for _, _, text in _all_scripts()
        for m in re.finditer(r"<<'PY'\n(.*?)\nPY", text, flags=re.S)
    ]
    assert len(bodies) == 1
    compile(bodies[0], "azure-pipelines.yml", "exec")


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_every_github_script_body_is_valid_javascript(tmp_path: Path) -> None:
    bodies = [(name, text) for name, kind, text in _all_scripts() if kind == "js"]
    # The drift issue and the fleet's combined comment; the plan comment is the action's.
    assert sorted(name for name, _ in bodies) == ["authpolicy-drift.yml", "authpolicy-fleet.yml"]
    action = _load(ROOT / "action.yml")
    bodies += [
        ("action.yml", step["with"]["script"])
        for step in action["runs"]["steps"]
        if step.get("uses", "").startswith("actions/github-script")
    ]
    assert len(bodies) == 3
    for name, text in bodies:
        # actions/github-script runs the body inside an async function.
        source = tmp_path / "script.js"
        source.write_text(f"(async function () {{\n{text}\n}});\n", encoding="utf-8")
        result = subprocess.run(["node", "--check", str(source)], capture_output=True, text=True)
        assert result.returncode == 0, f"{name}: {result.stderr}"


POLICY_EXAMPLES = sorted((ROOT / "examples" / "policies").glob("*.yaml"))


@pytest.mark.parametrize("path", POLICY_EXAMPLES, ids=lambda p: p.name)
def test_example_policy_files_are_valid(path: Path) -> None:
    from reconciler.desired import load_desired_state

    desired = load_desired_state(str(path))
    assert desired.policies


@pytest.mark.integration
def test_example_policy_files_plan_apply_and_converge_on_the_emulator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.commands.emulated import connect, emulator, run_cli

    assert len(POLICY_EXAMPLES) == 3
    for path in POLICY_EXAMPLES:
        with emulator(tmp_path / path.stem, users=150) as emu:
            connect(monkeypatch, emu)
            code, out, err = run_cli(capsys, "plan", "-c", str(path), "--detailed-exitcode")
            assert code in (2, 3), f"{path.name}: {out}{err}"
            code, out, err = run_cli(
                capsys, "apply", "-c", str(path), "--auto-approve", "--force",
                "--audit-log", str(tmp_path / f"{path.stem}.jsonl"),
            )  # fmt: skip
            assert code == 0, f"{path.name}: {out}{err}"
            code, out, err = run_cli(capsys, "plan", "-c", str(path), "--detailed-exitcode")
            assert code == 0, f"{path.name} did not converge: {out}{err}"


def test_nothing_tells_anyone_to_install_the_unrelated_authpolicy_package() -> None:
    # `authpolicy` on the package index is someone else's project (round2-facts.md §5): our
    # distribution is exo-authpolicy, installed from a pinned tag of this repository.
    import re
    import subprocess

    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    stranger = re.compile(r"""(pip|pipx|uv pip)\s+install\s+(-\S+\s+)*["']?authpolicy\b(?!-)""")
    offenders = []
    for name in tracked:
        path = ROOT / name
        if (
            path.suffix not in (".md", ".yml", ".yaml", ".toml", ".py", ".txt", "")
            or not path.is_file()
        ):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        offenders += [f"{name}: {m.group(0)}" for m in stranger.finditer(text)]
    assert offenders == []
    assert 'name = "exo-authpolicy"' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")


def test_the_pull_request_workflow_uses_the_action_pinned_to_a_tag() -> None:
    steps = list(_action_steps(_load(GITHUB["authpolicy-pr.yml"])))
    assert [step["with"]["verb"] for step in steps] == ["validate", "plan"]
    assert all(ACTION_USES.match(step["uses"]) for step in steps)
    assert steps[1]["with"]["comment"] == "true"
    text = GITHUB["authpolicy-pr.yml"].read_text(encoding="utf-8")
    assert "pip install" not in text  # the action installs its own checkout
