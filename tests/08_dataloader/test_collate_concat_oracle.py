"""Module 08's default_collate and ConcatDataset against torch.utils.data on the same examples: the same
structure (dict, tuple, namedtuple, list, strings; a plain tuple of fields stays a tuple where torch returns a
list) and the same values, and the same example at every index."""
from collections import namedtuple

import numpy as np
import torch
import torch.utils.data as tud

from tinytorch.core.dataloader import ConcatDataset, default_collate
from tinytorch.core.tensor import Tensor

Pair = namedtuple("Pair", "image label")


def _same(ours, theirs):
    if isinstance(theirs, dict):
        assert isinstance(ours, dict) and ours.keys() == theirs.keys()
        for k in theirs:
            _same(ours[k], theirs[k])
    elif isinstance(theirs, (tuple, list)) and not isinstance(theirs, str):
        if hasattr(theirs, "_fields"):                               # a namedtuple keeps its type; torch turns
            assert type(ours) is type(theirs)                        # a plain tuple of fields into a list,
        assert isinstance(ours, (tuple, list)) and len(ours) == len(theirs)   # tinytorch keeps the tuple
        for a, b in zip(ours, theirs):
            _same(a, b)
    elif isinstance(theirs, torch.Tensor):
        assert isinstance(ours, Tensor) and ours.shape == tuple(theirs.shape)
        np.testing.assert_allclose(ours.data, theirs.numpy())
    else:
        assert ours == theirs


def test_collate_matches_torch():
    rng = np.random.default_rng(0)
    samples = [{"x": rng.standard_normal((2, 3)), "meta": (int(i), f"id{i}"), "p": Pair(rng.standard_normal(4), [i, 2 * i])}
               for i in range(5)]
    _same(default_collate(samples), tud.default_collate(samples))


def test_concat_matches_torch():
    data = [np.arange(3), np.arange(10, 11), np.arange(20, 25)]
    theirs = tud.ConcatDataset([tud.TensorDataset(torch.tensor(d)) for d in data])
    from tinytorch.core.dataloader import TensorDataset
    ours = ConcatDataset([TensorDataset(d) for d in data])
    assert len(ours) == len(theirs) and ours.cumulative_sizes == theirs.cumulative_sizes
    for i in range(-len(theirs), len(theirs)):
        assert int(ours[i][0].data) == int(theirs[i][0])
