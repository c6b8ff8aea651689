"""The module's code lives in `tinytorch.measurement.profiling`; the old path `tinytorch.optimization.profiling` re-exports it (the
same objects, nothing defined twice), and each path imports alone in a fresh interpreter."""

import importlib
import subprocess
import sys

OLD, NEW = "tinytorch.optimization.profiling", "tinytorch.measurement.profiling"


def test_the_old_path_gives_the_same_objects():
    old, new = importlib.import_module(OLD), importlib.import_module(NEW)
    assert old is not new
    assert sorted(old.__all__) == sorted(new.__all__) and "Profiler" in new.__all__
    assert all(getattr(old, name) is getattr(new, name) for name in new.__all__)


def test_the_code_lives_in_the_new_module():
    new = importlib.import_module(NEW)
    assert new.Profiler.__module__ == NEW


def test_each_path_imports_alone():
    for name in (OLD, NEW):
        code = f"import {name} as m; from {name} import Profiler; print(m.__name__)"
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and r.stdout.strip() == name, r.stderr
