"""Size as a signal (issue 17): scripts/size_report.py over tinytorch/ and tito/ finds no file over 800
lines, no function over 60 lines and no function with more than 8 parameters, except the PyTorch
signatures it allows (each with its reason). The scanner itself is checked on small made-up files."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "size_report.py"

_spec = importlib.util.spec_from_file_location("size_report", SCRIPT)
size_report = importlib.util.module_from_spec(_spec)
sys.modules["size_report"] = size_report          # dataclasses look their module up
_spec.loader.exec_module(size_report)


def test_the_package_and_tito_are_within_the_limits():
    r = subprocess.run([sys.executable, str(SCRIPT), str(ROOT)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"size problems:\n{r.stdout}{r.stderr}"
    assert "sizes ok" in r.stdout


def test_every_allowed_exception_names_a_pytorch_signature():
    assert len(size_report.ALLOWED) <= 4
    for (path, name, kind), why in size_report.ALLOWED.items():
        assert kind == "params" and "torch" in why, (path, name, why)


def _project(tmp_path: Path, files: dict) -> Path:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    (tmp_path / "tito").mkdir(exist_ok=True)
    return tmp_path


def _function(name: str, body_lines: int, params: str = "") -> str:
    return f"def {name}({params}):\n" + "    x = 1\n" * (body_lines - 1)


def test_long_functions_and_files_are_found_at_the_limit(tmp_path):
    root = _project(tmp_path, {
        "tinytorch/a.py": _function("sixty", 60) + _function("sixty_one", 61)
                          + "class C:\n" + "\n".join("    " + ln for ln in _function("m", 61).splitlines()) + "\n",
        "tinytorch/big.py": "x = 1\n" * 801,
        "tinytorch/ok.py": "x = 1\n" * 800,
        "tinytorch/_modidx.py": "x = 1\n" * 5000,
    })
    found = {(f.path, f.name, f.kind): f.size for f in size_report.scan(root)}
    assert found == {("tinytorch/a.py", "sixty_one", "lines"): 61, ("tinytorch/a.py", "C.m", "lines"): 61,
                     ("tinytorch/big.py", "", "file"): 801}


def test_parameters_are_counted_without_self_and_star_args(tmp_path):
    root = _project(tmp_path, {"tito/b.py": (
        "def eight(a, b, c, d, e, f, g, h):\n    pass\n"
        "def nine(a, b, c, d, e, f, g, h, *, i=0):\n    pass\n"
        "def star(a, b, c, d, e, f, g, h, *args, **kwargs):\n    pass\n"
        "class K:\n    def method(self, a, b, c, d, e, f, g, h):\n        pass\n"
        "    def nine(self, a, b, c, d, e, f, g, h, i):\n        pass\n")})
    found = {(f.name, f.kind): f.size for f in size_report.scan(root)}
    assert found == {("nine", "params"): 9, ("K.nine", "params"): 9}


def test_allowed_entries_are_kept_and_stale_ones_are_problems(tmp_path):
    root = _project(tmp_path, {"tinytorch/c.py": "def wide(a, b, c, d, e, f, g, h, i):\n    pass\n"})
    found = size_report.scan(root)
    problems, kept = size_report.report(found, {("tinytorch/c.py", "wide", "params"): "torch's wide"})
    assert problems == [] and len(kept) == 1 and "torch's wide" in kept[0]
    problems, _ = size_report.report(found, {("tinytorch/c.py", "gone", "params"): "torch's gone"})
    assert len(problems) == 2 and "wide: 9 params" in problems[0] and "matches nothing" in problems[1]
    assert size_report.main([str(root)]) == 1
