"""Module 08's recursive default_collate (dicts, tuples, namedtuples, lists, strings down to stacked leaves) and
ConcatDataset (bisect over the cumulative sizes, negative indices, ds1 + ds2), without PyTorch."""
from collections import namedtuple

import numpy as np
import pytest

from tinytorch.core.dataloader import ConcatDataset, DataLoader, Dataset, TensorDataset, default_collate
from tinytorch.core.tensor import Tensor

Pair = namedtuple("Pair", "image label")


def _ds(start, n):
    return TensorDataset(np.arange(start, start + n, dtype=np.int64))


def test_concat_indexes_each_part():
    parts = [_ds(0, 3), _ds(100, 0), _ds(10, 4), _ds(50, 2)]
    cat = ConcatDataset(parts)
    assert len(cat) == 9 and cat.cumulative_sizes == [3, 3, 7, 9]
    assert [int(cat[i][0].data) for i in range(9)] == [0, 1, 2, 10, 11, 12, 13, 50, 51]
    assert [int(cat[i][0].data) for i in (-1, -2, -9)] == [51, 50, 0]
    assert [int(b[0].data[0]) for b in DataLoader(cat, batch_size=4)] == [0, 11, 51]


def test_concat_by_plus_and_errors():
    cat = _ds(0, 2) + _ds(5, 1)
    assert isinstance(cat, ConcatDataset) and [int(cat[i][0].data) for i in range(3)] == [0, 1, 5]
    with pytest.raises(IndexError, match="index 3"):
        cat[3]
    with pytest.raises(ValueError, match="-4"):
        cat[-4]
    with pytest.raises(ValueError, match="empty"):
        ConcatDataset([])


def test_collate_recurses_like_torch():
    samples = [{"x": np.full(2, i, dtype=np.float64), "meta": (i, f"s{i}"), "p": Pair(Tensor([i, i]), i)}
               for i in range(3)]
    batch = default_collate(samples)
    assert set(batch) == {"x", "meta", "p"}
    assert batch["x"].dtype == np.float64 and batch["x"].data.tolist() == [[0, 0], [1, 1], [2, 2]]
    assert isinstance(batch["meta"], tuple) and batch["meta"][0].data.tolist() == [0, 1, 2]
    assert batch["meta"][1] == ["s0", "s1", "s2"]
    assert isinstance(batch["p"], Pair) and batch["p"].image.shape == (3, 2) and batch["p"].label.data.tolist() == [0, 1, 2]
    nested = default_collate([[(1.0, 2), [np.zeros(1)]], [(3.0, 4), [np.ones(1)]]])
    assert isinstance(nested, list) and isinstance(nested[0], tuple) and isinstance(nested[1], list)
    assert nested[0][0].data.tolist() == [1.0, 3.0] and nested[0][1].data.tolist() == [2, 4]
    assert nested[1][0].data.tolist() == [[0.0], [1.0]]


def test_dataloader_collates_dict_examples():
    class Records(Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return {"feature": np.full(3, i, dtype=np.float32), "label": i}

    batches = list(DataLoader(Records(), batch_size=2))
    assert [b["label"].data.tolist() for b in batches] == [[0, 1], [2, 3], [4]]
    assert batches[0]["feature"].shape == (2, 3)


def test_collate_structure_errors():
    with pytest.raises(ValueError, match="same keys"):
        default_collate([{"a": 1}, {"b": 1}])
    with pytest.raises(ValueError, match="same keys"):
        default_collate([{"a": 1}, (1,)])
    with pytest.raises(ValueError, match="same number of fields; the first has 2"):
        default_collate([(1, 2), (1, 2, 3)])
