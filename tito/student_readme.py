"""The README of a student copy, written by ``tito release`` (the project's README is the
instructor's and is not shipped). The module list comes from the manifest; nothing in it names
an instructor-only command."""

from __future__ import annotations

TEMPLATE = """\
# tinytorch: your copy of the course

You build a tensor framework from scratch, one chapter at a time, in Jupyter notebooks: each
notebook explains a piece, you write the missing code (the *exercises*), and `tito` exports what
you wrote into the `tinytorch` package that the later chapters and your own programs import.

## Two commands

On a machine with Python 3.11:

```bash
source scripts/env.sh   # set up: builds .venv/ (the course's environment) the first time, then activates it
jupyter lab modules     # open the course in JupyterLab (in a new terminal: `source scripts/env.sh` first)
```

To open the first notebook directly: `jupyter lab {first_notebook}`.
On a machine without a browser, `jupyter lab --no-browser` prints the address (with its token) to open.

## The loop, for each module

1. Open the module's notebook `modules/NN_name/NN_name.ipynb` in JupyterLab and read it top to
   bottom, running the cells.
2. Fill in the exercises: every `raise NotImplementedError("Exercise: implement this (...)")` is
   one; replace it with your code. Running the cells tells you whether it works.
3. In a terminal (with `source scripts/env.sh` done): `tito module complete NN`. It exports your
   notebook into your package (a typo is named by notebook, cell and line, and your package then
   stays as it was), runs the module's checkpoint and progressive tests against your package, and
   lists what to fix.
4. When it says `module NN complete`, go on to the next module.

## Where you are: `tito status`

`tito status` prints one line per module: whether its notebook is there, whether your package is
in sync with it (`in sync`; `stale` when you changed the notebook since the last export; `export
error` with the notebook, cell and line when its code has an error) and your last `tito module
complete` result for it.

## Checking everything: `bash scripts/check.sh`

`bash scripts/check.sh` checks the whole course in one go: every notebook exports, every package
module imports, and every module's tests run. Tests that stop at an exercise you have not written
yet are *to do*, not failures: the check lists the exercises still to do and passes. It fails on
what is really broken: a notebook with an error, a package that does not import, or a test your
code gets wrong.

## After the chapters

`tito milestone list` shows the historical milestones (a perceptron, backpropagation, a CNN, a
transformer, pruning); `tito milestone run 1986` runs one with your own package, and names the
modules it still needs when you have not finished them. `bash scripts/demo.sh` runs the course
demo once modules 01 to 05 are done.

## The modules

| # | notebook | what you build |
|---|---|---|
{module_rows}

## Layout

| path | what it holds |
|---|---|
| `modules/` | the notebooks, one folder per module |
| `tinytorch/` | your package, exported from your notebooks by `tito` (do not edit it by hand) |
| `tests/` | each module's checkpoint (`tests/checkpoints/`) and progressive tests |
| `milestones/` | the historical milestones; their results go to `milestones/results/` |
| `datasets/` | the small data sets the course uses |
"""


def render(manifest) -> str:
    """The student README for the course described by ``manifest``."""
    rows = []
    for m in manifest:
        nb = f"`modules/{m.folder}/{m.folder}.ipynb`"
        if len(m.stems) > 1:
            nb += " (+ " + ", ".join(f"`{s}.ipynb`" for s in m.stems[1:]) + ")"
        rows.append(f"| {m.nn} | {nb} | {m.title} |")
    first = next(iter(manifest))
    return TEMPLATE.format(first_notebook=f"modules/{first.folder}/{first.folder}.ipynb",
                           module_rows="\n".join(rows))
