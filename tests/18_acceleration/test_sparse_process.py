"""Module 18 (sparse kernels, moved from module 17), the sparse kernels across processes: importing tinytorch or tinytorch.optimization.sparse
does not import Numba (or SciPy), and once the kernels are compiled a new process loads them from Numba's
disk cache instead of compiling them again."""
import json
import os
import subprocess
import sys

import pytest

PROBE = r"""
import json, time
import numpy as np
from tinytorch.optimization.sparse import CSRMatrix, csr_linear_forward, kernels
w = np.zeros((40, 30), np.float32); w[::3, ::2] = 1.5
c = CSRMatrix.from_dense(w)
import numba
numba.njit(lambda v: v + 1)(1)          # start Numba's compiler in both runs: only the kernels are timed
t = time.perf_counter()
y, xt = csr_linear_forward(c.indptr, c.indices, c.data, np.ones((8, 30), np.float32))
y1, _ = csr_linear_forward(c.indptr, c.indices, c.data, np.ones((1, 30), np.float32))
gv = kernels().values_grad(c.indptr, c.indices, np.ones((40, 8), np.float32), xt, np.empty(c.nnz, np.float32))
first_call = time.perf_counter() - t
assert np.allclose(y, np.ones((8, 30)) @ w.T) and np.allclose(y1, y[:1])
k = kernels()
used = [k.transpose_into, k.matmat, k.matvec, k.values_grad]
print(json.dumps({"first_call": first_call,
                  "hits": sum(sum(f.stats.cache_hits.values()) for f in used),
                  "misses": sum(sum(f.stats.cache_misses.values()) for f in used)}))
"""


def run(code, **env):
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, **env}, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize("module", ["tinytorch", "tinytorch.optimization.sparse"])
def test_importing_does_not_import_numba_or_scipy(module):
    out = run(f"import sys, {module}; print(sorted(m for m in ('numba', 'llvmlite', 'scipy') if m in sys.modules))")
    assert out.strip() == "[]"


def test_a_second_process_loads_the_compiled_kernels_instead_of_compiling(tmp_path):
    cache = str(tmp_path / "numba_cache")                # an empty cache: the first process must compile
    cold = json.loads(run(PROBE, NUMBA_CACHE_DIR=cache))
    warm = json.loads(run(PROBE, NUMBA_CACHE_DIR=cache))
    assert cold["misses"] >= 4 and cold["hits"] == 0, cold
    assert warm["misses"] == 0 and warm["hits"] >= 4, warm
    # loading is much cheaper than compiling (a ratio with a wide margin, not an absolute time)
    assert warm["first_call"] < cold["first_call"] / 4, (cold, warm)
