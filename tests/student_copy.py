"""Filling a released notebook's exercise stubs with the reference solution, as a student would:
shared by the release tests (tests/release/test_module_complete.py, test_in_order.py)."""

import json
import re

from tito.release import STUB_PREFIX, solution_blocks


def fill_stubs(released: dict, reference: dict, overrides: dict) -> dict:
    """The released notebook with each stub replaced by the reference block's body, or by
    ``overrides[exercise-name-substring]`` lines, as a student would fill it in."""
    blocks = solution_blocks(reference)
    nb = json.loads(json.dumps(released))
    for i, cell_blocks in blocks.items():
        if reference["cells"][i]["cell_type"] == "markdown":
            # a written answer: the student writes their own prose where the release says "Your answer
            # here"; here, the reference's answer without its markers
            ref = "".join(reference["cells"][i]["source"]).split("\n")
            text = "\n".join(ln for ln in ref if not re.match(r"^\s*#*\s*(BEGIN|END) SOLUTION\s*$", ln))
            nb["cells"][i]["source"] = [ln + "\n" for ln in text.split("\n")[:-1]] + \
                ([text.split("\n")[-1]] if text.split("\n")[-1] else [])
            continue
        lines = "".join(nb["cells"][i]["source"]).split("\n")
        out, k = [], 0
        for ln in lines:
            if STUB_PREFIX in ln:
                body = cell_blocks[k].body
                name = re.search(r"\((module [^)]*)\)", ln).group(1)
                for key, repl in overrides.items():
                    if key in name:
                        body = repl
                out.extend(body)
                k += 1
            else:
                out.append(ln)
        assert k == len(cell_blocks)
        text = "\n".join(out)
        nb["cells"][i]["source"] = [ln + "\n" for ln in text.split("\n")[:-1]] + \
            ([text.split("\n")[-1]] if text.split("\n")[-1] else [])
    return nb
