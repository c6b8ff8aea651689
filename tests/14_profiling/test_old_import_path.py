"""The module's code lives in `tinytorch.measurement.profiling`; the old path `tinytorch.optimization.profiling` re-exports it (the
same objects, nothing defined twice), and each path imports alone in a fresh interpreter."""

from old_path_checks import code_lives_in, each_path_imports_alone, old_path_gives_the_same_objects

OLD, NEW = "tinytorch.optimization.profiling", "tinytorch.measurement.profiling"
PUBLIC = "Profiler"


def test_the_old_path_gives_the_same_objects():
    old_path_gives_the_same_objects(OLD, NEW, PUBLIC)


def test_the_code_lives_in_the_new_module():
    code_lives_in(NEW, PUBLIC)


def test_each_path_imports_alone():
    each_path_imports_alone(OLD, NEW, PUBLIC)
