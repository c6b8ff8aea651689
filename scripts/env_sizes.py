"""Print the size on disk of the two environments, and optionally time a fresh student setup.

    python scripts/env_sizes.py                        # du of .venv/ and .venv-student/ (those built)
    python scripts/env_sizes.py --time-student-setup   # also: build a fresh student environment in a
                                                       # temporary folder with scripts/env.sh, timed

The student environment is built by `TINYTORCH_ENV=student source scripts/env.sh` (pip's cache
makes a second build faster than the very first one on a machine).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def du(path: Path) -> str:
    return subprocess.run(["du", "-sh", str(path)], capture_output=True, text=True,
                          check=True).stdout.split()[0]


def packages(path: Path) -> int:
    py = path / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
                       capture_output=True, text=True)
    return len([ln for ln in r.stdout.splitlines() if "==" in ln])


def has(path: Path, module: str) -> bool:
    r = subprocess.run([str(path / "bin" / "python"), "-c",
                        f"import importlib.util as u, sys; sys.exit(u.find_spec({module!r}) is None)"])
    return r.returncode == 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--time-student-setup", action="store_true")
    args = ap.parse_args()
    for name, lock in ((".venv", "requirements.lock"), (".venv-student", "requirements-student.lock")):
        path = ROOT / name
        if not (path / "bin" / "python").exists():
            print(f"{name:<14} not built ({lock})")
            continue
        print(f"{name:<14} {du(path):>6}  {packages(path):>4} packages  torch: "
              f"{'yes' if has(path, 'torch') else 'no'}  jupyterlab: "
              f"{'yes' if has(path, 'jupyterlab') else 'no'}  ({lock})")
    if args.time_student_setup:
        with tempfile.TemporaryDirectory(prefix="tt-student-env-") as td:
            venv = Path(td) / "venv"
            env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
            env.update(TINYTORCH_ENV="student", TINYTORCH_VENV=str(venv))
            t0 = time.perf_counter()
            r = subprocess.run(["bash", "-c", "source scripts/env.sh"], cwd=ROOT, env=env,
                               capture_output=True, text=True)
            dt = time.perf_counter() - t0
            if r.returncode:
                print(r.stdout + r.stderr, file=sys.stderr)
                return 1
            print(f"fresh student setup (scripts/env.sh, TINYTORCH_ENV=student): {dt:.0f} s, "
                  f"{du(venv)} on disk")
            shutil.rmtree(venv, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
