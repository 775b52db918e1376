"""Fixtures the end-to-end tests share."""

from __future__ import annotations

import subprocess

import pytest


@pytest.fixture
def tmpfs(tmp_path, request):
    """A small tmpfs, a real full file system (needs root; skipped with the reason otherwise).
    Its size is the test's parameter (``indirect``), 256 KiB by default."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    size = getattr(request, "param", "256k")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {res.stderr.strip()[:200]}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
