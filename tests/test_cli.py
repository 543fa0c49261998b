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
