"""Style limits the project holds itself to: modules <= 300 lines, functions <= 60 lines.
(Lines <= 100 characters is ruff's E501: tests/architecture/test_lint.py.)"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "safegrpo"
MAX_MODULE, MAX_FUNCTION = 300, 60


def oversized(root: Path) -> list[str]:
    """'path: what' for every module or function over the limits under ``root``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        src = path.read_text()
        if (n := src.count("\n")) > MAX_MODULE:
            found.append(f"{path}: {n} lines")
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION:
                    found.append(f"{path}: {node.name}() {length} lines")
    return found


def test_modules_and_functions_stay_small():
    assert oversized(ROOT) == []


def test_the_size_check_sees_a_long_function(tmp_path):
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION))
    (tmp_path / "m.py").write_text("def f():\n" + body)
    assert oversized(tmp_path) == [f"{tmp_path / 'm.py'}: f() {MAX_FUNCTION + 1} lines"]
