"""Module 16 (16_quantization_kernels): the one way the package compiles Numba kernels (KernelSet) and the one CSR
container (CSRMatrix, QuantizedCSR) with one byte model. Importing the kernel modules imports no Numba, reads no
environment variable, writes no file and rewrites no global; using them rewrites no global either."""

from __future__ import annotations

import os
import sys
import types

import numpy as np
import pytest
from import_probe import ENV_OFF, ENV_ON, RECORD_ENV, sandbox

from tinytorch.optimization import kernels as K
from tinytorch.optimization.kernels import (CSRMatrix, Kernel, KernelSet, QuantizedCSR, csr_bytes, index_dtype,
                                            int8_matmul, offset_dtype, prange)

_SET = KernelSet("test kernels")


@_SET.kernel()
def _add_one(v):
    return v + 1


@_SET.kernel(parallel_variant=True, fastmath={"contract"})
def _add_one_all(a, out):
    for i in prange(a.shape[0]):
        out[i] = _add_one(a[i])
    return out


def test_a_kernel_is_a_plain_function_until_used_then_compiled_with_its_callees():
    assert isinstance(_add_one_all, Kernel) and isinstance(_add_one_all.py_func, types.FunctionType)
    assert _add_one_all.py_func(np.arange(3.0), np.empty(3)).tolist() == [1.0, 2.0, 3.0]
    assert _add_one_all(np.arange(3.0), np.empty(3)).tolist() == [1.0, 2.0, 3.0]
    assert len(_add_one_all.nopython_signatures) == 1 and len(_add_one.nopython_signatures) == 1   # callee compiled
    assert _add_one_all.parallel(np.arange(2.0), np.empty(2)).tolist() == [1.0, 2.0]
    ns = _SET.compiled()
    assert sorted(vars(ns)) == ["_add_one", "_add_one_all", "_add_one_all_parallel"]
    assert not ns._add_one_all.targetoptions.get("parallel") and ns._add_one_all_parallel.targetoptions["parallel"]
    assert ns._add_one_all.targetoptions["fastmath"] and not ns._add_one.targetoptions.get("fastmath")
    assert all(d.targetoptions["error_model"] == "numpy" for d in vars(ns).values())
    assert all(d._cache.__class__.__name__ == "FunctionCache" for d in vars(ns).values())   # cache=True for all
    assert globals()["_add_one"] is _add_one and isinstance(_add_one, Kernel)               # no global rewritten
    assert _SET.compiled() is ns                                                            # compiled once
    with pytest.raises(AttributeError, match="_add_one has no parallel variant"):
        _add_one.parallel


def _identity(v):
    return v


def test_a_closure_cannot_be_a_kernel():
    def outer():
        y = 1

        def inner(v):
            return v + y
        return inner
    with pytest.raises(ValueError, match="must be a top-level function.*inner"):
        KernelSet("x").kernel()(outer())


def test_without_numba_a_set_with_fallbacks_warns_and_one_without_raises(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)           # `import numba` now raises ImportError
    with_fb = KernelSet("fallback kernels", fallbacks={"f": lambda a: a * 2})
    with pytest.warns(RuntimeWarning, match="numba is not installed: fallback kernels fall back to NumPy"):
        assert with_fb.compiled().f(3) == 6
    plain = KernelSet("plain kernels")
    plain.kernel()(_identity)
    with pytest.raises(ImportError, match="plain kernels need numba"):
        plain.compiled()


