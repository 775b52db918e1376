"""`tezip-hpc demo` (what `make demo` runs): the shipped real sample, both predictors, the
bound checked on every element, archives only in its own temporary folder."""

import re


def test_demo_compresses_restores_and_checks_the_bound(cli, tmp_path):
    res = cli("demo", "--bounds", "0", "3", "--workdir", str(tmp_path))
    assert res.returncode == 0, res.stderr
    rows = [line.split() for line in res.stdout.splitlines() if re.match(r"\s+(auto|previous)\s", line)]
    assert {(r[0], r[1]) for r in rows} == {("auto", "lossless"), ("auto", "abs"),
                                            ("previous", "lossless"), ("previous", "abs")}
    assert sum(line.startswith("  auto, ") and "-frame sample" in line for line in res.stdout.splitlines()) == 2
    for r in rows:
        assert r[-1] == "yes", res.stdout
        ratio, maxerr = float(r[3 if r[1] == "abs" else 2]), float(r[-2])
        assert ratio > 1.5 and maxerr <= (3 if r[1] == "abs" else 0), res.stdout
    assert "within its bound" in res.stdout
    assert list(tmp_path.iterdir()) == []  # the temporary archives are gone


def test_demo_bad_arguments_are_one_line_errors(cli, tmp_path):
    for args, text in ((("--bounds", "-1"), "finite and >= 0"), (("--bounds", "abc"), "not a number"),
                       (("--window", "0"), "at least 1"), (("--workdir", str(tmp_path / "no")), "no such folder")):
        res = cli("demo", *args)
        assert res.returncode == 2 and text in res.stderr, res.stderr
        assert "Traceback" not in res.stderr
