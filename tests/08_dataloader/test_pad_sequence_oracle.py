"""Module 08's pad_sequence against torch.nn.utils.rnn.pad_sequence (float64): value and the gradient of every
sequence, for both layouts, both padding sides and a padding value."""
import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pad_sequence as torch_pad

from tinytorch.core.dataloader import pad_sequence
from tinytorch.core.tensor import Tensor

torch.set_num_threads(1)


@pytest.mark.parametrize("batch_first", (True, False))
@pytest.mark.parametrize("side", ("right", "left"))
def test_matches_torch(batch_first, side):
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal((n, 3)) for n in (4, 1, 6, 6, 2)]
    ours_in = [Tensor(a, dtype=np.float64, requires_grad=True) for a in arrays]
    theirs_in = [torch.tensor(a, requires_grad=True) for a in arrays]
    ours = pad_sequence(ours_in, batch_first=batch_first, padding_value=-2.5, padding_side=side)
    theirs = torch_pad(theirs_in, batch_first=batch_first, padding_value=-2.5, padding_side=side)
    np.testing.assert_array_equal(ours.data, theirs.detach().numpy())
    up = rng.standard_normal(ours.shape)
    ours.backward(up)
    theirs.backward(torch.tensor(up))
    for o, t in zip(ours_in, theirs_in):
        np.testing.assert_array_equal(o.grad.data, t.grad.numpy())
