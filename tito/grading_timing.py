"""How long ``tito grade`` takes for a class: ``python -m tito.grading_timing [STUDENTS]``.

Builds STUDENTS (default 4) submissions of every module from this checkout (all but the last
hand in the reference notebooks, the last the stripped release), grades them with
``tito grade`` as an instructor would (every module, default limits and jobs), and prints the
wall-clock time and each student's total. The gradebook's own ``duration_s`` is the figure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def build(subs: Path, manifest, n: int) -> None:
    from .release import read_notebook, strip_notebook, write_notebook
    for i in range(n):
        blank = i == n - 1
        for m in manifest:
            for nb in m.notebooks:
                dst = subs / f"{'release' if blank else 'reference'}{i + 1}" / "modules" / m.folder / nb.name
                dst.parent.mkdir(parents=True, exist_ok=True)
                if blank:
                    write_notebook(strip_notebook(read_notebook(nb), nb.stem, m.nn).notebook, dst)
                else:
                    shutil.copy(nb, dst)


def main(argv: list[str]) -> int:
    from .manifest import find_root, load_manifest
    n = int(argv[0]) if argv else 4
    root = find_root()
    manifest = load_manifest(root)
    tmp = Path(tempfile.mkdtemp(prefix="tito-grade-timing-"))
    try:
        build(tmp / "subs", manifest, n)
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "tito.cli", "--root", str(root), "grade",
                            str(tmp / "subs"), "--out", str(tmp / "out"), "--no-progress"],
                           capture_output=True, text=True, cwd=root, env=dict(os.environ))
        wall = time.monotonic() - t0
        print(r.stdout[-4000:], r.stderr[-2000:], sep="\n")
        report = json.loads((tmp / "out" / "gradebook.json").read_text())
        mods = len(report["modules"])
        print(f"{len(report['students'])} students x {mods} modules graded in {wall:.1f} s wall-clock "
              f"(gradebook duration_s {report.get('duration_s')}, jobs {report['limits']['jobs']}, "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})")
        return r.returncode
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
