"""shellcheck is clean on every shell script of the repository: *.sh, *.sbatch, .ci/run,
and any other file that starts with a shell shebang (test doubles included)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "build", "dist", "test-results", "bench-results",
             ".hypothesis", ".pytest_cache", "__pycache__", ".mypy_cache", ".tox"}
SHEBANG = re.compile(rb"^#!\s*(/usr)?/bin/(env\s+)?(ba|da|k)?sh\b")


def shell_scripts() -> list[Path]:
    found = []
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        for name in files:
            path = Path(root) / name
            if path.suffix in (".sh", ".sbatch"):
                found.append(path)
                continue
            try:
                with open(path, "rb") as f:
                    head = f.read(64)
            except OSError:
                continue
            if SHEBANG.match(head):
                found.append(path)
    return sorted(found)


def test_the_scripts_that_must_be_checked_are_found():
    names = {str(p.relative_to(REPO)) for p in shell_scripts()}
    for must in (".ci/run", "scripts/install.sh", "scripts/run-tests.sh", "jobs/common.sh", "jobs/pipeline.sh",
                 "jobs/train.sbatch", "jobs/compress.sbatch", "jobs/decompress.sbatch"):
        assert must in names, f"{must} not found among {sorted(names)}"


@pytest.mark.skipif(shutil.which("shellcheck") is None,
                    reason="shellcheck not installed (scripts/install.sh installs it)")
def test_shellcheck_is_clean():
    scripts = [str(p.relative_to(REPO)) for p in shell_scripts()]
    # jobs/.shellcheckrc lets it follow `source common.sh` (external-sources) from any folder.
    res = subprocess.run(["shellcheck", "--format=gcc", *scripts], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, f"shellcheck findings in {len(scripts)} scripts:\n{res.stdout}{res.stderr}"
