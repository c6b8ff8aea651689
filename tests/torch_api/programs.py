"""PyTorch programs written as PyTorch code, run on either framework: each function takes the
framework as its `torch` argument (`import torch` or `import tinytorch as torch`: the only change).

They follow the official tutorials' style: the polynomial fit of "Learning PyTorch with Examples"
(a hand-written `with torch.no_grad(): a -= lr * a.grad` step, then the nn + hand-written SGD
version), an nn.Module MLP trained with torch.optim and a scheduler through a DataLoader, the classic
MNIST CNN of pytorch/examples (Adadelta + StepLR, nll_loss on log_softmax) on the shipped 8x8
digits, and a character-level GPT in the style of Karpathy's "gpt.py" (ModuleList of heads,
register_buffer('tril'), masked_fill, multinomial sampling, apply(_init_weights), AdamW).

Randomness differs between the frameworks, so the data and batch indices come in as NumPy arrays
and the weights are copied from the PyTorch model with the state-dict idiom `sd[k].copy_(v)`.
"""

from __future__ import annotations

import math

import numpy as np


def copy_weights(src_model, dst_model):
    "Load a PyTorch model's weights into a tinytorch model (or the other way) with sd[k].copy_(v)."
    sd = dst_model.state_dict()
    for k, v in src_model.state_dict().items():
        sd[k].copy_(np.asarray(v.detach().numpy() if hasattr(v, "detach") else v))


# --------------------------------------------------------------------------------------------------
# 1. polynomial fit, "Learning PyTorch with Examples": tensors and autograd, hand-written SGD
# --------------------------------------------------------------------------------------------------
def polynomial_autograd(torch, steps=300, init=(0.1, -0.2, 0.3, -0.05)):
    dtype = torch.float
    device = torch.device("cpu")
    x = torch.linspace(-math.pi, math.pi, 2000, device=device, dtype=dtype)
    y = torch.sin(x)
    a, b, c, d = (torch.tensor(v, device=device, dtype=dtype, requires_grad=True) for v in init)
    learning_rate = 1e-6
    losses = []
    for t in range(steps):
        y_pred = a + b * x + c * x ** 2 + d * x ** 3
        loss = (y_pred - y).pow(2).sum()
        losses.append(loss.item())
        loss.backward()
        with torch.no_grad():
            a -= learning_rate * a.grad
            b -= learning_rate * b.grad
            c -= learning_rate * c.grad
            d -= learning_rate * d.grad
            a.grad = None
            b.grad = None
            c.grad = None
            d.grad = None
    return losses, [a.item(), b.item(), c.item(), d.item()]


def polynomial_nn_model(torch):
    return torch.nn.Sequential(torch.nn.Linear(3, 1), torch.nn.Flatten(0, 1))


def polynomial_nn(torch, model, steps=300):
    x = torch.linspace(-math.pi, math.pi, 2000)
    y = torch.sin(x)
    p = torch.tensor([1, 2, 3])
    xx = x.unsqueeze(-1).pow(p)
    loss_fn = torch.nn.MSELoss(reduction="sum")
    learning_rate = 1e-6
    losses = []
    for t in range(steps):
        y_pred = model(xx)
        loss = loss_fn(y_pred, y)
        losses.append(loss.item())
        model.zero_grad()
        loss.backward()
        with torch.no_grad():
            for param in model.parameters():
                param -= learning_rate * param.grad
    return losses


# --------------------------------------------------------------------------------------------------
# 2. an MLP: nn.Module, torch.optim, a scheduler, a DataLoader
# --------------------------------------------------------------------------------------------------
def mlp_model(torch):
    nn = torch.nn
    F = torch.nn.functional

    class MLP(nn.Module):
        def __init__(self, d_in=64, hidden=32, n_classes=10):
            super().__init__()
            self.fc1 = nn.Linear(d_in, hidden)
            self.fc2 = nn.Linear(hidden, hidden)
            self.out = nn.Linear(hidden, n_classes)

        def forward(self, x):
            x = F.relu(self.fc1(x))
            x = F.gelu(self.fc2(x))
            return self.out(x)

    return MLP()


def mlp_train(torch, model, X, Y, epochs=3, batch_size=64):
    from_data = torch.utils.data
    loader = from_data.DataLoader(from_data.TensorDataset(torch.tensor(X), torch.tensor(Y)), batch_size=batch_size,
                                  shuffle=False, num_workers=0, pin_memory=False, drop_last=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    losses = []
    model.train()
    for epoch in range(epochs):
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        scheduler.step()
    model.eval()
    with torch.no_grad():
        acc = (model(torch.tensor(X)).argmax(dim=1) == torch.tensor(Y)).float().mean().item()
    return losses, acc


# --------------------------------------------------------------------------------------------------
# 3. the classic MNIST CNN of pytorch/examples, on 8x8 digits
# --------------------------------------------------------------------------------------------------
def cnn_model(torch, p_drop=0.25):
    nn = torch.nn
    F = torch.nn.functional

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 8, 3, 1)
            self.conv2 = nn.Conv2d(8, 16, 3, 1)
            self.dropout1 = nn.Dropout(p_drop)
            self.dropout2 = nn.Dropout(2 * p_drop)
            self.fc1 = nn.Linear(64, 32)
            self.fc2 = nn.Linear(32, 10)

        def forward(self, x):
            x = self.conv1(x)
            x = F.relu(x)
            x = self.conv2(x)
            x = F.relu(x)
            x = F.max_pool2d(x, 2)
            x = self.dropout1(x)
            x = torch.flatten(x, 1)
            x = self.fc1(x)
            x = F.relu(x)
            x = self.dropout2(x)
            x = self.fc2(x)
            output = F.log_softmax(x, dim=1)
            return output

    return Net()


