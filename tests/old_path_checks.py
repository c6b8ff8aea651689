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


def old_path_tests(old_name: str, new_name: str, public: str) -> tuple:
    """The three tests of one old import path, as test functions for a module's test file to bind to test_* names:
    the same objects, the code in the new module, each path importing alone."""
    def test_the_old_path_gives_the_same_objects():
        old_path_gives_the_same_objects(old_name, new_name, public)

    def test_the_code_lives_in_the_new_module():
        code_lives_in(new_name, public)

    def test_each_path_imports_alone():
        each_path_imports_alone(old_name, new_name, public)

    return test_the_old_path_gives_the_same_objects, test_the_code_lives_in_the_new_module, test_each_path_imports_alone
