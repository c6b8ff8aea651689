"""The course demo: modules 01-05 in action, ending in a small network trained with autograd.

Run with `bash scripts/demo.sh` (it creates the environment first). Every number printed here is
computed when it runs.
"""
import numpy as np

from tinytorch.core.tensor import Tensor
from tinytorch.core.activations import ReLU, Softmax
from tinytorch.core.layers import Linear, Sequential
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.autograd import gradcheck, no_grad


def section(title):
    print(f"\n== {title} " + "=" * (60 - len(title)))


def main():
    section("01 tensor")
    a = Tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    b = Tensor([10.0, 20.0, 30.0])
    print("a + b (broadcast):\n", (a + b).data)
    print("a @ a.T:\n", (a @ a.T).data, " dtype", (a @ a.T).dtype)
    q = Tensor([1, -2, 127], dtype=np.int8)
    print(f"int8 tensor: {q.data} uses {q.data.nbytes} bytes")
    try:
        a @ b.reshape(1, 3)
    except ValueError as e:
        print("shape error, as it should be:", e)

    section("02 activations")
    logits = Tensor([[1e4, 0.0, -1e4]])
    print("softmax at logits of 1e4 (stable):", Softmax()(logits).data)

    section("03 layers")
    model = Sequential(Linear(2, 16, rng=np.random.default_rng(0)), ReLU(),
                       Linear(16, 2, rng=np.random.default_rng(1)))
    print(model)
    print("parameters:", [f"{n} {p.shape}" for n, p in model.named_parameters()])

    section("04 losses + 05 autograd")
    x = Tensor(np.random.default_rng(2).standard_normal((4, 3)), requires_grad=True, dtype=np.float64)
    print("gradcheck of log-sum-exp:", gradcheck(lambda t: (t.exp().sum(axis=1)).log(), [x]))

    rng = np.random.default_rng(3)
    X = rng.standard_normal((200, 2)).astype(np.float32)
    y = ((X[:, 0] ** 2 + X[:, 1] ** 2) < 1.0).astype(np.int64)       # inside / outside a circle
    X_t, y_t = Tensor(X), Tensor(y)
    loss_fn = CrossEntropyLoss()
    lr = 0.5
    print("training a 2-16-2 MLP with loss.backward() and a hand-written SGD step:")
    for step in range(301):
        loss = loss_fn(model(X_t), y_t)
        model.zero_grad()
        loss.backward()
        with no_grad():
            for p in model.parameters():
                p.data -= lr * p.grad.data
        if step % 50 == 0:
            acc = (model(X_t).argmax(axis=1).data == y).mean()
            print(f"  step {step:3d}  loss {loss.item():.4f}  accuracy {acc:.3f}")


if __name__ == "__main__":
    main()
