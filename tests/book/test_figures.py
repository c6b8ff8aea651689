"""Every chapter has pictures and ends by naming `tito module complete NN` (checked statically and cheaply:
the notebooks themselves run in CI under nbdev_test, and tests/book/test_book.py checks on the executed
book that every chapter page really shows a rendered figure).

- Every module's main notebook (and every other notebook that has one) has a "## See" section before its Reflect section, and the section has at least one
  figure cell: a code cell, not exported, that builds a matplotlib figure (a ``Figure(...)`` or one of the
  course's plotting helpers) and shows it — its last statement is an expression (what a notebook displays)
  or it calls ``display(...)``. The section turns on ``%matplotlib inline`` (a ``Figure`` made without
  pyplot is drawn only when the inline formatter is on), imports neither pyplot's global state nor torch,
  and imports no tinytorch module of a later chapter (the student release must run it once the chapter is done).
- Every notebook's last cell is markdown naming ``tito module complete NN`` with its module's number.
- The exported plotting helpers return Figures without touching pyplot (so nothing is shown twice, and
  nothing is left open) and a notebook shows them as a cell's last expression.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
import pytest

from tito.manifest import load_manifest

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = load_manifest(ROOT)
NOTEBOOKS = [(m, p) for m in MANIFEST for p in m.notebooks if p.is_file()]
# what draws a figure in a See cell: a Figure built in the cell, or a plotting helper of the package
FIGURE_MAKERS = re.compile(r"\bFigure\(|\.plot_sparsity\(|\.plot_weight_histograms\(|"
                           r"\bplot_quantization_error\(|\.figures\(\)")


def cells(path: Path) -> list[dict]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return nb["cells"]


def source(cell) -> str:
    src = cell["source"]
    return "".join(src) if isinstance(src, list) else src


def python_of(code: str) -> ast.Module:
    "The cell's Python, IPython magics (`%...`) blanked."
    return ast.parse("\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in code.splitlines()))


def see_section(cs: list[dict]) -> tuple[int, int]:
    "(index of the '## See' markdown cell, index of the markdown cell holding '## Reflect') of a notebook."
    see = [i for i, c in enumerate(cs) if c["cell_type"] == "markdown" and
           re.search(r"^## See\s*$", source(c), re.M)]
    reflect = [i for i, c in enumerate(cs) if c["cell_type"] == "markdown" and
               re.search(r"^## Reflect\s*$", source(c), re.M)]
    assert len(see) == 1, f"expected one '## See' section, found {len(see)}"
    assert reflect, "no '## Reflect' section"
    return see[0], reflect[-1]


def is_figure_cell(cell) -> bool:
    code = source(cell)
    if cell["cell_type"] != "code" or re.search(r"^#\|\s*export", code, re.M):
        return False
    if not FIGURE_MAKERS.search(code):
        return False
    tree = python_of(code)
    last_is_expression = bool(tree.body) and isinstance(tree.body[-1], ast.Expr)
    calls_display = any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "display"
                        for n in ast.walk(tree))
    return last_is_expression or calls_display


def test_the_manifest_has_notebooks():
    assert len(MANIFEST.modules) == 20
    assert len(NOTEBOOKS) >= 20
    # every module, and every notebook of module 17, is checked below
    assert {m.nn for m, _ in NOTEBOOKS} == {m.nn for m in MANIFEST}


def has_see_heading(path: Path) -> bool:
    return any(c["cell_type"] == "markdown" and re.search(r"^## See\s*$", source(c), re.M) for c in cells(path))


# every module's main notebook (its chapter) has a See section; a module's other notebooks (sections of
# the chapter, e.g. module 01's given PyTorch kit) may have one, and when they do it is checked the same way
SEE_NOTEBOOKS = [(m, p) for m, p in NOTEBOOKS if p == m.notebooks[0] or has_see_heading(p)]


def test_every_module_has_a_figure():
    assert {m.nn for m, _ in SEE_NOTEBOOKS} == {m.nn for m in MANIFEST}


@pytest.mark.parametrize("module,path", SEE_NOTEBOOKS, ids=[p.stem for _, p in SEE_NOTEBOOKS])
def test_every_notebook_has_a_see_section_with_a_figure(module, path):
    cs = cells(path)
    see, reflect = see_section(cs)
    assert see < reflect, f"{path.name}: the See section must come before Reflect"
    section = cs[see + 1:reflect]
    figures = [c for c in section if is_figure_cell(c)]
    assert figures, f"{path.name}: no cell of the See section builds and shows a figure"
    code = "\n".join(source(c) for c in section if c["cell_type"] == "code")
    assert re.search(r"^%matplotlib inline\s*$", source(next(c for c in section if c["cell_type"] == "code")),
                     re.M), f"{path.name}: the See section's first code cell must turn on %matplotlib inline"
    assert "import torch" not in code and "from torch" not in code, f"{path.name}: a figure uses torch"
    assert not re.search(r"\bplt\.(show|figure|subplots)\(", code), \
        f"{path.name}: use matplotlib.figure.Figure (no pyplot state) in the See section"
    for c in section:
        assert not re.search(r"^#\|\s*export", source(c), re.M), f"{path.name}: a See cell is exported"
        if c["cell_type"] == "code":
            python_of(source(c))                      # parses
    later = [name for name in imported_modules(code) if MODULE_OF.get(name, 0) > module.number]
    assert not later, f"{path.name}: the See section imports later modules {later}"


MODULE_OF = {export: m.number for m in MANIFEST for export in m.exports}


def imported_modules(code: str) -> list[str]:
    "The tinytorch modules a piece of code imports."
    names = []
    for node in ast.walk(python_of(code)):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names]
    return [n for n in names if n.startswith("tinytorch")]


def test_the_later_module_check_can_fail():
    code = "from tinytorch.core.tensor import Tensor\nimport tinytorch.experiments\n"
    assert imported_modules(code) == ["tinytorch.core.tensor", "tinytorch.experiments"]
    assert MODULE_OF["tinytorch.core.tensor"] == 1 and MODULE_OF["tinytorch.experiments"] == 20


def test_a_see_cell_that_only_assigns_its_figure_is_not_a_figure_cell():
    """The check above can fail: a Figure assigned to a variable and never shown does not count."""
    hidden = {"cell_type": "code", "source": "from matplotlib.figure import Figure\nfig = Figure()\n"}
    shown = {"cell_type": "code", "source": "from matplotlib.figure import Figure\nfig = Figure()\nfig\n"}
    displayed = {"cell_type": "code", "source": "fig = Figure()\ndisplay(fig)\nx = 1\n"}
    exported = {"cell_type": "code", "source": "#| export\nfig = Figure()\nfig\n"}
    assert not is_figure_cell(hidden) and not is_figure_cell(exported)
    assert is_figure_cell(shown) and is_figure_cell(displayed)


@pytest.mark.parametrize("module,path", NOTEBOOKS, ids=[p.stem for _, p in NOTEBOOKS])
def test_every_notebook_ends_by_naming_tito_module_complete(module, path):
    last = cells(path)[-1]
    assert last["cell_type"] == "markdown", f"{path.name}: the last cell is not markdown"
    text = source(last)
    numbers = re.findall(r"`tito module complete (\d+)`", text)
    assert numbers == [module.nn], f"{path.name}: the last cell names {numbers}, expected ['{module.nn}']"


@pytest.mark.parametrize("module,path", NOTEBOOKS, ids=[p.stem for _, p in NOTEBOOKS])
def test_every_notebook_opens_on_its_title_with_no_empty_cell(module, path):
    cs = cells(path)
    empty = [i for i, c in enumerate(cs) if not source(c).strip()]
    assert not empty, f"{path.name}: empty cells at {empty} (a student opens the notebook on one)"
    assert cs[0]["cell_type"] == "markdown" and source(cs[0]).lstrip().startswith("# "), \
        f"{path.name}: the first cell is not the chapter's title"
    # the book highlights code by the kernelspec's language; without it every code cell is a warning
    assert json.loads(path.read_text())["metadata"].get("kernelspec", {}).get("language") == "python", \
        f"{path.name}: no python kernelspec in the notebook's metadata"


# ---------------------------------------------------------------------------------------------
# the exported plotting helpers: return a Figure, leave pyplot alone
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def no_pyplot_figures():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    before = plt.get_fignums()
    yield
    assert plt.get_fignums() == before, "a plotting helper left a pyplot figure open"


def test_plot_quantization_error_returns_a_figure(no_pyplot_figures, tmp_path):
    from matplotlib.figure import Figure
    from tinytorch.optimization.quantization import plot_quantization_error

    rows = [{"layer": f"l{i}", **{f"{k}_{s}": 0.01 * (i + 1) for k in ("weight_error", "worst_channel_error",
                                                                    "output_error")
                                  for s in ("per_tensor", "per_channel")}} for i in range(3)]
    fig = plot_quantization_error(rows, path=tmp_path / "err.png")
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    assert (tmp_path / "err.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compression_analyzer_plots_return_figures(no_pyplot_figures):
    from matplotlib.figure import Figure
    from tinytorch.core.layers import Linear, Sequential
    from tinytorch.optimization.compression import CompressionAnalyzer, magnitude_prune

    model = Sequential(Linear(8, 8, rng=np.random.default_rng(0)), Linear(8, 2, rng=np.random.default_rng(1)))
    an = CompressionAnalyzer(model)
    magnitude_prune(model, 0.5)
    for fig in (an.plot_sparsity(), an.plot_weight_histograms()):
        assert isinstance(fig, Figure) and fig.axes


def test_progress_tracker_figures_and_plot(no_pyplot_figures, tmp_path):
    from matplotlib.figure import Figure
    from tinytorch.experiments import ProgressTracker

    tr = ProgressTracker("demo", {"seed": 0})
    for value in (3.0, 2.6, 2.4):
        tr.log_train("fine-tune", value)
    tr.log_eval("baseline", 2.0, heads_on=4)
    tr.log_pruning("pruned", "prune", "magnitude", [(0, 1)], [[True, False], [True, True]],
                   [[0.5, 0.1], [0.3, 0.2]])
    figs = tr.figures()
    assert sorted(figs) == ["curves", "heads", "importance"]
    assert all(isinstance(f, Figure) for f in figs.values())
    paths = tr.plot(tmp_path, "x")
    assert sorted(paths) == ["curves", "heads", "importance"]
    for kind, p in paths.items():
        assert Path(p) == tmp_path / f"x_{kind}.png" and Path(p).read_bytes()[:4] == b"\x89PNG"
    assert sorted(q.name for q in tmp_path.iterdir()) == ["x_curves.png", "x_heads.png", "x_importance.png"]
