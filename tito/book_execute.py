"""The book's outputs: the reference notebooks, executed once and cached.

The book shows the code a student gets (solutions stubbed) with the outputs and figures that the
reference solutions produce. So before staging, every notebook of the book is run top to bottom as it
is in ``modules/`` (with its solutions) on a Jupyter kernel (nbclient), and the staged chapter takes
each code cell's outputs from that run, cell by cell (the stripped copy has the same cells in the same
order).

Runs are cached in ``book/_build/executed/<stem>-<key>.ipynb``. The key is a hash of the notebook's
cells, of every ``.py`` file of the ``tinytorch`` package the notebook imports, of the datasets'
names and sizes, of ``requirements.lock`` and of this runner's version: change any of them and the
notebook runs again. Notebooks run in parallel (``TITO_BOOK_WORKERS``, default: 2, at most the number
of CPUs), each in its own process and kernel, with the notebook's folder as working directory.

Cells that ``nbdev_test`` skips (``#| notest``, ``#| eval: false``) are skipped here too (no output).
A cell that raises fails the build, naming the notebook and the cell.

``python -m tito.book_execute IN OUT CWD TIMEOUT`` runs one notebook (what the workers call).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .errors import TitoError

RUNNER_VERSION = "1"
CELL_TIMEOUT = 600                  # seconds per cell
SKIP_RE = re.compile(r"^#\|\s*(notest\b|eval:\s*false\b)", re.M)
# the kernel draws figures inline (the See sections also say `%matplotlib inline`)
KERNEL_ENV = {"MPLBACKEND": "module://matplotlib_inline.backend_inline", "PYTHONUNBUFFERED": "1",
              "PYDEVD_DISABLE_FILE_VALIDATION": "1", "NO_COLOR": "1"}
# One BLAS thread per kernel unless the caller chose otherwise: two kernels with two BLAS threads each
# on two cores made the small matrix products of module 17 five times slower (63 s instead of 12 s).
# The notebooks that study threads set their thread counts themselves.
BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def default_cache_dir(root: Path) -> Path:
    return Path(root) / "book" / "_build" / "executed"


def environment_digest(root: Path) -> str:
    """What every notebook's outputs depend on besides its own cells: the package, the data, the pins."""
    root = Path(root)
    h = hashlib.sha256(f"runner {RUNNER_VERSION}\n".encode())
    pkg = root / "tinytorch"
    for p in sorted(pkg.rglob("*.py")) if pkg.is_dir() else []:
        h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
    data = root / "datasets"
    for p in sorted(data.rglob("*")) if data.is_dir() else []:
        if p.is_file():
            h.update(f"{p.relative_to(root)} {p.stat().st_size}\n".encode())
    lock = root / "requirements.lock"
    if lock.is_file():
        h.update(lock.read_bytes())
    return h.hexdigest()


def notebook_key(nb: dict, env_digest: str) -> str:
    h = hashlib.sha256(env_digest.encode())
    for cell in nb.get("cells", []):
        h.update(f"{cell.get('cell_type')}\0{_source(cell)}\0".encode())
    return h.hexdigest()[:20]


def runnable_copy(nb: dict) -> dict:
    """The notebook to execute: outputs cleared, cells nbdev_test skips emptied."""
    nb = json.loads(json.dumps(nb))
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
            if SKIP_RE.search(_source(cell)):
                cell["source"] = ""
    return nb


@dataclass
class Run:
    stem: str
    path: Path          # the executed copy in the cache
    seconds: float      # 0.0 when it came from the cache
    cached: bool


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def workers() -> int:
    env = os.environ.get("TITO_BOOK_WORKERS")
    if env:
        if not env.isdigit() or int(env) < 1:
            raise TitoError(f"TITO_BOOK_WORKERS must be a positive integer, got {env!r}")
        return int(env)
    return max(1, min(2, os.cpu_count() or 1))


