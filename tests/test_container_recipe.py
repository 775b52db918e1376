"""containers/tezip_hpc.def: no test builds the image (Apptainer is not in Debian's
archive), so this checks the recipe itself: a pinned base, the stack installed by
scripts/install.sh (one source of truth, the versions agreeing with it), %runscript and
%test running the tool, %help and %labels filled in, shell sections that shellcheck
accepts, and the build documented."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEF = REPO / "containers" / "tezip_hpc.def"


def _parse(text: str) -> tuple[dict[str, str], dict[str, str]]:
    header, sections, name = {}, {}, None
    for line in text.splitlines():
        m = re.match(r"^%(\w+)\b(.*)$", line)
        if m:
            name = m.group(1)
            sections[name] = ""
            continue
        if name is None:
            if line.strip() and not line.lstrip().startswith("#"):
                key, _, value = line.partition(":")
                header[key.strip()] = value.strip()
        else:
            sections[name] += line + "\n"
    return header, sections


@pytest.fixture(scope="module")
def recipe():
    assert DEF.exists(), f"{DEF} is missing"
    return _parse(DEF.read_text())


def _pin(script: str, name: str) -> str:
    m = re.search(rf"^{name}=(\S+)$", script, re.M)
    assert m, f"{name} not found in scripts/install.sh"
    return m.group(1)


def test_base_image_is_pinned(recipe):
    header, _ = recipe
    assert header.get("Bootstrap") == "docker"
    base = header.get("From", "")
    digest = re.fullmatch(r"[\w./-]+@sha256:[0-9a-f]{64}", base)
    tag = re.fullmatch(r"[\w./-]+:(\d+\.\d+\.\d+)[\w.-]*", base)
    assert digest or tag, f"From: {base!r} is not pinned to a release tag (X.Y.Z) or a digest"
    assert "latest" not in base
    # a CUDA runtime or NGC TensorFlow image: suited to GPU clusters
    assert re.match(r"(nvidia/cuda|nvcr\.io/nvidia/(cuda|tensorflow))[:@]", base), base


def test_stack_comes_from_the_install_script_only(recipe):
    _, sec = recipe
    post = sec.get("post", "")
    assert re.search(r"^\s*(\S+=\S+\s+)*bash\s+(\S*/)?scripts/install\.sh\b", post, re.M), post
    assert "pip install" not in post and "pip3 install" not in post, "the stack is defined in scripts/install.sh"
    files = sec.get("files", "")
    sources = [ln.split()[0] for ln in files.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    for needed in ("setup.cfg", "scripts", "tezip_hpc"):
        assert needed in sources, f"%files must copy {needed} (install.sh needs it)"
    for src in sources:
        assert (REPO / src).exists(), f"%files source {src} does not exist (paths are relative to the repo root)"


def test_labels_agree_with_the_install_script(recipe):
    header, sec = recipe
    labels = dict(ln.strip().split(None, 1) for ln in sec.get("labels", "").splitlines() if ln.strip())
    assert labels.get("org.opencontainers.image.title") == "tezip_hpc"
    install = (REPO / "scripts" / "install.sh").read_text()
    assert labels.get("tezip_hpc.tensorflow") == _pin(install, "TF_VERSION")
    assert labels.get("tezip_hpc.horovod") == _pin(install, "HOROVOD_VERSION")
    assert labels.get("org.opencontainers.image.base.name") == header["From"]


def test_runscript_runs_the_tool_and_test_runs_doctor(recipe):
    _, sec = recipe
    assert re.search(r'^\s*exec tezip-hpc "\$@"\s*$', sec.get("runscript", ""), re.M), sec.get("runscript")
    assert re.search(r"^\s*tezip-hpc doctor\s*$", sec.get("test", ""), re.M), sec.get("test")
    env = sec.get("environment", "")
    assert "/opt/tezip_hpc/.venv/bin" in env  # `python` and `tezip-hpc` are the venv's
    help_text = sec.get("help", "")
    assert len(help_text.split()) > 30 and "srun --mpi=pmix" in help_text and "TEZIP_SIF" in help_text


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (scripts/install.sh)")
@pytest.mark.parametrize("section", ["post", "environment", "runscript", "test"])
def test_shell_sections_pass_shellcheck(recipe, section, tmp_path):
    _, sec = recipe
    script = tmp_path / f"{section}.sh"
    script.write_text("#!/bin/sh\n" + sec[section])  # Apptainer runs these with /bin/sh
    res = subprocess.run(["shellcheck", "--shell=sh", str(script)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_build_is_documented():
    doc = (REPO / "docs" / "CLUSTER.md").read_text()
    assert "apptainer build tezip_hpc.sif containers/tezip_hpc.def" in doc
