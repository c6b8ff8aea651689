"""Every checkpoint that exists answers its question both ways: it fails on the stripped student
release and passes on the solutions (the reference package). Checkpoint 00 (the environment)
passes on the reference and fails on a package missing its core modules.

All runs happen up front, two at a time, each in its own `python -P -s -m pytest` process
against exactly one package (tito.checkrun: the package's parent is the only PYTHONPATH entry,
editable-install finders removed, the imported package's location reported).
"""

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tito.checkrun import run_pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINTS = sorted((ROOT / "tests" / "checkpoints").glob("checkpoint_[0-9][0-9]_*.py"))
NUMBERED = [p for p in CHECKPOINTS if int(p.name.split("_")[1]) >= 1]


def nn(path):
    return int(re.match(r"checkpoint_(\d\d)_", path.name).group(1))


def test_checkpoints_are_discovered():
    names = [p.name for p in CHECKPOINTS]
    assert "checkpoint_00_environment.py" in names
    assert any(nn(p) == 1 for p in CHECKPOINTS)
    assert len(set(nn(p) for p in CHECKPOINTS)) == len(CHECKPOINTS)    # one per number


@pytest.fixture(scope="module")
def runs(release, tmp_path_factory):
    out, _ = release
    bare = tmp_path_factory.mktemp("bare") / "tinytorch"       # a package without core modules
    bare.mkdir()
    (bare / "__init__.py").write_text('__version__ = "0.1.0"\n')
    jobs = {}
    for p in CHECKPOINTS:
        jobs[(p.name, "reference")] = (p, ROOT / "tinytorch")
        jobs[(p.name, "release")] = (p, out / "tinytorch")
    env00 = ROOT / "tests" / "checkpoints" / "checkpoint_00_environment.py"
    jobs[(env00.name, "bare")] = (env00, bare)
    with ThreadPoolExecutor(max_workers=2) as ex:
        futs = {k: ex.submit(run_pytest, [path], lib, ROOT, 300, ["-q", "--tb=line"])
                for k, (path, lib) in jobs.items()}
        return {k: f.result() for k, f in futs.items()}


def _inside(f, base):
    return f is not None and Path(f).resolve().is_relative_to(Path(base).resolve())


@pytest.mark.parametrize("ck", CHECKPOINTS, ids=lambda p: p.stem)
def test_checkpoint_passes_on_the_reference_solutions(runs, ck):
    r = runs[(ck.name, "reference")]
    bad = [(t["name"], t["message"]) for t in r.failed] + \
          [(e["nodeid"], e["message"]) for e in r.collect_errors]
    assert r.all_passed, f"{ck.name} fails on the reference: {bad}\n{r.output[-2000:]}"
    assert _inside(r.lib_file, ROOT / "tinytorch")


@pytest.mark.parametrize("ck", NUMBERED, ids=lambda p: p.stem)
def test_checkpoint_fails_on_the_stripped_release(runs, release, ck):
    out, _ = release
    r = runs[(ck.name, "release")]
    assert not r.timed_out and r.exit_code not in (0, None), r.output[-2000:]
    assert r.failed or r.collect_errors, r.output[-2000:]
    assert not r.foreign                    # it really ran against the release's package
    if r.tests:
        assert _inside(r.lib_file, out / "tinytorch")
        # the failures come from the stubs or the asserts, not from the test machinery
        kinds = {t["message"].split(":", 1)[0] for t in r.failed}
        assert kinds & {"NotImplementedError", "AssertionError", "ValueError", "TypeError",
                        "Failed"}, kinds
    else:
        assert r.collect_errors[0]["message"]          # an import error, named


def test_environment_checkpoint_passes_on_the_release_and_fails_without_core_modules(runs, release):
    out, _ = release
    ok = runs[("checkpoint_00_environment.py", "release")]
    assert ok.all_passed and _inside(ok.lib_file, out / "tinytorch"), ok.output[-2000:]
    bare = runs[("checkpoint_00_environment.py", "bare")]
    assert bare.exit_code == 1 and not bare.collect_errors
    failed = {t["name"] for t in bare.failed}
    assert failed == {"test_core_modules_import_from_the_package_under_test"}, bare.output
    assert any("tinytorch.core" in t["message"] for t in bare.failed)


@pytest.mark.parametrize("ck", NUMBERED, ids=lambda p: p.stem)
def test_untouched_release_scores_zero(runs, ck):
    # tito grade scores a module by the fraction of its checkpoint tests that pass: on the
    # untouched release not one may pass (a test of given code only would hand out free points)
    r = runs[(ck.name, "release")]
    assert not r.passed, f"{ck.name} passes on the untouched release: {[t['name'] for t in r.passed]}"