def cnn_train(torch, model, X, Y, epochs=2, batch_size=64):
    F = torch.nn.functional
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device)
    train_loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.tensor(X), torch.tensor(Y)), batch_size=batch_size)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    losses = []
    for epoch in range(epochs):
        model.train()
        for batch_idx, (data, target) in enumerate(train_loader):
            data, target = data.to(device), target.to(device)
            optimizer.zero_grad()
            output = model(data)
            loss = F.nll_loss(output, target)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        scheduler.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        output = model(torch.tensor(X))
        test_loss = F.nll_loss(output, torch.tensor(Y), reduction="sum").item() / len(X)
        pred = output.argmax(dim=1, keepdim=True)
        correct += pred.eq(torch.tensor(Y).view_as(pred)).sum().item()
    return losses, test_loss, correct / len(X)


# --------------------------------------------------------------------------------------------------
# 4. a character-level GPT in the style of Karpathy's gpt.py
# --------------------------------------------------------------------------------------------------
def gpt_model(torch, vocab_size, n_embd=32, n_head=4, n_layer=2, block_size=16, dropout=0.0):
    nn = torch.nn
    F = torch.nn.functional

    class Head(nn.Module):
        def __init__(self, head_size):
            super().__init__()
            self.key = nn.Linear(n_embd, head_size, bias=False)
            self.query = nn.Linear(n_embd, head_size, bias=False)
            self.value = nn.Linear(n_embd, head_size, bias=False)
            self.register_buffer("tril", torch.tril(torch.ones(block_size, block_size)))
            self.dropout = nn.Dropout(dropout)

        def forward(self, x):
            B, T, C = x.shape
            k = self.key(x)
            q = self.query(x)
            wei = q @ k.transpose(-2, -1) * k.shape[-1] ** -0.5
            wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))
            wei = F.softmax(wei, dim=-1)
            wei = self.dropout(wei)
            v = self.value(x)
            return wei @ v

    class MultiHeadAttention(nn.Module):
        def __init__(self, num_heads, head_size):
            super().__init__()
            self.heads = nn.ModuleList([Head(head_size) for _ in range(num_heads)])
            self.proj = nn.Linear(head_size * num_heads, n_embd)
            self.dropout = nn.Dropout(dropout)

        def forward(self, x):
            out = torch.cat([h(x) for h in self.heads], dim=-1)
            return self.dropout(self.proj(out))

    class FeedFoward(nn.Module):
        def __init__(self, n_embd):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.ReLU(), nn.Linear(4 * n_embd, n_embd),
                                     nn.Dropout(dropout))

        def forward(self, x):
            return self.net(x)

    class Block(nn.Module):
        def __init__(self, n_embd, n_head):
            super().__init__()
            head_size = n_embd // n_head
            self.sa = MultiHeadAttention(n_head, head_size)
            self.ffwd = FeedFoward(n_embd)
            self.ln1 = nn.LayerNorm(n_embd)
            self.ln2 = nn.LayerNorm(n_embd)

        def forward(self, x):
            x = x + self.sa(self.ln1(x))
            x = x + self.ffwd(self.ln2(x))
            return x

    class GPTLanguageModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.token_embedding_table = nn.Embedding(vocab_size, n_embd)
            self.position_embedding_table = nn.Embedding(block_size, n_embd)
            self.blocks = nn.Sequential(*[Block(n_embd, n_head=n_head) for _ in range(n_layer)])
            self.ln_f = nn.LayerNorm(n_embd)
            self.lm_head = nn.Linear(n_embd, vocab_size)
            self.apply(self._init_weights)

        def _init_weights(self, module):
            if isinstance(module, nn.Linear):
                torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
                if module.bias is not None:
                    torch.nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

        def forward(self, idx, targets=None):
            B, T = idx.shape
            tok_emb = self.token_embedding_table(idx)
            pos_emb = self.position_embedding_table(torch.arange(T))
            x = tok_emb + pos_emb
            x = self.blocks(x)
            x = self.ln_f(x)
            logits = self.lm_head(x)
            if targets is None:
                loss = None
            else:
                B, T, C = logits.shape
                logits = logits.view(B * T, C)
                targets = targets.view(B * T)
                loss = F.cross_entropy(logits, targets)
            return logits, loss

        def generate(self, idx, max_new_tokens):
            for _ in range(max_new_tokens):
                idx_cond = idx[:, -block_size:]
                logits, loss = self(idx_cond)
                logits = logits[:, -1, :]
                probs = F.softmax(logits, dim=-1)
                idx_next = torch.multinomial(probs, num_samples=1)
                idx = torch.cat((idx, idx_next), dim=1)
            return idx

    return GPTLanguageModel()


def gpt_train(torch, model, data, batch_starts, block_size=16, lr=1e-3):
    "Train on the batches whose start offsets are listed (one row of `batch_starts` per step)."
    data = torch.tensor(data, dtype=torch.long)

    def get_batch(ix):
        x = torch.stack([data[i:i + block_size] for i in ix])
        y = torch.stack([data[i + 1:i + block_size + 1] for i in ix])
        return x, y

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for ix in batch_starts:
        xb, yb = get_batch(torch.tensor(ix))
        logits, loss = model(xb, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses
