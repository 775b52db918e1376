"""The command-line shell: help, version, usage errors."""

from tezip_hpc import __version__


def test_help_lists_commands(cli):
    res = cli("--help")
    assert res.returncode == 0
    assert "doctor" in res.stdout
    assert "exit status" in res.stdout


def test_version(cli):
    res = cli("--version")
    assert res.returncode == 0
    assert res.stdout.strip() == f"tezip-hpc {__version__}"


def test_unknown_command_is_a_usage_error(cli):
    res = cli("frobnicate")
    assert res.returncode == 2
    assert "invalid choice" in res.stderr
    assert "Traceback" not in res.stderr


def test_no_command_is_a_usage_error(cli):
    res = cli()
    assert res.returncode == 2
    assert "required" in res.stderr
