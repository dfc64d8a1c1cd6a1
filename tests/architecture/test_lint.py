"""ruff is part of the test command, so CI enforces the lint rules (E501: lines <= 100)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_is_clean():
    got = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(ROOT)],
                         capture_output=True, text=True, cwd=ROOT)
    assert got.returncode == 0, got.stdout[-3000:] + got.stderr[-1000:]


def test_ruff_would_catch_a_long_line(tmp_path):
    (tmp_path / "m.py").write_text("x = '" + "a" * 120 + "'\n")
    got = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--config",
                          str(ROOT / "pyproject.toml"), str(tmp_path / "m.py")],
                         capture_output=True, text=True, cwd=tmp_path)
    assert got.returncode == 1 and "E501" in got.stdout
