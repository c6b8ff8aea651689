"""The module's code lives in `tinytorch.measurement.benchmarking`; the old path `tinytorch.optimization.benchmarking` re-exports it (the
same objects, nothing defined twice), and each path imports alone in a fresh interpreter."""

from old_path_checks import old_path_tests

(test_the_old_path_gives_the_same_objects, test_the_code_lives_in_the_new_module,
 test_each_path_imports_alone) = old_path_tests(
    "tinytorch.optimization.benchmarking", "tinytorch.measurement.benchmarking", "Benchmark")
