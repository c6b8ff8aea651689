"""1986 Backpropagation: a multilayer perceptron reads handwritten digits

Rumelhart, Hinton and Williams showed that backpropagation trains hidden layers. We train a
64-128-10 MLP with Adam on the shipped UCI digits (1,437 training images) and measure accuracy on
the fixed held-out split of 360 images it never saw. Inputs are standardised with the training
set's per-pixel mean and spread (never the held-out set's).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Milestone, add_repo_to_path  # noqa: E402

add_repo_to_path()
import numpy as np  # noqa: E402

from tinytorch.core.tensor import Tensor  # noqa: E402
from tinytorch.core.layers import Linear, Sequential, Dropout  # noqa: E402
from tinytorch.core.activations import ReLU  # noqa: E402
from tinytorch.core.losses import CrossEntropyLoss  # noqa: E402
from tinytorch.core.optimizers import Adam  # noqa: E402
from tinytorch.core.training import Trainer, CosineAnnealingLR  # noqa: E402
from tinytorch.core.dataloader import DataLoader, TensorDataset, load_digits  # noqa: E402


def accuracy(logits, y):
    return float((logits.data.argmax(axis=1) == y.data).mean())


def main(argv=None):
    m = Milestone(__file__, __doc__)
    args = m.parse_args(argv)
    (X_train, y_train), (X_test, y_test) = load_digits()
    mean, spread = X_train.data.mean(axis=0), X_train.data.std(axis=0) + 0.1
    X_train, X_test = Tensor((X_train.data - mean) / spread), Tensor((X_test.data - mean) / spread)
    rng = np.random.default_rng(args.seed)
    model = Sequential(Linear(64, 128, rng=rng), ReLU(), Dropout(0.2, rng=rng), Linear(128, 10, rng=rng))
    epochs = 100 if not args.fast else 30
    opt = Adam(model.parameters(), lr=2e-3, weight_decay=1e-3)
    trainer = Trainer(model, opt, CrossEntropyLoss(), metrics={"accuracy": accuracy},
                      scheduler=CosineAnnealingLR(opt, T_max=epochs), progress=False)
    train_loader = DataLoader(TensorDataset(X_train, y_train), batch_size=64, shuffle=True, seed=args.seed)
    test_loader = DataLoader(TensorDataset(X_test, y_test), batch_size=360)
    history = trainer.fit(train_loader, test_loader, epochs=epochs)
    final = trainer.evaluate(test_loader)
    m.metric("train images", len(X_train))
    m.metric("held-out images", len(X_test))
    m.metric("epochs", epochs)
    m.metric("final train loss", history["train_loss"][-1], "{:.4f}")
    m.metric("held-out loss", final["loss"], "{:.4f}")
    m.metric("held-out accuracy", final["accuracy"], "{:.4f}")
    m.plot_curves({"loss": {"train": history["train_loss"], "held-out": history["val_loss"]},
                   "held-out accuracy": {"MLP": history["val_accuracy"]}},
                  "1986_mlp.png", "64-128-10 MLP on digits")
    m.gate("held-out accuracy >= 0.97", final["accuracy"] >= 0.97)
    return m.finish()


if __name__ == "__main__":
    sys.exit(main())
