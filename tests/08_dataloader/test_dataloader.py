"""Module 08 (dataloader): Dataset, TensorDataset, DataLoader, the shipped data sets, and bad input.

The digits split is pinned: its sizes (1437/360), its stratification, and a hash of the held-out
examples, so any change to the split (seed, algorithm, data file) fails here.
"""
import hashlib
import math
import os
import re

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tinytorch.core.dataloader import (DIGITS_N_TEST, DIGITS_SPLIT_SEED, DataLoader, Dataset, TensorDataset,
                                       Subset, datasets_dir, default_collate, load_digits, load_tinyshakespeare,
                                       random_split, split_lengths, stratified_split, BatchSampler, RandomSampler,
                                       SequentialSampler, WeightedRandomSampler)
from tinytorch.core.tensor import Tensor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEST_SET_SHA256 = "a4595c30423732e7b1b69b473090062e681f0655908d2855353ec5dfeb01efb3"


def labels_of(loader):
    return [b[-1].data.tolist() for b in loader]


# ------------------------------------------------------------------------------------------------
# TensorDataset
# ------------------------------------------------------------------------------------------------
class TestTensorDataset:
    def test_examples_are_tuples_of_rows(self):
        X = np.arange(15, dtype=np.float32).reshape(5, 3)
        y = np.array([4, 3, 2, 1, 0])
        ds = TensorDataset(Tensor(X), Tensor(y))
        assert len(ds) == 5
        x2, y2 = ds[2]
        assert isinstance(x2, Tensor) and x2.data.tolist() == [6.0, 7.0, 8.0] and y2.item() == 2
        xs, ys = ds[np.array([4, 0, 4])]
        assert xs.shape == (3, 3) and ys.data.tolist() == [0, 4, 0]
        assert ds[-1][1].item() == 0

    def test_accepts_arrays_and_keeps_dtypes(self):
        ds = TensorDataset(np.zeros((4, 2)), np.arange(4, dtype=np.int32), np.ones(4, dtype=bool))
        x, y, m = ds[0]
        assert x.dtype == np.float64 and y.dtype == np.int32 and m.dtype == bool

    def test_examples_are_copies_not_views(self):
        X = Tensor(np.zeros((3, 2), dtype=np.float32))
        ds = TensorDataset(X)
        (x,) = ds[np.array([0, 1])]
        x.data[...] = 7
        assert (X.data == 0).all()

    @pytest.mark.parametrize("shapes,lengths", [([(5, 2), (4,)], "[5, 4]"), ([(3,), (3, 1), (2, 2)], "[3, 3, 2]")])
    def test_mismatched_lengths_name_them(self, shapes, lengths):
        with pytest.raises(ValueError, match=re.escape(f"same first dimension (one row per example), got lengths {lengths}")):
            TensorDataset(*[np.zeros(s) for s in shapes])

    def test_no_tensors_or_a_scalar(self):
        with pytest.raises(ValueError, match="at least one tensor"):
            TensorDataset()
        with pytest.raises(ValueError, match="tensor 1 is 0-dimensional"):
            TensorDataset(np.zeros(3), np.float32(2.0))

    def test_index_out_of_range(self):
        with pytest.raises(IndexError):
            TensorDataset(np.zeros(3))[3]