def test_one_index_rule_and_one_byte_model_for_float_and_int8():
    assert [index_dtype(n) for n in (0, 255, 256, 65535, 65536, 2**32 - 1, 2**32)] == \
        [np.uint8, np.uint8, np.uint16, np.uint16, np.uint32, np.uint32, np.uint64]
    assert offset_dtype(0) == np.int32 and offset_dtype(2**31 - 1) == np.int32 and offset_dtype(2**31) == np.int64
    with pytest.raises(ValueError, match="index_dtype: n must be an integer >= 0, got -1"):
        index_dtype(-1)
    rng = np.random.default_rng(0)
    w = rng.standard_normal((30, 300)).astype(np.float32)
    w[rng.random(w.shape) < 0.8] = 0
    f = CSRMatrix.from_dense(w)
    assert f.indices.dtype == np.uint16 and f.indptr.dtype == np.int32 and f.scale is None
    assert f.nbytes == f.nnz * 6 + 31 * 4 == csr_bytes(w.shape, f.nnz, np.float32)
    scale = np.abs(w).max(axis=1) / 127
    q8 = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
    q = QuantizedCSR.from_quantized(types.SimpleNamespace(data=q8, scale=scale, symmetric=True, axis=0, bits=8))
    assert isinstance(q, CSRMatrix) and q.indices.dtype == f.indices.dtype and q.indptr.dtype == f.indptr.dtype
    assert q.nbytes == q.nnz * 3 + 31 * 4 + 30 * 4 == csr_bytes(w.shape, q.nnz, np.int8, scales=30)
    assert q.nbytes == q.data.nbytes + q.indices.nbytes + q.indptr.nbytes + q.scale.nbytes   # exactly what is stored
    np.testing.assert_allclose(q.dequantize().data, q8 * scale[:, None].astype(np.float32), rtol=1e-6)
    x = rng.standard_normal((300, 5)).astype(np.float32)
    np.testing.assert_allclose(q @ x, q.dequantize().data @ x, rtol=1e-4, atol=1e-4)    # CSRMatrix @ with a scale
    np.testing.assert_allclose(f @ x, w @ x, rtol=1e-4, atol=1e-4)
    assert csr_bytes((4,), 2, np.float32) == 2 * 5 + 5 * 4          # a 1-D array: 4 rows of one column
    with pytest.raises(TypeError, match="integers with a scale; got dtype int8"):
        CSRMatrix(q.data, q.indices, q.indptr, q.shape)                  # int8 values need their scale
    with pytest.raises(TypeError, match="QuantizedCSR: values must be int8, got float32"):
        QuantizedCSR(f.data, f.indices, f.indptr, 1.0, f.shape)
    with pytest.raises(ValueError, match=r"scale must be one number or one per row \(30\), got shape \(2,\)"):
        CSRMatrix(q.data, q.indices, q.indptr, q.shape, scale=np.ones(2))


def test_one_csr_container_everywhere():
    import tinytorch.optimization.quantization as quantization
    assert quantization.CSRMatrix is CSRMatrix and quantization.QuantizedCSR is QuantizedCSR
    assert issubclass(QuantizedCSR, CSRMatrix) and quantization.csr_arrays is K.csr_arrays


def test_int8_matmul_uses_the_compiled_kernel_of_the_one_set():
    a = np.array([[1, -2, 3]], np.int8)
    b = np.array([[4, 5, -6], [1, 1, 1]], np.int8)
    assert int8_matmul(a, b, x_zero_point=1).tolist() == [[(0 * 4 + -3 * 5 + 2 * -6), 0 - 3 + 2]]
    assert len(K._int8_matmul_loops.nopython_signatures) >= 1
    assert isinstance(K._int8_matmul_loops, Kernel)


IMPORT_PROBE = (r"""
import json, os, sys
import numpy, tinytorch.core.tensor, tinytorch.core.layers, tinytorch.core.spatial, tinytorch.optimization.profiling
import tinytorch.core.training, tinytorch.core.activations, tinytorch.core.autograd
""" + RECORD_ENV + ENV_ON + r"""import tinytorch.optimization.kernels as k
import tinytorch.optimization.quantization as q
import tinytorch.optimization.qmodel as qm
""" + ENV_OFF + r"""numba_after_import = "numba" in sys.modules
mods = (k, q, qm)
def snapshot():
    return {(m.__name__, n): id(v) for m in mods for n, v in vars(m).items() if not n.startswith("__")}
before = snapshot()
import numpy as np
from tinytorch.core.layers import Linear
from tinytorch.core.autograd import no_grad
from tinytorch.core.tensor import Tensor
lin = Linear(8, 4)
lin.weight.data[:, :5] = 0
with no_grad():
    for sparse in (False, True):
        qm.quantize_model(lin, sparse=sparse)(Tensor(np.ones((2, 8), np.float32)))
after = snapshot()
print(json.dumps({"env_read": read, "numba_after_import": numba_after_import, "numba_after_use": "numba" in sys.modules,
                  "changed": sorted(map(str, (n for n in before if after.get(n) != before[n]))),
                  "added": sorted(map(str, set(after) - set(before)))}))
""")


