"""`tito status --authorship`: the share of exported lines inside solution blocks."""
import json
import subprocess
import sys
from pathlib import Path

from tito.authorship import Authorship, count_cell, count_notebook, format_table, summarize

ROOT = Path(__file__).resolve().parents[2]


def test_count_cell_counts_code_lines_inside_and_outside_blocks():
    src = ("#| export\n"
           "def f(x):\n"
           "    \"doc\"\n"
           "\n"
           "    ### BEGIN SOLUTION\n"
           "    y = x + 1\n"
           "\n"
           "    return y\n"
           "    ### END SOLUTION\n")
    # counted: def, doc, y = ..., return  (the directive, blanks and markers are not)
    assert count_cell(src) == (4, 2, 1)


def test_count_notebook_ignores_cells_that_are_not_exported(tmp_path):
    cells = [{"cell_type": "code", "source": "#| export\nx = 1\n### BEGIN SOLUTION\ny = 2\n### END SOLUTION\n"},
             {"cell_type": "code", "source": "assert x == 1\n### BEGIN SOLUTION\nz = 3\n### END SOLUTION\n"},
             {"cell_type": "markdown", "source": "#| export\ntext"}]
    nb = tmp_path / "nb.ipynb"
    nb.write_text(json.dumps({"cells": [dict(c, metadata={}) for c in cells], "metadata": {},
                              "nbformat": 4, "nbformat_minor": 5}))
    assert count_notebook(nb) == (2, 1, 1)


def test_summary_and_table():
    rows = [Authorship(1, "01_a", 100, 30, 3), Authorship(14, "14_b", 100, 10, 1)]
    assert summarize(rows).share == 0.2
    assert summarize(rows, {1}).share == 0.3
    table = format_table(rows)
    assert "30.0%" in table and "modules 01-13" in table and "20.0%" in table


def test_tito_status_authorship_prints_every_module_and_the_totals():
    r = subprocess.run([sys.executable, "-m", "tito.cli", "status", "--authorship"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any(ln.startswith("01  01_tensor") for ln in lines)
    assert any("all modules" in ln for ln in lines)
    row = next(ln for ln in lines if ln.startswith("05  05_autograd")).split()
    exported, student = int(row[2]), int(row[3])
    assert 0 < student < exported            # module 05 has exercises and given code


def test_kit_lines_are_shown_apart_from_the_course_lines():
    rows = [Authorship(1, "01_a", 200, 30, 3, kit=100), Authorship(2, "02_b", 100, 30, 3)]
    table = format_table(rows)
    assert "01-13 without kit" in table
    line = next(ln for ln in table.splitlines() if "01-13 without kit" in ln).split()
    assert line[-4:] == ["200", "60", "30.0%", "6"]          # 300 - 100 kit lines, 60 student
    assert "modules 01-13" in table and "20.0%" in table      # the whole count stays printed


def test_the_manifest_kit_names_module_01s_given_pytorch_notebooks():
    from tito.manifest import load_manifest
    m1 = next(m for m in load_manifest(ROOT) if m.number == 1)
    assert set(m1.kit_names) == {"01_tensor_kit", "01_tensor_ops", "01_tensor_methods"}
    from tito.authorship import module_authorship
    a = module_authorship(m1)
    assert 0 < a.kit < a.exported