# ------------------------------------------------------------------------------------------------
# DataLoader
# ------------------------------------------------------------------------------------------------
class TestDataLoader:
    def setup_method(self):
        self.X = Tensor(np.arange(26, dtype=np.float32).reshape(13, 2))
        self.y = Tensor(np.arange(13))
        self.ds = TensorDataset(self.X, self.y)

    def test_sequential_batches(self):
        loader = DataLoader(self.ds, batch_size=5)
        batches = list(loader)
        assert len(loader) == 3 == len(batches)
        assert labels_of(batches) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11, 12]]
        for xb, yb in batches:
            assert isinstance(xb, Tensor) and isinstance(yb, Tensor)
            np.testing.assert_array_equal(xb.data, self.X.data[yb.data])
            assert xb.dtype == np.float32 and yb.dtype == np.int64 and not xb.requires_grad

    def test_default_batch_size_is_one(self):
        loader = DataLoader(self.ds)
        assert len(loader) == 13
        xb, yb = next(iter(loader))
        assert xb.shape == (1, 2) and yb.shape == (1,)

    def test_drop_last(self):
        loader = DataLoader(self.ds, batch_size=5, drop_last=True)
        assert len(loader) == 2 and labels_of(loader) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
        assert len(DataLoader(self.ds, batch_size=13, drop_last=True)) == 1
        big = DataLoader(self.ds, batch_size=20, drop_last=True)
        assert len(big) == 0 and list(big) == []
        assert len(DataLoader(self.ds, batch_size=20)) == 1

    def test_shuffle_reproducible_across_loaders_and_new_each_epoch(self):
        a = DataLoader(self.ds, batch_size=4, shuffle=True, seed=123)
        b = DataLoader(self.ds, batch_size=4, shuffle=True, seed=123)
        epochs_a = [sum(labels_of(a), []) for _ in range(4)]
        epochs_b = [sum(labels_of(b), []) for _ in range(4)]
        assert epochs_a == epochs_b
        assert all(sorted(e) == list(range(13)) for e in epochs_a)
        assert len({tuple(e) for e in epochs_a}) == 4                      # every epoch differs
        assert epochs_a[0] != list(range(13))
        c = DataLoader(self.ds, batch_size=4, shuffle=True, seed=124)
        assert sum(labels_of(c), []) != epochs_a[0]                         # another seed, another order

    def test_inputs_stay_with_their_labels_when_shuffled(self):
        for xb, yb in DataLoader(self.ds, batch_size=3, shuffle=True, seed=0):
            np.testing.assert_array_equal(xb.data, self.X.data[yb.data])

    def test_epoch_order_does_not_depend_on_reading_earlier_epochs_to_the_end(self):
        a = DataLoader(self.ds, batch_size=4, shuffle=True, seed=5)
        for _ in range(3):
            next(iter(a))                                                   # three epochs, each abandoned
        b = DataLoader(self.ds, batch_size=4, shuffle=True, seed=5)
        b.set_epoch(3)
        assert labels_of(a) == labels_of(b)
        np.testing.assert_array_equal(a.epoch_order(7), b.epoch_order(7))

    def test_same_order_in_a_fresh_process(self):
        import subprocess
        import sys
        code = ("import numpy as np; from tinytorch.core.dataloader import DataLoader, TensorDataset; "
                "l = DataLoader(TensorDataset(np.arange(13)), batch_size=4, shuffle=True, seed=123); "
                "print([b[0].data.tolist() for e in range(2) for b in l])")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        here = DataLoader(TensorDataset(np.arange(13)), batch_size=4, shuffle=True, seed=123)
        assert out.stdout.strip() == str([b[0].data.tolist() for e in range(2) for b in here])

    def test_without_seed_loaders_differ(self):
        ds = TensorDataset(np.arange(200))
        a, b = DataLoader(ds, batch_size=200, shuffle=True), DataLoader(ds, batch_size=200, shuffle=True)
        assert a.seed != b.seed
        assert next(iter(a))[0].data.tolist() != next(iter(b))[0].data.tolist()

    def test_unshuffled_loader_ignores_the_seed(self):
        assert labels_of(DataLoader(self.ds, batch_size=13, seed=3)) == [list(range(13))]

    def test_batches_are_vectorised_for_tensor_datasets(self, monkeypatch):
        "A TensorDataset batch is one fancy index per tensor: __getitem__ is never called per example."
        calls = []
        monkeypatch.setattr(TensorDataset, "__getitem__", lambda self, i: calls.append(i))
        batches = list(DataLoader(self.ds, batch_size=4, shuffle=True, seed=0))
        assert calls == [] and len(batches) == 4
        assert sorted(sum(labels_of(batches), [])) == list(range(13))

    def test_generic_dataset_is_collated(self):
        class Pairs(Dataset):
            def __len__(self):
                return 7

            def __getitem__(self, i):
                return np.full((2, 2), i, dtype=np.float64), i, float(i) / 2

        batches = list(DataLoader(Pairs(), batch_size=3))
        assert len(batches) == 3
        a, b, c = batches[0]
        assert a.shape == (3, 2, 2) and a.dtype == np.float64                # arrays keep their dtype
        assert b.dtype == np.int64 and b.data.tolist() == [0, 1, 2]
        assert c.dtype == np.float32 and c.data.tolist() == [0.0, 0.5, 1.0]  # Python floats -> float32
        assert batches[2][1].data.tolist() == [6]

    def test_single_field_examples_give_a_tensor(self):
        class Squares(Dataset):
            def __len__(self):
                return 4

            def __getitem__(self, i):
                return Tensor([i * i, i])

        (batch,) = list(DataLoader(Squares(), batch_size=4))
        assert isinstance(batch, Tensor) and batch.data.tolist() == [[0, 0], [1, 1], [4, 2], [9, 3]]

    def test_collate_errors(self):
        with pytest.raises(ValueError, match=re.escape("different shapes [(2,), (3,)]")):
            default_collate([np.zeros(2), np.zeros(3)])
        with pytest.raises(ValueError, match="same number of fields; the first has 2"):
            default_collate([(1, 2), (1, 2, 3)])

    def test_base_dataset_must_be_subclassed(self):
        with pytest.raises(NotImplementedError, match="must define __len__"):
            len(Dataset())
        with pytest.raises(NotImplementedError, match="must define __getitem__"):
            Dataset()[0]

    @given(n=st.integers(1, 60), bs=st.integers(1, 70), drop_last=st.booleans(), shuffle=st.booleans(),
           seed=st.integers(0, 2**31))
    @settings(deadline=None, max_examples=60)
    def test_batches_cover_the_data(self, n, bs, drop_last, shuffle, seed):
        loader = DataLoader(TensorDataset(np.arange(n)), batch_size=bs, shuffle=shuffle, seed=seed,
                            drop_last=drop_last)
        sizes = [len(b[0]) for b in loader]
        assert len(sizes) == len(loader) == (n // bs if drop_last else math.ceil(n / bs))
        assert all(s == bs for s in sizes[:-1])
        seen = np.concatenate([b[0].data for b in loader]) if len(loader) else np.array([], dtype=int)
        assert len(set(seen.tolist())) == len(seen)                           # no example twice
        if not drop_last:
            assert sorted(seen.tolist()) == list(range(n))
        else:
            assert len(seen) == n - n % bs

    def test_bad_arguments(self):
        for bad in (0, -1, 1.5, "4", None, True):
            with pytest.raises(ValueError, match=re.escape(f"DataLoader: batch_size must be a positive integer (>= 1), got {bad!r}")):
                DataLoader(self.ds, batch_size=bad)
        for bad in (-1, 2.0, "x"):
            with pytest.raises(ValueError, match=re.escape(f"DataLoader: seed must be an integer >= 0, got {bad!r}")):
                DataLoader(self.ds, seed=bad)
        with pytest.raises(ValueError, match=re.escape("the dataset is empty (len(dataset) == 0, a TensorDataset)")):
            DataLoader(TensorDataset(np.zeros((0, 4))), batch_size=2)
        with pytest.raises(TypeError, match="must have __len__ and __getitem__, got int"):
            DataLoader(5)


# ------------------------------------------------------------------------------------------------
# The shipped data
# ------------------------------------------------------------------------------------------------
class TestDigits:
    def test_sizes_types_and_scaling(self):
        (X, y), (Xt, yt) = load_digits()
        assert X.shape == (1437, 64) and y.shape == (1437,)
        assert Xt.shape == (360, 64) and yt.shape == (360,)
        assert 1437 + 360 == 1797 and DIGITS_N_TEST == 360
        assert X.dtype == Xt.dtype == np.float32 and y.dtype == yt.dtype == np.int64
        assert X.data.min() == 0.0 and X.data.max() == 1.0
        assert np.all((X.data * 16) == np.round(X.data * 16))                # pixels were 0..16
        assert set(np.unique(y.data)) == set(range(10)) == set(np.unique(yt.data))

    def test_split_is_identical_on_every_call_and_pinned(self):
        (X1, y1), (Xt1, yt1) = load_digits()
        (X2, y2), (Xt2, yt2) = load_digits()
        for a, b in ((X1, X2), (y1, y2), (Xt1, Xt2), (yt1, yt2)):
            np.testing.assert_array_equal(a.data, b.data)
            assert a.data is not b.data                                        # fresh arrays each call
        digest = hashlib.sha256(Xt1.data.tobytes() + yt1.data.tobytes()).hexdigest()
        assert digest == TEST_SET_SHA256, "the digits test split changed"

    def test_split_is_stratified_and_disjoint(self):
        import gzip
        with gzip.open(os.path.join(ROOT, "datasets", "digits.csv.gz"), "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64)
        labels = table[:, 64]
        train, test = stratified_split(labels, 360, DIGITS_SPLIT_SEED)
        assert len(test) == 360 and len(train) == 1437
        assert len(np.intersect1d(train, test)) == 0 and len(np.union1d(train, test)) == 1797
        counts, held = np.bincount(labels), np.bincount(labels[test])
        assert np.all(np.abs(held - counts * 360 / 1797) < 1)                 # each class in proportion
        (X, y), (Xt, yt) = load_digits()
        np.testing.assert_array_equal(Xt.data * 16, table[test, :64])
        np.testing.assert_array_equal(y.data, labels[train])

    def test_stratified_split_other_sizes(self):
        labels = np.repeat(np.arange(3), [50, 30, 20])
        train, test = stratified_split(labels, 10, seed=1)
        assert np.bincount(labels[test]).tolist() == [5, 3, 2]
        t2 = stratified_split(labels, 10, seed=2)[1]
        assert not np.array_equal(test, t2)                                   # the seed chooses which
        with pytest.raises(ValueError, match="n_test must be between 1 and 99, got 100"):
            stratified_split(labels, 100, seed=0)

    def test_images(self):
        (X, y), (Xt, yt) = load_digits(flatten=False)
        assert X.shape == (1437, 1, 8, 8) and Xt.shape == (360, 1, 8, 8)
        (Xf, _), _ = load_digits(flatten=True)
        np.testing.assert_array_equal(X.data.reshape(1437, 64), Xf.data)


class TestShakespeareAndLocation:
    def test_tinyshakespeare(self):
        text = load_tinyshakespeare()
        assert isinstance(text, str) and len(text) == 1_115_394
        assert text.startswith("First Citizen:")

    def test_found_from_any_working_directory(self, tmp_path, monkeypatch):
        monkeypatch.delenv("TINYTORCH_DATASETS", raising=False)
        monkeypatch.setenv("TINYTORCH_ROOT", ROOT)
        monkeypatch.chdir(tmp_path)
        assert str(datasets_dir("digits.csv.gz").resolve()) == os.path.realpath(os.path.join(ROOT, "datasets"))
        assert len(load_tinyshakespeare()) == 1_115_394

    def test_environment_variable_comes_first(self, tmp_path, monkeypatch):
        (tmp_path / "tinyshakespeare.txt").write_text("To be.", encoding="utf-8")
        monkeypatch.setenv("TINYTORCH_DATASETS", str(tmp_path))
        monkeypatch.setenv("TINYTORCH_ROOT", ROOT)
        assert datasets_dir("tinyshakespeare.txt") == tmp_path
        assert load_tinyshakespeare() == "To be."
        assert len(load_digits()[1][0]) == 360              # digits not there: the course folder's

    def test_root_argument_comes_before_the_environment(self, tmp_path, monkeypatch):
        (tmp_path / "tinyshakespeare.txt").write_text("Or not.", encoding="utf-8")
        monkeypatch.setenv("TINYTORCH_DATASETS", os.path.join(ROOT, "datasets"))
        assert load_tinyshakespeare(root=tmp_path) == "Or not."
        assert datasets_dir("tinyshakespeare.txt", root=str(tmp_path)) == tmp_path
        (X, _), _ = load_digits(root=os.path.join(ROOT, "datasets"))
        assert X.shape == (1437, 64)

    def test_the_package_never_reads_the_checkout_on_its_own(self, tmp_path, monkeypatch):
        "No root, no TINYTORCH_DATASETS, no TINYTORCH_ROOT: an error, even with ./datasets or the checkout nearby."
        monkeypatch.delenv("TINYTORCH_DATASETS", raising=False)
        monkeypatch.delenv("TINYTORCH_ROOT", raising=False)
        (tmp_path / "datasets").mkdir()
        (tmp_path / "datasets" / "tinyshakespeare.txt").write_text("x")
        monkeypatch.chdir(tmp_path)
        with pytest.raises(FileNotFoundError, match="no root=, TINYTORCH_DATASETS nor TINYTORCH_ROOT"):
            load_tinyshakespeare()

    def test_missing_file_lists_every_place_searched(self, tmp_path, monkeypatch):
        monkeypatch.setenv("TINYTORCH_DATASETS", str(tmp_path / "mine"))
        monkeypatch.setenv("TINYTORCH_ROOT", str(tmp_path / "course"))
        with pytest.raises(FileNotFoundError) as info:
            datasets_dir("no_such_file.csv", root=tmp_path / "given")
        msg = str(info.value)
        assert "'no_such_file.csv'" in msg
        for place in ("given", "mine", os.path.join("course", "datasets")):
            assert str(tmp_path / place) in msg
        assert "TINYTORCH_DATASETS" in msg and "root=" in msg and "scripts/env.sh" in msg


class TestSubsetAndRandomSplit:
    def test_len_counts_batches(self):
        ds = TensorDataset(np.arange(10.0))
        for bs, drop, want in [(3, False, 4), (3, True, 3), (5, False, 2), (10, True, 1), (11, True, 0), (11, False, 1)]:
            loader = DataLoader(ds, batch_size=bs, drop_last=drop)
            assert len(loader) == want == len(list(loader))

    def test_parts_partition_the_dataset(self):
        ds = TensorDataset(np.arange(20.0), np.arange(20))
        parts = random_split(ds, [12, 5, 3], seed=4)
        assert [len(p) for p in parts] == [12, 5, 3] and all(isinstance(p, Subset) for p in parts)
        got = np.concatenate([p.indices for p in parts])
        assert sorted(got.tolist()) == list(range(20))
        assert np.array_equal(got, np.random.default_rng(4).permutation(20))     # one permutation, cut in order
        x, y = parts[1][2]
        assert y.item() == parts[1].indices[2] and x.item() == float(parts[1].indices[2])

    def test_fractions_like_torch(self):
        "The sizes torch.utils.data.random_split gives for the same fractions (printed by torch 2.13)."
        for n, fr, want in [(10, [0.5, 0.3, 0.2], [5, 3, 2]), (11, [0.5, 0.5], [6, 5]), (7, [1 / 3] * 3, [3, 2, 2]),
                            (100, [0.9, 0.1], [90, 10]), (5, [0.1, 0.9], [1, 4])]:
            assert split_lengths(n, fr) == want, (n, fr)

    def test_generic_dataset_and_seeds(self):
        class Squares(Dataset):
            def __len__(self): return 6
            def __getitem__(self, i):
                assert isinstance(i, int)
                return float(i), i * i
        a = random_split(Squares(), [4, 2], seed=1)
        b = random_split(Squares(), [4, 2], seed=1)
        assert np.array_equal(a[0].indices, b[0].indices)
        xs, ys = next(iter(DataLoader(a[1], batch_size=2)))
        assert ys.data.tolist() == [int(i) ** 2 for i in a[1].indices]

    def test_bad_lengths(self):
        ds = TensorDataset(np.arange(10.0))
        with pytest.raises(ValueError, match="sum to 9, not the dataset's length 10"):
            random_split(ds, [5, 4])
        with pytest.raises(ValueError, match="counts or fractions summing to 1"):
            random_split(ds, [0.5, 0.4])
        with pytest.raises(ValueError, match="random_split: each length must be an integer >= 0, got -1"):
            random_split(ds, [11, -1])


class TestSamplers:
    def test_batch_sampler_like_torch(self):
        "Lists of ints, as torch.utils.data.BatchSampler gives for the same arguments."
        assert list(BatchSampler(SequentialSampler(range(10)), 3, drop_last=False)) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
        assert list(BatchSampler(SequentialSampler(range(10)), 3, drop_last=True)) == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
        assert list(BatchSampler([4, 1], 5, drop_last=True)) == []
        for n, bs, drop, want in [(10, 3, False, 4), (10, 3, True, 3), (9, 3, True, 3), (2, 5, True, 0)]:
            assert len(BatchSampler(range(n), bs, drop)) == want

    def test_random_sampler_orders(self):
        rs = RandomSampler(range(12), seed=5)
        epochs = [list(rs) for _ in range(3)]
        assert all(sorted(e) == list(range(12)) for e in epochs) and epochs[0] != epochs[1]
        assert epochs[2] == np.random.default_rng([5, 2]).permutation(12).tolist()
        rs.set_epoch(1)
        assert list(rs) == epochs[1]
        with_rep = RandomSampler(range(3), replacement=True, num_samples=3000, seed=0).indices(0)
        assert len(with_rep) == 3000 and set(with_rep.tolist()) == {0, 1, 2}
        many = RandomSampler(range(5), num_samples=12, seed=1).indices(4)
        assert len(many) == 12 and sorted(many[:10].tolist()) == sorted(list(range(5)) * 2)
        assert len(RandomSampler(range(5), num_samples=12)) == 12

    def test_weighted_sampler_frequencies(self):
        w = np.array([1.0, 0.0, 2.0, 7.0])
        idx = WeightedRandomSampler(w, 20000, seed=0).indices(0)
        np.testing.assert_allclose(np.bincount(idx, minlength=4) / 20000, w / w.sum(), atol=0.01)
        once = WeightedRandomSampler(w, 3, replacement=False, seed=2).indices(0)
        assert sorted(once.tolist()) == [0, 2, 3]
        a, b = WeightedRandomSampler(w, 50, seed=3), WeightedRandomSampler(w, 50, seed=3)
        assert list(a) == list(b) and list(a) != list(WeightedRandomSampler(w, 50, seed=3))  # epoch 1 differs from 0
        with pytest.raises(ValueError, match="cannot draw 4 different indices without replacement from 3"):
            WeightedRandomSampler(w, 4, replacement=False)
        with pytest.raises(ValueError, match="weights must be a 1-D sequence"):
            WeightedRandomSampler([0.0, 0.0], 2)

    def test_loader_with_samplers(self):
        ds = TensorDataset(np.arange(10.0), np.arange(10))
        got = [yb.data.tolist() for _, yb in DataLoader(ds, batch_size=4, sampler=[9, 8, 7, 1, 2])]
        assert got == [[9, 8, 7, 1], [2]]
        weighted = DataLoader(ds, batch_size=5, sampler=WeightedRandomSampler([0] * 5 + [1] * 5, 20, seed=0))
        assert len(weighted) == 4 and all((yb.data >= 5).all() for _, yb in weighted)
        assert [yb.data.tolist() for _, yb in DataLoader(ds, batch_sampler=[[0, 9], [4]])] == [[0, 9], [4]]
        with pytest.raises(ValueError, match="batch_sampler option is mutually exclusive"):
            DataLoader(ds, batch_size=3, batch_sampler=[[0]])
        shuffled = DataLoader(ds, batch_size=10, shuffle=True, seed=7)
        assert isinstance(shuffled.sampler, RandomSampler) and shuffled.sampler.seed == 7
        np.testing.assert_array_equal(next(iter(shuffled))[1].data, np.random.default_rng([7, 0]).permutation(10))
