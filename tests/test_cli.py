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


def test_the_unraisable_hook_quiets_h5py_only():
    """Known by where the exception was raised (an h5py object, or h5py's code in the
    traceback), not by the text of its message."""
    import types

    import h5py

    from tezip_hpc.cli import _raised_in_h5py

    def tb_of(fn):
        try:
            fn()
        except Exception as exc:  # noqa: BLE001
            return exc.__traceback__

    def unraisable(obj, tb):
        return types.SimpleNamespace(object=obj, exc_traceback=tb)

    h5_tb = tb_of(lambda: h5py.File("/nonexistent/dir/x.h5", "r"))
    own_tb = tb_of(lambda: {}["h5py"])
    assert _raised_in_h5py(unraisable("h5py._objects.ObjectID.__dealloc__", h5_tb))
    assert _raised_in_h5py(unraisable(h5py.Empty("f"), None))
    assert not _raised_in_h5py(unraisable("h5py ObjectID", own_tb))  # the text alone says nothing
    assert not _raised_in_h5py(unraisable(None, None))
