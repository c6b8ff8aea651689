"""Run a notebook's code cells in order, in a fresh Python process, until the first exception.

No Jupyter kernel (no nbclient, no execnb): the child process ``exec``s each code cell in one
namespace, as a kernel would, with the package under test first on the path (``python -P -s``,
``PYTHONPATH`` = the package's parent). IPython magics, if a cell has any, are translated with
IPython's own input transformer (``%matplotlib`` is a no-op: figures are not shown here). The child prints one JSON line describing where it stopped::

    {"status": "finished" | "stub" | "error", "cells_run": N, "cell": index, "cell_id": ...,
     "ename": ..., "evalue": ..., "exercise": "module 03, Linear.forward" | null,
     "traceback": "..."}

``stub`` means the first exception was a ``NotImplementedError`` raised by a release stub, which
is what a student sees first in a released notebook.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

MARK = "@@TITO-NBRUN@@"


def run_notebook(nb_path: Path, lib_path: Path, timeout: float = 600) -> dict:
    """Run ``nb_path`` against the package at ``lib_path`` (cwd: the notebook's folder)."""
    from .checkrun import clean_env
    nb_path, lib_path = Path(nb_path).resolve(), Path(lib_path).resolve()
    env = clean_env(lib_path)
    env["PYTHONPATH"] = os.pathsep.join([str(lib_path.parent), str(Path(__file__).parent)])
    cmd = [sys.executable, "-P", "-s", str(Path(__file__).resolve()), str(nb_path)]
    try:
        r = subprocess.run(cmd, cwd=nb_path.parent, env=env, capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "evalue": f"still running after {timeout} s"}
    for ln in reversed(r.stdout.splitlines()):
        if ln.startswith(MARK):
            res = json.loads(ln[len(MARK):])
            res["stderr_tail"] = r.stderr[-3000:]
            return res
    return {"status": "crashed", "returncode": r.returncode,
            "evalue": (r.stderr or r.stdout)[-3000:]}


# ---------------------------------------------------------------------------------------------
# child side
# ---------------------------------------------------------------------------------------------

def _transform(src: str) -> str:
    if not any(ln.lstrip().startswith(("%", "!")) for ln in src.splitlines()):
        return src
    # `%matplotlib inline` needs a kernel's display machinery: here figures are never shown
    # (MPLBACKEND=Agg), so the magic becomes a no-op with the same line numbers
    src = "\n".join(ln[:len(ln) - len(ln.lstrip())] + "pass  # " + ln.lstrip()
                     if ln.lstrip().startswith("%matplotlib") else ln for ln in src.split("\n"))
    from IPython.core.inputtransformer2 import TransformerManager
    return TransformerManager().transform_cell(src)


def _main(nb_file: str) -> int:
    import shutil
    import tempfile
    # the plugin's helper drops editable-install finders that would resolve a missing
    # submodule to the installed checkout (the reference solution)
    try:
        from pytest_plugin import purge_editable_finders
        purge_editable_finders(os.environ.get("TITO_LIB_NAME", "tinytorch"))
    except ImportError:
        pass
    nb = json.loads(Path(nb_file).read_text(encoding="utf-8"))
    ns = {"__name__": "__main__", "__builtins__": __builtins__}
    stub_prefix = "Exercise: implement this ("
    sys.argv = [nb_file]
    # each cell's code is compiled from a real file, as a kernel's cells are (IPython keeps
    # them too): tracebacks show the lines, and what needs a function's source file (inspect,
    # Numba's `cache=True`) works as it does in Jupyter
    cell_dir = tempfile.mkdtemp(prefix="tito-nbrun-")
    try:
        return _run_cells(nb, ns, cell_dir, stub_prefix)
    finally:
        shutil.rmtree(cell_dir, ignore_errors=True)


def _run_cells(nb: dict, ns: dict, cell_dir: str, stub_prefix: str) -> int:
    import traceback
    ran = 0
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        src = cell.get("source", "")
        src = "".join(src) if isinstance(src, list) else src
        try:
            src = _transform(src)
            fname = os.path.join(cell_dir, f"cell_{i}.py")
            with open(fname, "w", encoding="utf-8") as f:
                f.write(src)
            code = compile(src, fname, "exec")
            if "get_ipython" in code.co_names and "get_ipython" not in ns:
                from IPython.core.interactiveshell import InteractiveShell
                ns["get_ipython"] = InteractiveShell.instance
            exec(code, ns)
            ran += 1
        except BaseException as e:           # noqa: BLE001 - reported to the parent
            msg = str(e)
            status = ("stub" if isinstance(e, NotImplementedError) and msg.startswith(stub_prefix)
                      else "error")
            print(MARK + json.dumps({
                "status": status, "cells_run": ran, "cell": i, "cell_id": cell.get("id"),
                "ename": type(e).__name__, "evalue": msg,
                "exercise": msg[len(stub_prefix):-1] if status == "stub" else None,
                "traceback": "".join(traceback.format_exception(e))[-4000:]}), flush=True)
            return 0
    print(MARK + json.dumps({"status": "finished", "cells_run": ran}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
