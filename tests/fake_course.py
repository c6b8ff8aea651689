"""A throwaway two-module course for tests of tito: module 01 is one notebook, module 02 is one
chapter in two notebooks (02_pair exports tinytorch.core.pair, 02_pair_ops tinytorch.nn.pair_ops),
as module 17 of the real course is. Shared by tests/release, tests/grading and tests/tito."""
import json

MULTI_MANIFEST = '''
[[module]]
number = 1
folder = "01_tensor"
title = "Tensor"
exports = ["tinytorch.core.tensor"]
prerequisites = []
points = 10

[[module]]
number = 2
folder = "02_pair"
title = "Pair: one chapter in two notebooks"
exports = ["tinytorch.core.pair", "tinytorch.nn.pair_ops"]
notebooks = ["02_pair", "02_pair_ops"]
prerequisites = [1]
points = 10
'''

TENSOR_SRC = ("#| export\nimport numpy as np\n\nclass Tensor:\n"
              "    def __init__(self, data):\n"
              "        self.data = np.asarray(data, dtype=np.float32)\n")

PAIR_CHECKPOINT = '''"""Can the pair module double and quadruple?"""
from tinytorch.core.tensor import Tensor
from tinytorch.core.pair import double
from tinytorch.nn.pair_ops import quadruple


def test_double():
    assert double(Tensor([1.0, -2.0])).data.tolist() == [2.0, -4.0]


def test_quadruple():
    assert quadruple(Tensor([1.0])).data.tolist() == [4.0]
'''


def pair_src(body: str) -> str:
    "The exported cell of 02_pair: `double(t)` with `body` (e.g. a solution block) as its body."
    return f"#| export\nfrom tinytorch.core.tensor import Tensor\n\ndef double(t):\n{body}"


def ops_src(body: str) -> str:
    "The exported cell of 02_pair_ops: `quadruple(t)` with `body` as its body."
    return f"#| export\nfrom tinytorch.core.pair import double\n\ndef quadruple(t):\n{body}"


def notebook(sources, stem: str = "c") -> dict:
    "A notebook whose cells are `sources`: a source starting with '# ' is markdown, any other code."
    cells = []
    for i, src in enumerate(sources):
        kind = "markdown" if src.startswith("# ") else "code"
        c = {"cell_type": kind, "id": f"{stem[:6]}{i}", "metadata": {}, "source": src}
        if kind == "code":
            c.update(execution_count=None, outputs=[])
        cells.append(c)
    return {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}}}


def write_notebook(path, sources):
    "Write `notebook(sources)` to `path` (folders created)."
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(notebook(sources, path.stem), indent=1), encoding="utf-8")
