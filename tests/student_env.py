"""The repository's student environment (requirements-student.lock, no PyTorch), for tests that
must prove something works for a student: `TINYTORCH_ENV=student source scripts/env.sh` builds
it in .venv-student/ the first time (about a minute with a warm pip cache) and reuses it while
the locks and pyproject.toml are unchanged. Shared by tests/release and tests/jupyter."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUDENT_VENV = ROOT / ".venv-student"


def outside_env(**extra) -> dict:
    """os.environ without the active virtualenv (its PATH entry, VIRTUAL_ENV, PYTHONPATH)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "TINYTORCH_ENV",
                        "TINYTORCH_VENV", "TINYTORCH_ACTIVE_ENV")}
    venv_bin = str(Path(sys.prefix) / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and p != venv_bin)
    env.update(extra)
    return env


def student_python() -> Path:
    """The python of the repository's student environment, built or refreshed by env.sh."""
    r = subprocess.run(["bash", "-c", "source scripts/env.sh >&2 && "
                        "python -c 'import sys; print(sys.executable)'"],
                       cwd=ROOT, env=outside_env(TINYTORCH_ENV="student"), capture_output=True,
                       text=True, timeout=1200, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr
    py = Path(r.stdout.strip().splitlines()[-1])
    assert py.parent.parent == STUDENT_VENV, py
    return py