def test_import_reads_no_environment_imports_no_numba_writes_nothing_and_use_rewrites_no_global(tmp_path):
    box = sandbox(tmp_path, {"PYTHONDONTWRITEBYTECODE": "1"})
    box.run("import tinytorch.optimization.kernels, tinytorch.optimization.quantization, tinytorch.optimization.qmodel",
            timeout=120)
    assert box.nothing_written()
    r = box.probe(IMPORT_PROBE)
    assert r["env_read"] == [] and not r["numba_after_import"] and r["numba_after_use"], r
    assert r["changed"] == [] and r["added"] == [], r                     # compiling and running rewrote no global
    assert os.listdir(box.home) == [] and os.listdir(box.work) == []      # only Numba's cache (its own folder)


def test_the_numpy_references_and_the_compiled_kernels_compute_the_exact_int32_products():
    """The NumPy references (the fallbacks without Numba) and the compiled loops give the same exact int32
    products as int64 arithmetic, at the int8 extremes (where int8 arithmetic would wrap), for empty rows and
    for a stack of matrices."""
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, (5, 40), dtype=np.int8)
    x[0] = -128
    w = rng.integers(-127, 128, (7, 40), dtype=np.int8)
    w[1] = 127
    w[3] = 0                                                        # an empty row of the CSR matrix
    w[rng.random(w.shape) < 0.5] = 0
    for z in (0, 1, -128, 127):
        want = (x.astype(np.int64) - z) @ w.astype(np.int64).T
        for f in (K._np_int8_matmul, K._int8_matmul_loops):
            out = np.full((5, 7), -1, np.int32)
            f(x, w, np.int16(z), out)
            np.testing.assert_array_equal(out, want, err_msg=f"{f.__name__}, zero point {z}")
        values, indices, indptr = K.csr_arrays(w)
        xs = np.ascontiguousarray(np.stack([x.T, x[::-1].T]))       # (2, K, M): two matrices
        want_csr = np.stack([w.astype(np.int64) @ (m.astype(np.int64) - z) for m in xs])
        for f in (K._np_int8_csr_matmul, K._int8_csr_matmul_loops):
            out = np.full((2, 7, 5), -1, np.int32)
            f(indptr.astype(np.int64), indices, values, xs, np.int16(z), out)
            np.testing.assert_array_equal(out, want_csr, err_msg=f"{f.__name__}, zero point {z}")


@pytest.mark.parametrize("shape, density", [((7, 5), 0.4), ((1, 9), 0.5), ((6, 1), 0.5), ((4, 300), 0.1),
                                            ((3, 4), 0.0)])
def test_the_transpose_is_a_csr_matrix_of_the_transposed_dense_matrix(shape, density):
    rng = np.random.default_rng(sum(shape))
    w = np.where(rng.random(shape) < density, rng.standard_normal(shape), 0).astype(np.float32)
    w[0] = 0                                                        # an empty row: an empty column of the transpose
    c = CSRMatrix.from_dense(w)
    indptr_t, indices_t, perm = c.transpose_pattern()
    assert indptr_t.dtype == offset_dtype(c.nnz) and perm.dtype == offset_dtype(c.nnz)
    assert indices_t.dtype == index_dtype(shape[0] - 1) and len(indptr_t) == shape[1] + 1
    t = c.transpose()
    t.check()                                                       # a valid CSR matrix, columns ascending per row
    assert t.shape == shape[::-1]
    np.testing.assert_array_equal(t.to_dense(), w.T)
    want = CSRMatrix.from_dense(w.T)                                 # the same arrays as building it from w.T
    np.testing.assert_array_equal(t.indptr, want.indptr)
    np.testing.assert_array_equal(t.indices, want.indices)
    np.testing.assert_array_equal(t.data, want.data)
