"""Module 18 (sparse kernels, moved from module 17), sparse storage and kernels: CSR construction, the forward kernels against dense NumPy
(property-based over shapes and densities, with empty rows, an all-zero and a fully dense matrix), the
backward kernels against their dense definitions, index dtypes, byte counts and structure checks."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tinytorch.optimization import sparse
from tinytorch.optimization.kernels import csr_bytes
from tinytorch.optimization.sparse import CSRMatrix, csr_linear_forward, index_dtype, kernels, offset_dtype

FAST = settings(max_examples=40, deadline=None)          # deadline=None: the first example may compile


def random_sparse(rng, rows, cols, density, dtype=np.float32, empty_rows=()):
    a = rng.standard_normal((rows, cols)).astype(dtype)
    a[rng.random((rows, cols)) >= density] = 0
    for r in empty_rows:
        a[r % rows] = 0
    return a


@st.composite
def cases(draw, max_dim=40):
    rows = draw(st.integers(1, max_dim))
    cols = draw(st.integers(1, max_dim))
    batch = draw(st.integers(1, 20))
    density = draw(st.sampled_from([0.0, 1.0, 0.02, 0.3]) | st.floats(0.0, 1.0))
    empty = draw(st.lists(st.integers(0, 1000), max_size=3))
    seed = draw(st.integers(0, 2**32 - 1))
    return rows, cols, batch, density, empty, seed


@pytest.fixture(scope="module", autouse=True)
def warm_kernels():
    "Compile (or load from Numba's disk cache) the kernels once for this module's dtypes."
    for dtype in (np.float32, np.float64):
        c = CSRMatrix.from_dense(np.eye(3, dtype=dtype))
        for batch in (1, 2):
            csr_linear_forward(c.indptr, c.indices, c.data, np.ones((batch, 3), dtype))
        kernels().values_grad(c.indptr, c.indices, np.ones((3, 2), dtype), np.ones((3, 2), dtype), np.empty(3, dtype))


@FAST
@given(cases())
def test_from_dense_stores_exactly_the_nonzeros_in_row_order(case):
    rows, cols, _, density, empty, seed = case
    a = random_sparse(np.random.default_rng(seed), rows, cols, density, empty_rows=empty)
    c = CSRMatrix.from_dense(a)
    r, k = np.nonzero(a)
    assert c.shape == (rows, cols) and c.nnz == len(r)
    assert np.array_equal(c.indptr, np.concatenate([[0], np.cumsum(np.count_nonzero(a, axis=1))]))
    assert np.array_equal(c.indices, k) and np.array_equal(c.data, a[r, k])
    assert np.array_equal(c.to_dense(), a)
    assert c.indices.dtype == index_dtype(max(cols - 1, 0)) and c.indptr.dtype == np.int32 and c.data.dtype == np.float32
    assert c.nbytes == c.data.nbytes + c.indices.nbytes + c.indptr.nbytes == csr_bytes(a.shape, c.nnz, np.float32)
    assert np.array_equal(c.T.to_dense(), a.T)


@FAST
@given(cases())
def test_forward_kernels_equal_dense_numpy(case):
    rows, cols, batch, density, empty, seed = case
    rng = np.random.default_rng(seed)
    w = random_sparse(rng, rows, cols, density, empty_rows=empty)
    c = CSRMatrix.from_dense(w)
    x = rng.standard_normal((batch, cols)).astype(np.float32)
    y, xt = csr_linear_forward(c.indptr, c.indices, c.data, x)
    assert y.shape == (batch, rows) and y.dtype == np.float32
    np.testing.assert_allclose(y, x @ w.T, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(xt, x.T)
    np.testing.assert_allclose(c @ x.T, w @ x.T, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(c @ x[0], w @ x[0], rtol=1e-4, atol=1e-5)


@FAST
@given(cases())
def test_backward_kernels_equal_the_dense_gradients(case):
    rows, cols, batch, density, empty, seed = case
    rng = np.random.default_rng(seed)
    w = random_sparse(rng, rows, cols, density, dtype=np.float64, empty_rows=empty)
    c = CSRMatrix.from_dense(w)
    x = rng.standard_normal((batch, cols))
    g = rng.standard_normal((batch, rows))                         # a random cotangent dL/dy
    k = kernels()
    # dL/dx = g @ W through the transposed pattern
    indptr_t, indices_t, perm = c.transpose_pattern()
    gx, _ = csr_linear_forward(indptr_t, indices_t, c.data[perm], g)
    np.testing.assert_allclose(gx, g @ w, rtol=1e-10, atol=1e-12)
    # dL/d data[j] = (g.T @ x)[row(j), col(j)] at the stored positions only
    gv = k.values_grad(c.indptr, c.indices, np.ascontiguousarray(g.T), np.ascontiguousarray(x.T), np.empty(c.nnz))
    r = np.repeat(np.arange(rows), np.diff(c.indptr))
    np.testing.assert_allclose(gv, (g.T @ x)[r, c.indices], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,w", [
    ("all zero", np.zeros((6, 5), np.float32)),
    ("fully dense", np.arange(1, 31, dtype=np.float32).reshape(6, 5)),
    ("empty rows", np.array([[0, 0, 0], [1, 0, 2], [0, 0, 0], [0, 3, 0]], np.float32)),
    ("one entry", np.array([[0, 0], [0, 5]], np.float32)),
])
@pytest.mark.parametrize("batch", [1, 3, 64])
def test_edge_cases(name, w, batch):
    c = CSRMatrix.from_dense(w)
    assert c.nnz == np.count_nonzero(w) and np.array_equal(c.to_dense(), w)
    x = np.random.default_rng(batch).standard_normal((batch, w.shape[1])).astype(np.float32)
    y, _ = csr_linear_forward(c.indptr, c.indices, c.data, x)
    np.testing.assert_allclose(y, x @ w.T, rtol=1e-5, atol=1e-5)
    if name == "all zero":
        assert c.nbytes == c.indptr.nbytes and np.array_equal(y, np.zeros_like(y))


def test_transposed_and_strided_inputs():
    rng = np.random.default_rng(0)
    w = random_sparse(rng, 30, 20, 0.3)
    c = CSRMatrix.from_dense(w)
    base = rng.standard_normal((20, 9)).astype(np.float32)
    for x in (base.T, rng.standard_normal((9, 40)).astype(np.float32)[:, ::2]):
        y, _ = csr_linear_forward(c.indptr, c.indices, c.data, x)
        np.testing.assert_allclose(y, x @ w.T, rtol=1e-5, atol=1e-5)


def test_index_dtypes_are_chosen_by_size():
    assert index_dtype(0) == np.uint8 and index_dtype(255) == np.uint8                  # one rule, module 16's
    assert index_dtype(256) == np.uint16 and index_dtype(65535) == np.uint16
    assert index_dtype(65536) == np.uint32 and index_dtype(2**32 - 1) == np.uint32 and index_dtype(2**32) == np.uint64
    assert offset_dtype(2**31 - 1) == np.int32 and offset_dtype(2**31) == np.int64
    rng = np.random.default_rng(1)
    wide = random_sparse(rng, 3, 70_000, 0.001)                   # more columns than uint16 can index
    c = CSRMatrix.from_dense(wide)
    assert c.indices.dtype == np.uint32
    x = rng.standard_normal((2, 70_000)).astype(np.float32)
    np.testing.assert_allclose(csr_linear_forward(c.indptr, c.indices, c.data, x)[0], x @ wide.T, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(c @ x[0], wide @ x[0], rtol=1e-4, atol=1e-4)


def test_a_90_percent_pruned_layer_takes_at_most_a_fifth_of_the_dense_bytes():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((1024, 1024)).astype(np.float32)
    w[np.abs(w) < np.quantile(np.abs(w), 0.9)] = 0
    c = CSRMatrix.from_dense(w)
    assert c.dense_nbytes == w.nbytes == 4 * 1024 * 1024
    assert c.nbytes == c.nnz * (4 + 2) + 1025 * 4                  # float32 value + uint16 index, int32 offsets
    assert 0.14 < c.nbytes / c.dense_nbytes <= 0.2


def test_from_dense_with_a_mask_keeps_what_the_mask_keeps():
    w = np.array([[0.0, 2.0], [3.0, 0.0]], np.float32)
    c = CSRMatrix.from_dense(w, mask=np.array([[1, 1], [0, 0]]))
    assert c.indptr.tolist() == [0, 2, 2] and c.indices.tolist() == [0, 1] and c.data.tolist() == [0.0, 2.0]
    with pytest.raises(ValueError, match=r"mask has shape \(3,\)"):
        CSRMatrix.from_dense(w, mask=np.ones(3))


@pytest.mark.parametrize("make,error,message", [
    (lambda: CSRMatrix([1.0, 2.0], [0, 1], [0, 2, 1], (2, 2)), ValueError, "must start at 0 and end at nnz=2"),
    (lambda: CSRMatrix([1.0, 2.0], [0, 1], [0, 2, 1, 2], (3, 2)), ValueError, r"decreases at row 1 \(2 -> 1\)"),
    (lambda: CSRMatrix([1.0, 2.0], [0, 5], [0, 1, 2], (2, 2)), ValueError, "column index 5 is out of range for 2"),
    (lambda: CSRMatrix([1.0], [0, 1], [0, 1, 2], (2, 2)), ValueError, "1 values but 2 column indices"),
    (lambda: CSRMatrix([1.0, 2.0], [0, 1], [0, 2], (2, 2)), ValueError, "indptr has 2 entries, a matrix with 2 rows needs 3"),
    (lambda: CSRMatrix(np.array([1, 2]), [0, 1], [0, 1, 2], (2, 2)), TypeError, "floating point, or integers with a scale; got dtype int"),
    (lambda: CSRMatrix.from_dense(np.ones(3, np.float32)), ValueError, r"2-D array, got shape \(3,\)"),
    (lambda: CSRMatrix.from_dense(np.ones((2, 2), np.int64)), TypeError, r"floating-point array \(or integers with a scale\), got dtype int64"),
    (lambda: CSRMatrix.from_dense(np.eye(2, dtype=np.float32)) @ np.ones(3), ValueError, r"x of shape \(2,\).*got \(3,\)"),
])
def test_malformed_input_is_refused_with_the_values_seen(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_the_parallel_variants_agree_with_the_serial_kernels():
    rng = np.random.default_rng(3)
    w = random_sparse(rng, 70, 50, 0.2, empty_rows=(3, 4))
    c = CSRMatrix.from_dense(w)
    x = rng.standard_normal((50, 17)).astype(np.float32)
    g = rng.standard_normal((70, 17)).astype(np.float32)
    k = kernels().compiled
    np.testing.assert_allclose(k.matmat_parallel(c.indptr, c.indices, c.data, x, np.empty((70, 17), np.float32)),
                               w @ x, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(k.matvec_parallel(c.indptr, c.indices, c.data, x[:, 0].copy(), np.empty(70, np.float32)),
                               w @ x[:, 0], rtol=1e-5, atol=1e-5)
    r = np.repeat(np.arange(70), np.diff(c.indptr))
    np.testing.assert_allclose(k.values_grad_parallel(c.indptr, c.indices, g, x, np.empty(c.nnz, np.float32)),
                               (g @ x.T)[r, c.indices], rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(k.transpose_into_parallel(g.T, np.empty((70, 17), np.float32)), g)
    # switching the parallel kernels on and off changes the kernels in use, never the results
    try:
        in_use = sparse.use_parallel(True)
        assert in_use == (sparse._numba_threads() > 1) and kernels().parallel == in_use
        y, _ = csr_linear_forward(c.indptr, c.indices, c.data, x.T)
        np.testing.assert_allclose(y, x.T @ w.T, rtol=1e-5, atol=1e-5)
    finally:
        sparse.use_parallel(False)
    assert kernels().parallel is False


def test_use_parallel_falls_back_to_one_thread_when_the_parallel_kernel_fails(monkeypatch):
    compiled = kernels().compiled

    class Broken:
        def __getattr__(self, name):
            if name == "matmat_parallel":
                def fail(*args):
                    raise RuntimeError("no threading layer")
                return fail
            return getattr(compiled, name)

    class FakeKernels:
        compiled = Broken()

    monkeypatch.setattr(sparse, "kernels", lambda: FakeKernels())
    with pytest.warns(UserWarning, match="parallel kernels unavailable.*no threading layer"):
        assert sparse.use_parallel(True) is False
    assert sparse._STATE["parallel"] is False


def test_the_sparse_kernels_use_module_16s_one_csr_and_one_kernel_set():
    from tinytorch.optimization import kernels as k16
    assert CSRMatrix is k16.CSRMatrix and index_dtype is k16.index_dtype and offset_dtype is k16.offset_dtype
    assert isinstance(sparse.KERNELS, k16.KernelSet) and isinstance(sparse.matmat, k16.Kernel)
    assert set(vars(kernels().compiled)) >= {"matmat", "matmat_parallel", "matvec", "values_grad", "row_dot"}


@pytest.mark.parametrize("shape", [(1, 1), (3, 16), (5, 17), (33, 40), (2, 0)])
def test_the_blocked_transpose_is_a_transpose_for_any_width(shape):
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape) - 7.5
    k = kernels().compiled
    for f in (k.transpose_into, k.transpose_into_parallel):
        out = np.full(shape[::-1], np.nan, np.float32)
        np.testing.assert_array_equal(f(x, out), x.T)
        np.testing.assert_array_equal(out, x.T)                   # written in place


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
@pytest.mark.parametrize("shape", [(1, 9), (7, 9), (2, 3, 9)])
@pytest.mark.parametrize("bias", [True, False])
def test_the_sparse_layer_forward_and_backward_are_the_dense_formulas(dtype, tol, shape, bias):
    """y = x W^T + b; dL/dx = G W, dL/d values = (G^T x) at the stored entries, dL/db = G summed over rows, with a
    random cotangent G (without PyTorch: the student's copy runs this test too)."""
    from tinytorch.core.tensor import Tensor
    from tinytorch.optimization.sparse import SparseLinear
    rng = np.random.default_rng(5)
    w = random_sparse(rng, 12, 9, 0.3, empty_rows=(4,)).astype(dtype)
    b = rng.standard_normal(12).astype(dtype)
    layer = SparseLinear(w, b if bias else None)
    x = rng.standard_normal(shape).astype(dtype)
    G = rng.standard_normal(shape[:-1] + (12,)).astype(dtype)
    xt = Tensor(x, requires_grad=True, dtype=dtype)
    y = layer(xt)
    assert y.shape == shape[:-1] + (12,) and y.dtype == dtype
    np.testing.assert_allclose(y.data, x @ w.T + (b if bias else 0), rtol=tol, atol=tol)
    y.backward(G)
    x2, g2 = x.reshape(-1, 9), G.reshape(-1, 12)
    np.testing.assert_allclose(xt.grad.data, (g2 @ w).reshape(shape), rtol=tol, atol=tol)
    rows = np.repeat(np.arange(12), np.diff(layer.indptr.data))
    np.testing.assert_allclose(layer.values.grad.data, (g2.T @ x2)[rows, layer.indices.data], rtol=tol, atol=tol)
    if bias:
        np.testing.assert_allclose(layer.bias.grad.data, g2.sum(axis=0), rtol=tol, atol=tol)
