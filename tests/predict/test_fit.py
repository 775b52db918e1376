"""`compress --fit`: a real (tiny, time-boxed) TensorFlow training on the input's first frames,
then compression with the exported integer model, embedded: the archive decodes with no
training and no TensorFlow step, within its bound; a fit stopped by SIGTERM keeps its
checkpoint and the same command resumes it; bad --fit options are one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from .helpers import blobs

ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}


def _cmd(*args):
    return [sys.executable, "-m", "tezip_hpc", *map(str, args)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("fit")
    x = blobs(48, 32, 32, seed=4)
    np.save(d / "x.npy", x)
    return d / "x.npy", x


def test_fit_trains_on_the_input_and_embeds_the_model(clip, tmp_path):
    src, x = clip
    out = tmp_path / "a.h5"
    res = subprocess.run(_cmd("compress", src, "-o", out, "--fit", "50%", "--fit-seconds", "6", "--mode", "abs",
                              "--bound", "2", "--tiles", "0"), capture_output=True, text=True, env=dict(os.environ, **ENV),
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "[fit] training on frames 0..23 of 48" in res.stdout
    assert "time box" in res.stdout and "exported" in res.stdout
    assert not (tmp_path / ".a.h5.fit").exists()  # work files removed with the archive complete
    import tezip_hpc
    from tezip_hpc.parallel.driver import info

    i = info(str(out))
    assert i["predictor"]["id"] == "prednet" and i["model_embedded"]
    assert "tiles" not in i["predictor"]["config"]
    assert i["predictor"]["config"]["arch"]["stack_sizes"] == [1, 8, 16]
    y = tezip_hpc.decompress(out)
    assert np.abs(y.astype(int) - x.astype(int)).max() <= 2


def test_a_fit_stopped_by_sigterm_resumes_with_the_same_command(clip, tmp_path):
    src, x = clip
    out = tmp_path / "b.h5"
    cmd = _cmd("compress", src, "-o", out, "--fit", "24", "--fit-seconds", "40", "--tiles", "0")
    ckpt = tmp_path / ".b.h5.fit" / "model.tzm.ckpt"
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, **ENV))
    try:
        t0 = time.time()
        while not ckpt.exists():
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.time() - t0 < 300, "no checkpoint appeared"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, (proc.returncode, stderr[-2000:])  # 143: the shell's rule
    assert "checkpoint is kept" in stderr and "\n" not in stderr.strip(), stderr[-2000:]
    assert not out.exists() and ckpt.exists()
    res = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, **ENV), timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming" in res.stdout
    import tezip_hpc

    assert np.array_equal(tezip_hpc.decompress(out), x)  # lossless by default
    assert not ckpt.parent.exists()


def test_a_fitted_model_that_cannot_pay_is_left_out_and_kept_beside_the_archive(clip, tmp_path):
    """The clip (49 KB) is smaller than the fitted model (~56 KB): with the tile choice the model
    cannot pay for its bytes, so the archive is classical, and the fitted model is not lost."""
    src, x = clip
    out = tmp_path / "d.h5"
    res = subprocess.run(_cmd("compress", src, "-o", out, "--fit", "50%", "--fit-seconds", "3"),
                         capture_output=True, text=True, env=dict(os.environ, **ENV), timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "written without the model" in res.stdout and "it is kept in" in res.stdout, res.stdout
    from tezip_hpc.parallel.driver import info

    i = info(str(out))
    assert i["predictor"]["id"] == "previous" and not i["model_embedded"]
    assert list((tmp_path / ".d.h5.fit").glob("*.tzm"))
    import tezip_hpc

    assert np.array_equal(tezip_hpc.decompress(out), x)


@pytest.mark.parametrize("args,msg", [
    (["--fit", "200%"], "the fit needs"),
    (["--fit", "ten"], "--fit takes a fraction"),
    (["--fit", "10%", "--predictor", "previous"], "nothing to learn"),
    (["--fit", "50%", "--fit-seconds", "0"], "--fit-seconds"),
    (["--fit", "inf%"], "--fit takes a fraction"),
])
def test_bad_fit_options_are_one_line_errors(clip, tmp_path, args, msg):
    src, _ = clip
    res = subprocess.run(_cmd("compress", src, "-o", tmp_path / "c.h5", *args), capture_output=True, text=True,
                         env=dict(os.environ, **ENV), timeout=300)
    assert res.returncode != 0 and msg in res.stderr, res.stderr[-2000:]
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "c.h5").exists() and not (tmp_path / ".c.h5.fit").exists()


def test_quantization_step_follows_the_bound():
    from tezip_hpc.predict.fit import fit_frames, quant_step

    assert quant_step("uint8", "abs", (2.0,), (0.0, 255.0)) == pytest.approx(5 / 255)
    assert quant_step("uint8", "abs", (0.0,), (0.0, 255.0)) == pytest.approx(1 / 255)
    assert quant_step("float32", "rel", (1e-3,), (-2.0, 2.0)) == pytest.approx(2e-3)
    assert quant_step("float32", "absrel", (1e-3, 1e-2), (0.0, 1.0)) == pytest.approx(2e-3)
    assert fit_frames("10%", 200) == 20 and fit_frames("0.25", 100) == 25 and fit_frames("30", 100) == 30


def test_a_changed_input_or_fit_is_staged_afresh_never_resumed(tmp_path):
    """The fit's folder remembers what it was staged from: the same job resumes its checkpoint,
    another input or other fit options start over."""
    from tezip_hpc.io.sources import ArraySource
    from tezip_hpc.predict.fit import FitPlan, fit_dir, stage_sample

    out = str(tmp_path / "a.h5")
    a, b = ArraySource(blobs(30, 16, 16, seed=1)[..., None]), ArraySource(blobs(30, 16, 16, seed=2)[..., None])
    plan = FitPlan(20, 60.0, 1 / 255)
    assert stage_sample(a, (0.0, 255.0), plan, out) is False
    (fit_dir(out) / "model.tzm.ckpt").write_bytes(b"checkpoint")
    assert stage_sample(a, (0.0, 255.0), plan, out) is True              # same job: resume
    assert stage_sample(a, (0.0, 255.0), FitPlan(24, 60.0, 1 / 255), out) is False  # other sample: afresh
    assert not (fit_dir(out) / "model.tzm.ckpt").exists()
    (fit_dir(out) / "model.tzm.ckpt").write_bytes(b"checkpoint")
    a2 = ArraySource(blobs(31, 16, 16, seed=1)[..., None], name="other")
    assert stage_sample(a2, (0.0, 255.0), FitPlan(24, 60.0, 1 / 255), out) is False  # other input: afresh
    assert stage_sample(b, (0.0, 10.0), FitPlan(24, 60.0, 1 / 255), out) is False


def test_one_fit_job_at_a_time_per_archive_name(tmp_path):
    """A second job on the same archive name is refused while the first runs, and leaves its
    folder alone; a lock left by a job that died is taken over; release keeps the files."""
    import subprocess as sp
    import sys

    from tezip_hpc.errors import ConfigError
    from tezip_hpc.io.sources import ArraySource
    from tezip_hpc.predict import fit
    from tezip_hpc.predict.fit import FitPlan, fit_dir, stage_sample

    out = str(tmp_path / "a.h5")
    work = fit_dir(out)
    work.mkdir()
    (work / "model.tzm.ckpt").write_bytes(b"the other job's checkpoint")
    other = sp.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import json
        import socket

        (work / fit.LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": other.pid}))
        src = ArraySource(blobs(30, 16, 16, seed=1)[..., None])
        with pytest.raises(ConfigError, match="in use by another --fit job"):
            stage_sample(src, (0.0, 255.0), FitPlan(20, 60.0, 1 / 255), out)
        fit.cleanup(out)  # what a refused job's error path runs: nothing of the other job's goes
        assert (work / "model.tzm.ckpt").read_bytes() == b"the other job's checkpoint"
        assert json.loads((work / fit.LOCK).read_text())["pid"] == other.pid
    finally:
        other.kill()
        other.wait()
    # the other job is gone without releasing its lock: this one takes the folder over
    assert stage_sample(src, (0.0, 255.0), FitPlan(20, 60.0, 1 / 255), out) is False
    assert json.loads((work / fit.LOCK).read_text())["pid"] == os.getpid()
    fit.release(out)
    assert not (work / fit.LOCK).exists() and (work / "train.h5").exists()  # released, files kept
