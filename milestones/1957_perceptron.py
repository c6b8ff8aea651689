"""1957 Rosenblatt's perceptron: a single neuron learns a linearly separable rule

Frank Rosenblatt's perceptron updates its weights only when it is wrong: w += lr * (y - y_hat) * x.
The convergence theorem says that on linearly separable data it stops making mistakes after finitely
many updates. We check that on 2-D points split by a line, with a held-out set.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Milestone, add_repo_to_path  # noqa: E402

add_repo_to_path()
import numpy as np  # noqa: E402

from tinytorch.core.tensor import Tensor  # noqa: E402
from tinytorch.core.layers import Linear  # noqa: E402
from tinytorch.core.autograd import no_grad  # noqa: E402


def make_data(rng, n):
    "Points in [-1, 1]^2 labelled by the side of the line 0.8 x - 0.5 y + 0.1 = 0, with a margin."
    X = rng.uniform(-1, 1, (4 * n, 2)).astype(np.float32)
    score = 0.8 * X[:, 0] - 0.5 * X[:, 1] + 0.1
    keep = np.abs(score) > 0.05                      # a margin makes the data clearly separable
    X, score = X[keep][:n], score[keep][:n]
    return X, (score > 0).astype(np.float32)


def main(argv=None):
    m = Milestone(__file__, __doc__)
    args = m.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    X_train, y_train = make_data(rng, 200)
    X_test, y_test = make_data(rng, 200)

    neuron = Linear(2, 1, rng=rng)
    lr = 0.1
    mistakes_per_epoch, accuracy_per_epoch = [], []
    with no_grad():                                  # the perceptron rule is not gradient descent
        for epoch in range(50 if not args.fast else 20):
            mistakes = 0
            for i in rng.permutation(len(X_train)):
                x = Tensor(X_train[i:i + 1])
                y_hat = float(neuron(x).item() > 0)
                err = y_train[i] - y_hat
                if err != 0:
                    mistakes += 1
                    neuron.weight.data += lr * err * X_train[i:i + 1]
                    neuron.bias.data += lr * err
            pred = (neuron(Tensor(X_train)).data[:, 0] > 0).astype(np.float32)
            mistakes_per_epoch.append(mistakes)
            accuracy_per_epoch.append(float((pred == y_train).mean()))
            if mistakes == 0:
                break
        test_pred = (neuron(Tensor(X_test)).data[:, 0] > 0).astype(np.float32)
    test_acc = float((test_pred == y_test).mean())
    m.metric("epochs until no mistakes", len(mistakes_per_epoch))
    m.metric("mistakes in the last epoch", mistakes_per_epoch[-1])
    m.metric("train accuracy", accuracy_per_epoch[-1], "{:.3f}")
    m.metric("held-out accuracy", test_acc, "{:.3f}")
    m.plot_curves({"mistakes per epoch": {"perceptron": mistakes_per_epoch},
                   "train accuracy": {"perceptron": accuracy_per_epoch}},
                  "1957_perceptron.png", "Perceptron on linearly separable data")
    m.gate("converges: an epoch with zero mistakes", mistakes_per_epoch[-1] == 0)
    m.gate("held-out accuracy >= 0.95", test_acc >= 0.95)
    return m.finish()


if __name__ == "__main__":
    sys.exit(main())
