"""A test file that needs the repository's oracle, directly or through a helper module of tests/, is a
repository test: the release leaves it out and the student environment does not run it."""
from pathlib import Path

from tito.studentenv import oracle_imports


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_an_oracle_import_through_a_tests_helper_counts(tmp_path):
    tests = tmp_path / "tests"
    _write(tests / "oracle_helper.py", "import numpy as np\nfrom transformers import GPT2Config\n")
    _write(tests / "plain_helper.py", "import numpy as np\n")
    _write(tests / "loop_a.py", "import loop_b\n")
    _write(tests / "loop_b.py", "import loop_a\nimport torch\n")
    via = _write(tests / "10_x" / "test_via.py", "from oracle_helper import GPT2Config\n")
    plain = _write(tests / "10_x" / "test_plain.py", "import plain_helper\nimport numpy\n")
    direct = _write(tests / "10_x" / "test_direct.py", "import torch.nn as nn\n")
    cyclic = _write(tests / "10_x" / "test_cyclic.py", "import loop_a\n")
    assert oracle_imports(via) == ["transformers"]
    assert oracle_imports(plain) == []
    assert oracle_imports(direct) == ["torch"]
    assert oracle_imports(cyclic) == ["torch"]


def test_the_gpt2_tokenizer_tests_of_this_course_are_repository_tests():
    root = Path(__file__).resolve().parents[2]
    assert "transformers" in oracle_imports(root / "tests" / "10_tokenization" / "test_gpt2_tokenizer.py")
    assert oracle_imports(root / "tests" / "10_tokenization" / "test_tokenizers.py") == []