def execute_notebooks(root: Path, notebooks: list[tuple[str, Path]], cache_dir: Path | None = None,
                      echo=print) -> dict[str, dict]:
    """Run each ``(stem, path)`` notebook (or take it from the cache); ``{stem: executed notebook}``."""
    root = Path(root)
    cache_dir = Path(cache_dir or default_cache_dir(root))
    cache_dir.mkdir(parents=True, exist_ok=True)
    env_digest = environment_digest(root)
    jobs, runs = [], {}
    for stem, path in notebooks:
        try:
            nb = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise TitoError(f"{path}: not a readable notebook: {e}") from None
        key = notebook_key(nb, env_digest)
        out = cache_dir / f"{stem}-{key}.ipynb"
        if out.is_file():
            runs[stem] = Run(stem, out, 0.0, True)
        else:
            jobs.append((stem, Path(path), nb, out))
    if jobs:
        jobs.sort(key=lambda job: -job[1].stat().st_size)      # the longest (largest) ones first
        n = min(workers(), len(jobs))
        echo(f"  executing {len(jobs)} reference notebook(s) for the book's outputs "
             f"({n} at a time; {len(runs)} from the cache in {cache_dir})")
        with ThreadPoolExecutor(n) as pool:
            for run in pool.map(lambda job: _run_one(*job, echo=echo), jobs):
                runs[run.stem] = run
        for stem, _, _, out in jobs:            # older runs of the same notebooks
            for old in cache_dir.glob(f"{stem}-*.ipynb"):
                if old != out and re.fullmatch(re.escape(stem) + r"-[0-9a-f]{20}\.ipynb", old.name):
                    old.unlink()
    elif runs:
        echo(f"  outputs of all {len(runs)} notebook(s) from the cache ({cache_dir})")
    return {stem: json.loads(run.path.read_text(encoding="utf-8")) for stem, run in runs.items()}


def _run_one(stem: str, path: Path, nb: dict, out: Path, echo=print) -> Run:
    t0 = time.monotonic()
    tmp_in = out.with_name(f".{stem}.{os.getpid()}.in.ipynb")
    tmp_in.write_text(json.dumps(runnable_copy(nb)), encoding="utf-8")
    env = dict(os.environ, **KERNEL_ENV)
    for var in BLAS_THREAD_VARS:
        env.setdefault(var, "1")
    try:
        proc = subprocess.run([sys.executable, "-m", "tito.book_execute", str(tmp_in), str(out),
                               str(path.parent), str(CELL_TIMEOUT)],
                              capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
                              cwd=str(Path(__file__).resolve().parents[1]))
    finally:
        tmp_in.unlink(missing_ok=True)
    dt = time.monotonic() - t0
    if proc.returncode != 0 or not out.is_file():
        msg = (proc.stdout.strip().splitlines() or [""])[-1] or proc.stderr.strip()[-2000:]
        raise TitoError(f"{path}: running the reference notebook for the book failed: {msg}")
    echo(f"    {stem}: {dt:.1f} s")
    return Run(stem, out, dt, False)


def merge_outputs(page: dict, executed: dict, label: str) -> dict:
    """``page`` (a staged copy of a notebook: same cells, sources maybe stubbed) with every code cell's
    outputs and execution count taken from ``executed``, the run of the reference notebook."""
    cells, ran = page.get("cells", []), executed.get("cells", [])
    if [c.get("cell_type") for c in cells] != [c.get("cell_type") for c in ran]:
        raise TitoError(f"{label}: the executed copy does not have the notebook's cells (stale cache?)")
    for cell, done in zip(cells, ran):
        if cell.get("cell_type") == "code":
            cell["outputs"] = done.get("outputs", [])
            cell["execution_count"] = done.get("execution_count")
    return page


def _main(argv) -> int:
    """Execute one notebook: IN OUT CWD TIMEOUT. Prints one line naming the failing cell on error."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    src, dst, cwd, timeout = argv
    nb = nbformat.read(src, as_version=4)
    client = NotebookClient(nb, timeout=int(timeout), kernel_name="python3",
                            resources={"metadata": {"path": cwd}})
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as e:
        index = next((i for i, c in enumerate(nb.cells) if c.get("cell_type") == "code"
                      and any(o.get("output_type") == "error" for o in c.get("outputs", []))), None)
        where = f"cell {index} (id {nb.cells[index].get('id')})" if index is not None else "a cell"
        first = str(e).strip().splitlines()
        detail = next((ln for ln in reversed(first) if ln.strip()), type(e).__name__)
        print(f"{where} raised: {detail}")
        return 1
    _write_atomic(Path(dst), nbformat.writes(nb) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
