"""A student works the course in order, in a fresh release: chapter k stands on chapters 1..k-1 only.

For k = 1, 2, ... (in the manifest's order): in a student copy where modules 1..k-1 are filled in
(their solution blocks replaced by the reference code, as a student would write it) and modules
k.. are still stubs,

1. `tito module complete k` fails, and every exercise it reports as not implemented is module k's;
2. once module k's stubs are filled, `tito module complete k` passes (tests and checkpoint of
   module k against the student's own package, with every later module still stubbed);
3. module k's released notebook then runs top to bottom.

No test or notebook of module k may need a later module: a stub of module k+1.. showing up in
step 2 or 3 fails the test, and so does an earlier module's stub in step 1.

Modules up to TINYTORCH_IN_ORDER_UPTO (default 5) are walked; set it to 20 to walk the whole
course (each step exports, runs the module's tests twice and its notebook once).
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from student_copy import fill_stubs
from tito.manifest import load_manifest
from tito.nbrun import run_notebook

MANIFEST = load_manifest(Path(__file__).resolve().parents[2])
UPTO = int(os.environ.get("TINYTORCH_IN_ORDER_UPTO", "5"))
STEPS = [m for m in MANIFEST if m.number <= UPTO and m.notebook.is_file()]
STUB_LINE = re.compile(r"^\s*- module (\d+), ([^:]+): needed by", re.M)


def tito(*args, cwd, timeout=900):
    return subprocess.run([sys.executable, "-m", "tito.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def course(release, tmp_path_factory):
    """One student copy, walked in order by the tests below (each step fills one more module)."""
    out, report = release
    copy = tmp_path_factory.mktemp("in_order") / "course"
    shutil.copytree(out, copy)
    return copy, report.reference


def _fill(copy, reference, mod):
    for nb in mod.notebooks:
        key = f"{mod.folder}/{nb.name}"
        if key not in reference:
            continue
        path = copy / "modules" / key
        filled = fill_stubs(json.loads(path.read_text()), json.loads(reference[key]), {})
        path.write_text(json.dumps(filled, indent=1))


@pytest.mark.parametrize("mod", STEPS, ids=lambda m: m.folder)
def test_module_in_order(course, mod):
    copy, reference = course
    where = f"module {mod.nn} ({mod.folder})"

    # 1. still stubbed: not complete, and the stubs it names are this module's own
    r = tito("module", "complete", mod.number, cwd=copy)
    assert r.returncode == 1, f"{where}: complete while still stubbed\n{r.stdout[-3000:]}"
    stubs = STUB_LINE.findall(r.stdout)
    assert stubs, f"{where}: the failure names no exercise stub\n{r.stdout[-3000:]}"
    others = sorted({f"module {n}, {name}" for n, name in stubs if int(n) != mod.number})
    assert not others, f"{where}: its tests need other modules' exercises: {others}"

    # 2. filled: complete, against the student's own package, later modules still stubbed
    _fill(copy, reference, mod)
    r = tito("module", "complete", mod.number, cwd=copy)
    assert r.returncode == 0, f"{where}: not complete once filled\n{r.stdout[-4000:]}\n{r.stderr[-2000:]}"
    assert f"tested package: {copy / 'tinytorch'}" in r.stdout
    assert "not implemented yet" not in r.stdout

    # 3. its notebook runs top to bottom
    for nb in mod.notebooks:
        res = run_notebook(copy / "modules" / mod.folder / nb.name, copy / "tinytorch", 600)
        assert res["status"] == "finished", (
            f"{where}: {nb.name} stopped at cell {res.get('cell')}: {res.get('ename')}: "
            f"{res.get('evalue')}\n{res.get('traceback', '')}")
