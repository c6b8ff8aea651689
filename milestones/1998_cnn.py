"""1998 LeNet: a convolutional network reads handwritten digits

LeCun et al. showed that convolutions, which share one small filter across every position of an
image, learn digits better than a fully connected network of the same size. We train a LeNet-style
CNN on the shipped 8x8 UCI digits and measure it on the fixed held-out split of 360 images. Inputs
are standardised with the training set's mean and spread.
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
from tinytorch.core.spatial import Conv2d, MaxPool2d, Flatten  # noqa: E402


def accuracy(logits, y):
    return float((logits.data.argmax(axis=1) == y.data).mean())


def lenet(rng):
    return Sequential(
        Conv2d(1, 16, 3, padding=1, rng=rng), ReLU(),           # 16 x 8 x 8
        Conv2d(16, 32, 3, padding=1, rng=rng), ReLU(),          # 32 x 8 x 8
        MaxPool2d(2),                                            # 32 x 4 x 4
        Flatten(),
        Linear(32 * 4 * 4, 64, rng=rng), ReLU(), Dropout(0.25, rng=rng),
        Linear(64, 10, rng=rng))


def main(argv=None):
    m = Milestone(__file__, __doc__)
    args = m.parse_args(argv)
    (X_train, y_train), (X_test, y_test) = load_digits(flatten=False)
    mean, spread = X_train.data.mean(), X_train.data.std()
    X_train, X_test = Tensor((X_train.data - mean) / spread), Tensor((X_test.data - mean) / spread)
    rng = np.random.default_rng(args.seed)
    model = lenet(rng)
    epochs = 30 if not args.fast else 4
    opt = Adam(model.parameters(), lr=2e-3, weight_decay=1e-4)
    trainer = Trainer(model, opt, CrossEntropyLoss(), metrics={"accuracy": accuracy},
                      scheduler=CosineAnnealingLR(opt, T_max=epochs), progress=False)
    train_loader = DataLoader(TensorDataset(X_train, y_train), batch_size=64, shuffle=True, seed=args.seed)
    test_loader = DataLoader(TensorDataset(X_test, y_test), batch_size=360)
    history = trainer.fit(train_loader, test_loader, epochs=epochs)
    final = trainer.evaluate(test_loader)
    m.metric("parameters", model.num_parameters())
    m.metric("epochs", epochs)
    m.metric("final train loss", history["train_loss"][-1], "{:.4f}")
    m.metric("held-out loss", final["loss"], "{:.4f}")
    m.metric("held-out accuracy", final["accuracy"], "{:.4f}")
    m.plot_curves({"loss": {"train": history["train_loss"], "held-out": history["val_loss"]},
                   "held-out accuracy": {"CNN": history["val_accuracy"]}},
                  "1998_cnn.png", "LeNet-style CNN on digits")
    m.gate("held-out accuracy >= 0.98", final["accuracy"] >= 0.98)
    return m.finish()


if __name__ == "__main__":
    sys.exit(main())
