"""`tito status --authorship`: the share of exported lines inside solution blocks, over all non-blank
lines and over code lines (no docstrings, no comment-only lines)."""
import json
import subprocess
import sys
from pathlib import Path

from tito.authorship import (Authorship, CellCount, Count, code_line_numbers, count_cell, count_notebook,
                             course_authorship, format_table, summarize, without_kit)
from tito.manifest import load_manifest

ROOT = Path(__file__).resolve().parents[2]


def test_count_cell_counts_lines_and_code_inside_and_outside_blocks():
    src = ("#| export\n"
           "def f(x):\n"
           "    \"doc\"\n"
           "\n"
           "    ### BEGIN SOLUTION\n"
           "    # add one\n"
           "    y = x + 1\n"
           "\n"
           "    return y\n"
           "    ### END SOLUTION\n")
    c = count_cell(src)
    # lines: def, doc, the comment, y = ..., return (the directive, blanks and markers are not counted)
    assert c.lines == Count(5, 3)
    # code: def, y = ..., return (the docstring and the comment are not code)
    assert c.code == Count(3, 2)
    assert c.blocks == 1


def test_docstrings_are_not_code_but_other_strings_are():
    src = ('def f():\n'
           '    """A contract\n'
           '    over two lines."""\n'
           '    s = """a string\n'
           '    that is data"""\n'
           '    return s  # trailing comment: still a code line\n')
    assert code_line_numbers(src) == {1, 4, 5, 6}


def test_a_cell_that_does_not_parse_counts_its_non_comment_lines_as_code():
    c = count_cell("#| export\ndef f(:\n    # note\n    return 1\n")
    assert c.lines == Count(3, 0) and c.code == Count(2, 0)


def test_count_notebook_ignores_cells_that_are_not_exported(tmp_path):
    cells = [{"cell_type": "code", "source": "#| export\nx = 1\n### BEGIN SOLUTION\ny = 2\n### END SOLUTION\n"},
             {"cell_type": "code", "source": "assert x == 1\n### BEGIN SOLUTION\nz = 3\n### END SOLUTION\n"},
             {"cell_type": "markdown", "source": "#| export\ntext"}]
    nb = tmp_path / "nb.ipynb"
    nb.write_text(json.dumps({"cells": [dict(c, metadata={}) for c in cells], "metadata": {},
                              "nbformat": 4, "nbformat_minor": 5}))
    c = count_notebook(nb)
    assert c.lines == Count(2, 1) and c.code == Count(2, 1) and c.blocks == 1


def _row(number, lines, code, blocks=3, kit=CellCount()):
    return Authorship(number, f"{number:02d}_x", CellCount(Count(*lines), Count(*code), blocks), kit)


def test_summary_and_table():
    rows = [_row(1, (100, 30), (80, 30)), _row(14, (100, 10), (50, 10), blocks=1)]
    assert summarize(rows).share == 0.2
    assert summarize(rows, {1}).share == 0.3 and summarize(rows, {1}).code_share == 0.375
    table = format_table(rows)
    course = next(ln for ln in table.splitlines() if "modules 01-13" in ln).split()
    assert course[-7:] == ["100", "30", "30.0%", "80", "30", "37.5%", "3"]
    every = next(ln for ln in table.splitlines() if "all modules" in ln).split()
    assert every[-7:] == ["200", "40", "20.0%", "130", "40", "30.8%", "4"]


def test_kit_lines_and_their_exercises_are_taken_out_together():
    kit = CellCount(Count(100, 20), Count(90, 20), 2)
    rows = [_row(1, (200, 50), (150, 50), blocks=5, kit=kit), _row(2, (100, 30), (60, 30))]
    assert without_kit(summarize(rows, {1, 2})).count == CellCount(Count(200, 60), Count(120, 60), 6)
    table = format_table(rows)
    line = next(ln for ln in table.splitlines() if "01-13 without kit" in ln).split()
    assert line[-7:] == ["200", "60", "30.0%", "120", "60", "50.0%", "6"]
    assert "100 lines, 20 of them the student's" in table


def test_tito_status_authorship_prints_every_module_and_the_totals():
    r = subprocess.run([sys.executable, "-m", "tito.cli", "status", "--authorship"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any(ln.startswith("01  01_tensor") for ln in lines)
    assert any("all modules" in ln for ln in lines) and any("cloc" in ln for ln in lines)
    row = next(ln for ln in lines if ln.startswith("05  05_autograd")).split()
    lines_total, lines_student, code_total, code_student = int(row[2]), int(row[3]), int(row[5]), int(row[6])
    assert 0 < lines_student < lines_total and 0 < code_student < code_total < lines_total


def test_the_manifest_kit_names_module_01s_pytorch_notebooks():
    from tito.authorship import module_authorship
    m1 = next(m for m in load_manifest(ROOT) if m.number == 1)
    assert set(m1.kit_names) == {"01_tensor_kit", "01_tensor_ops", "01_tensor_methods"}
    a = module_authorship(m1)
    assert 0 < a.kit.lines.total < a.count.lines.total


def test_students_write_at_least_30_percent_of_the_code_of_modules_01_to_13():
    "Issue 12's target, on code lines: the stubs' contract docstrings are documentation, not given code."
    course = summarize(course_authorship(load_manifest(ROOT)), set(range(1, 14)))
    assert course.code_share >= 0.30, f"modules 01-13: {course.count.code}"
