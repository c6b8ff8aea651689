"""1969 XOR: one layer cannot learn it, a hidden layer can

Minsky and Papert showed that a single-layer perceptron cannot represent XOR: no line separates
{(0,0), (1,1)} from {(0,1), (1,0)}. We train both a single layer and a network with one hidden layer,
with the same loss and optimizer, and measure what each can reach.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Milestone, add_repo_to_path  # noqa: E402

add_repo_to_path()
import numpy as np  # noqa: E402

from tinytorch.core.tensor import Tensor  # noqa: E402
from tinytorch.core.layers import Linear, Sequential  # noqa: E402
from tinytorch.core.activations import Sigmoid, Tanh  # noqa: E402
from tinytorch.core.losses import BinaryCrossEntropyLoss  # noqa: E402
from tinytorch.core.autograd import no_grad  # noqa: E402
from tinytorch.core.optimizers import SGD  # noqa: E402

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
Y = np.array([[0], [1], [1], [0]], dtype=np.float32)


def train(model, steps, lr):
    opt = SGD(model.parameters(), lr=lr, momentum=0.9)
    loss_fn = BinaryCrossEntropyLoss()
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(Tensor(X)), Tensor(Y))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with no_grad():
        acc = float(((model(Tensor(X)).data > 0.5) == (Y > 0.5)).mean())
    return losses, acc


def main(argv=None):
    m = Milestone(__file__, __doc__)
    args = m.parse_args(argv)
    steps = 1000 if not args.fast else 600
    single_accs, hidden_accs = [], []
    curves = {}
    for seed in range(3):
        rng = np.random.default_rng(args.seed + seed)
        single = Sequential(Linear(2, 1, rng=rng), Sigmoid())
        hidden = Sequential(Linear(2, 4, rng=rng), Tanh(), Linear(4, 1, rng=rng), Sigmoid())
        l_single, a_single = train(single, steps, lr=0.5)
        l_hidden, a_hidden = train(hidden, steps, lr=0.5)
        single_accs.append(a_single)
        hidden_accs.append(a_hidden)
        if seed == 0:
            curves = {"BCE loss": {"single layer": l_single, "one hidden layer": l_hidden}}
            m.metric("single layer final loss (seed 0)", l_single[-1], "{:.4f}")
            m.metric("hidden layer final loss (seed 0)", l_hidden[-1], "{:.4f}")
    m.metric("single layer accuracy per seed", single_accs)
    m.metric("hidden layer accuracy per seed", hidden_accs)
    m.plot_curves(curves, "1969_xor.png", "XOR: single layer vs one hidden layer", xlabel="step")
    m.gate("a single layer fails (accuracy <= 0.75 for every seed)", max(single_accs) <= 0.75)
    m.gate("a hidden layer solves XOR (accuracy 1.0 for every seed)", min(hidden_accs) == 1.0)
    return m.finish()


if __name__ == "__main__":
    sys.exit(main())
