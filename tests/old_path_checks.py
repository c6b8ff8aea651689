"""Checks shared by the tests of an old import path kept as a re-export (modules 14, 15, 19): the old path
gives the new module's objects, the code lives in the new module, and each path imports alone."""
import importlib
import subprocess
import sys


def old_path_gives_the_same_objects(old_name: str, new_name: str, public: str) -> None:
    old, new = importlib.import_module(old_name), importlib.import_module(new_name)
    assert old is not new
    assert sorted(old.__all__) == sorted(new.__all__) and public in new.__all__
    assert all(getattr(old, name) is getattr(new, name) for name in new.__all__)


def code_lives_in(new_name: str, public: str) -> None:
    assert getattr(importlib.import_module(new_name), public).__module__ == new_name


def each_path_imports_alone(old_name: str, new_name: str, public: str) -> None:
    for name in (old_name, new_name):
        code = f"import {name} as m; from {name} import {public}; print(m.__name__)"
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and r.stdout.strip() == name, r.stderr
