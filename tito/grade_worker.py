"""The grader's export step, run inside the sandbox (see :mod:`tito.grading`)::

    python -P -s -m tito.grade_worker SANDBOX

exports every notebook under ``SANDBOX/modules`` into ``SANDBOX/tinytorch`` with nbdev
(``tito.exporter.export_notebooks``, notebooks left untouched) and writes a JSON report to the
file descriptor ``$TITO_RESULTS_FD``: ``{"notebooks": {"01_tensor/01_tensor.ipynb": {"files":
[...], "error": null}}, "error": null}``. Exporting never runs the notebook's code; it runs in
the sandbox anyway, because nbdev writes wherever a notebook's ``#| default_exp`` points.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    sandbox = Path(argv[0]).resolve()
    nbs = sandbox / "modules"
    lib = sandbox / "tinytorch"
    report: dict = {"notebooks": {}, "error": None}
    try:
        from nbdev.config import add_init
        from nbdev.doclinks import _build_modidx
        from nbdev.export import black_format, nb_export
        from nbdev.maker import ModuleMaker
        from tito.exporter import nbdev_project
        notebooks = sorted(nbs.glob("*/*.ipynb"))
    except BaseException as e:                       # noqa: BLE001 - reported to the grader
        report["error"] = f"{type(e).__name__}: {e}"
        notebooks = []
    if notebooks:
        # tito.exporter.export_notebooks, one notebook at a time and without giving up: one
        # student file that does not parse must not stop the other notebooks' export
        with nbdev_project(sandbox):
            for nb in notebooks:
                files: list[str] = []

                def maker(*args, _files=files, **kwargs):
                    mm = ModuleMaker(*args, **kwargs)
                    _files.append(str(Path(mm.fname).resolve()))
                    return mm

                entry = {"files": files, "error": None}
                try:
                    nb_export(nb, lib_path=lib, procs=[black_format], mod_maker=maker)
                except BaseException as e:           # noqa: BLE001 - reported to the grader
                    entry["error"] = f"{type(e).__name__}: {e}"
                report["notebooks"][str(nb.relative_to(nbs))] = entry
            lib.mkdir(parents=True, exist_ok=True)
            for step, fn in (("__init__ files", lambda: add_init(lib)),
                             ("package index _modidx.py",
                              lambda: _build_modidx(dest=lib, nbs_path=nbs))):
                try:
                    fn()
                except BaseException as e:           # noqa: BLE001 - reported to the grader
                    report.setdefault("warnings", []).append(
                        f"{step} not built: {type(e).__name__}: {e}")
    text = json.dumps(report)
    fd = os.environ.get("TITO_RESULTS_FD")
    if fd:
        with os.fdopen(int(fd), "w", encoding="utf-8") as f:
            f.write(text)
    else:
        print(text)
    return 0 if report["error"] is None else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
