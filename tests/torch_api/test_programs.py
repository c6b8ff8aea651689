"""Real PyTorch programs (tests/torch_api/programs.py) run unchanged on tinytorch, with only the
import changed, and give PyTorch's losses from the same weights and data."""

import numpy as np
import pytest
import torch

import tinytorch
from tinytorch.core.dataloader import load_digits

import programs as P


def test_polynomial_autograd_tutorial_matches_pytorch():
    ours, w_ours = P.polynomial_autograd(tinytorch)
    theirs, w_theirs = P.polynomial_autograd(torch)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4)
    np.testing.assert_allclose(w_ours, w_theirs, rtol=1e-4, atol=1e-6)
    assert ours[-1] < 0.2 * ours[0]                     # the hand-written step really trains


def test_polynomial_nn_tutorial_with_hand_written_sgd_matches_pytorch():
    torch.manual_seed(0)             # unseeded, about one start in 60 stays above 20 % of its first loss
    theirs_model = P.polynomial_nn_model(torch)
    ours_model = P.polynomial_nn_model(tinytorch)
    P.copy_weights(theirs_model, ours_model)
    weight = ours_model[0].weight
    ours, theirs = P.polynomial_nn(tinytorch, ours_model), P.polynomial_nn(torch, theirs_model)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4)
    assert ours_model[0].weight is weight and ours[-1] < 0.2 * ours[0]   # updated in place, trained


@pytest.fixture(scope="module")
def digits():
    (X, y), _ = load_digits(flatten=True)
    return np.asarray(X)[:512].astype(np.float32), np.asarray(y)[:512].astype(np.int64)


def test_mlp_with_optim_scheduler_and_dataloader_matches_pytorch(digits):
    X, Y = digits
    torch.manual_seed(0)
    theirs_model = P.mlp_model(torch)
    ours_model = P.mlp_model(tinytorch)
    P.copy_weights(theirs_model, ours_model)
    ours, acc_ours = P.mlp_train(tinytorch, ours_model, X, Y)
    theirs, acc_theirs = P.mlp_train(torch, theirs_model, X, Y)
    assert len(ours) == len(theirs) == 3 * (512 // 64)
    np.testing.assert_allclose(ours, theirs, rtol=2e-3, atol=2e-4)
    assert abs(acc_ours - acc_theirs) <= 2 / 512 and acc_ours > 0.3 and ours[-1] < ours[0]


def test_mnist_cnn_with_adadelta_and_nll_loss_matches_pytorch(digits):
    X, Y = digits
    X = X.reshape(-1, 1, 8, 8)
    torch.manual_seed(0)
    theirs_model = P.cnn_model(torch, p_drop=0.0)       # dropout draws differ between frameworks
    ours_model = P.cnn_model(tinytorch, p_drop=0.0)
    P.copy_weights(theirs_model, ours_model)
    ours, loss_ours, acc_ours = P.cnn_train(tinytorch, ours_model, X, Y)
    theirs, loss_theirs, acc_theirs = P.cnn_train(torch, theirs_model, X, Y)
    np.testing.assert_allclose(ours, theirs, rtol=2e-3, atol=2e-4)
    np.testing.assert_allclose(loss_ours, loss_theirs, rtol=2e-3)
    assert abs(acc_ours - acc_theirs) <= 2 / 512 and ours[-1] < ours[0]


def test_mnist_cnn_trains_with_dropout_on(digits):
    X, Y = digits
    tinytorch.manual_seed(0)
    model = P.cnn_model(tinytorch, p_drop=0.25)
    losses, _, acc = P.cnn_train(tinytorch, model, X.reshape(-1, 1, 8, 8), Y, epochs=4, batch_size=16)
    assert np.mean(losses[-8:]) < 0.85 * np.mean(losses[:8]) and acc > 0.4


@pytest.fixture(scope="module")
def shakespeare():
    from tinytorch.core.dataloader import load_tinyshakespeare
    text = load_tinyshakespeare()[:20000]
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    return np.array([stoi[c] for c in text], dtype=np.int64), len(chars)


def test_char_gpt_matches_pytorch_and_generates(shakespeare):
    data, vocab = shakespeare
    torch.manual_seed(0)
    theirs_model = P.gpt_model(torch, vocab)
    ours_model = P.gpt_model(tinytorch, vocab)
    assert list(ours_model.state_dict()) == list(theirs_model.state_dict())     # same names, buffers too
    P.copy_weights(theirs_model, ours_model)
    starts = np.random.default_rng(0).integers(0, len(data) - 17, size=(12, 8))
    ours = P.gpt_train(tinytorch, ours_model, data, starts)
    theirs = P.gpt_train(torch, theirs_model, data, starts)
    np.testing.assert_allclose(ours, theirs, rtol=2e-3, atol=2e-4)
    assert ours[-1] < ours[0]
    tinytorch.manual_seed(1)
    ours_model.eval()
    with tinytorch.no_grad():
        out = ours_model.generate(tinytorch.zeros((1, 1), dtype=tinytorch.long), max_new_tokens=20)
    assert out.shape == (1, 21) and out.dtype == np.int64 and int(out.max()) < vocab
