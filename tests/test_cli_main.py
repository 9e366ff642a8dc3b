import pytest

from prunesearch.cli import main


@pytest.mark.parametrize(
    "argv",
    [["inspect", "--depth", "x"], [], ["no-such-command"], ["inspect", "--preset", "nope"]],
)
def test_bad_command_line_is_one_line_and_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error:" in err[0] and "--help" in err[0]


def test_help_exits_cleanly(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "COMMAND" in capsys.readouterr().out
