from reconciler.cli import VERBS, main


def test_every_verb_has_help(capsys):
    for verb in VERBS:
        try:
            main([verb, "--help"])
        except SystemExit as exc:
            assert exc.code == 0
    out = capsys.readouterr().out
    assert "usage: authpolicy" in out


def test_unknown_verb_is_exit_1(capsys):
    assert main(["frobnicate"]) == 1
    assert "invalid choice" in capsys.readouterr().err


def test_no_verb_is_exit_1(capsys):
    assert main([]) == 1


def test_help_version_and_validate_load_only_what_they_need() -> None:
    """`--help`/`--version` import no verb; `validate` imports no HTTP, TLS or tenant code.
    (The time it saves is measured in bench/, case startup, not here.)"""
    import subprocess
    import sys

    probe = (
        "import sys; from reconciler.cli import build_parser, chosen_verb;"
        "build_parser(only=chosen_verb(sys.argv[1:]) or '');"
        "heavy = ['requests', 'msal', 'rich', 'cryptography', 'reconciler.tenant.exo.client',"
        " 'reconciler.emulator', 'confusable_homoglyphs.confusables', 'jsonschema'];"
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    loaded = {}
    for argv in (["--version"], ["--help"], ["validate"]):
        run = subprocess.run(
            [sys.executable, "-c", probe, *argv], capture_output=True, text=True, check=True
        )
        loaded[argv[0]] = run.stdout.strip()
    assert loaded["--version"] == "" and loaded["--help"] == ""
    assert loaded["validate"] == "jsonschema"  # the schema check itself, nothing else
