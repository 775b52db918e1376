"""The names job scripts use, from the tool (one rule for Python and shell): partial names,
the file behind a file.h5:/dataset spec, stale temporary files, and the atomic commit."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tezip_hpc.archive import atomic
from tezip_hpc.errors import ConfigError
from tezip_hpc.io import paths


@pytest.mark.parametrize("spec, part, file", [
    ("/d/out.h5:/g/ds", "/d/out.partial.h5:/g/ds", "/d/out.h5"),
    ("/d/scan.cxi:/entry/data", "/d/scan.partial.cxi:/entry/data", "/d/scan.cxi"),
    ("/d/y.npy", "/d/y.partial.npy", "/d/y.npy"),
    ("/d/y.TIFF", "/d/y.partial.TIFF", "/d/y.TIFF"),
    ("/d/frames/", "/d/frames-partial", "/d/frames"),
])
def test_partial_and_file_names(spec, part, file):
    assert paths.partial(spec) == part and paths.file_of(spec) == file
    assert paths.file_of(paths.partial(spec)) == paths.file_of(part)


def test_shell_form_stale_temps_and_commit(tmp_path):
    out = subprocess.run([sys.executable, "-m", "tezip_hpc", "job-paths", "rel/x.h5:/ds"], cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout
    assert f"TZ_PARTIAL={tmp_path}/rel/x.partial.h5:/ds" in out and f"TZ_FILE={tmp_path}/rel/x.h5" in out
    final = tmp_path / "a.npy"
    stale = tmp_path / atomic.temp_name("a.npy")
    stale.write_bytes(b"left by a killed rank")
    assert atomic.stale_temps(final) == [stale]
    (tmp_path / "a.partial.npy").write_bytes(b"1")
    atomic.commit(tmp_path / "a.partial.npy", final, force=False)
    (tmp_path / "b.partial.npy").write_bytes(b"2")
    with pytest.raises(ConfigError, match="created by another job"):
        atomic.commit(tmp_path / "b.partial.npy", final, force=False)
    assert final.read_bytes() == b"1" and not (tmp_path / "b.partial.npy").exists()


def test_bad_job_paths_input_is_one_line(tmp_path):
    for args, want in ((["", ], "empty name"), (["nosuch.h5", "--commit-to", "x.h5"], "no such output")):
        res = subprocess.run([sys.executable, "-m", "tezip_hpc", "job-paths", *args], cwd=tmp_path,
                             capture_output=True, text=True)
        assert res.returncode != 0 and want in res.stderr and "Traceback" not in res.stderr
