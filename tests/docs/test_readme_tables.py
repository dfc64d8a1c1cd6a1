"""The README's result tables are the files the demos write (scripts/readme_tables.py)."""

from __future__ import annotations

import importlib.util
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from safegrpo.core.config import load_config
from safegrpo.recipes.base import get_recipe, recipe_names

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "scripts/readme_tables.py")
tables = sys.modules["readme_tables"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tables)
README = (ROOT / "README.md").read_text()


def _blocks_per_recipe(suffix: str):
    """-> (name, recipe, its preset's out_dir, the README block run by `safegrpo demo NAME…`)."""
    by_cmd = {b.command: b for b in tables.blocks(README)}
    for name in recipe_names():
        recipe = get_recipe(name)
        cfg = load_config(recipe.config_cls, ROOT / "configs" / recipe.preset, [])
        block = by_cmd.get(f"safegrpo demo {name}{suffix}")
        assert block is not None, f"README has no table for `safegrpo demo {name}{suffix}`"
        assert block.body.strip(), f"the README's table for {name}{suffix} is empty"
        yield name, recipe, Path(cfg.out_dir), block


def test_every_recipe_demo_has_a_generated_readme_table():
    for name, recipe, out_dir, block in _blocks_per_recipe(""):
        out = Path(block.path)
        assert out.parent == out_dir, (name, block.path, out_dir)
        assert out.name in recipe.outputs, (name, out.name, recipe.outputs)


def test_every_recipe_demo_has_a_three_seed_readme_table():
    for name, _, out_dir, block in _blocks_per_recipe(" --seeds 3"):
        assert Path(block.path) == out_dir / "seeds_table.md", (name, block.path)
        assert "seeds 0, 1, 2" in block.body, f"{name}'s 3-seed table does not state its seeds"


def test_the_checker_reports_a_stale_table_and_write_mends_it(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs/t.md").write_text("| a |\n|---|\n| 0.500 |\n")
    readme = ("intro\n<!-- table: safegrpo demo t -> runs/t.md -->\n| a |\n|---|\n| 0.400 |\n"
              "<!-- end table -->\n<!-- table: safegrpo demo u -> runs/u.md -->\nold\n"
              "<!-- end table -->\nend\n")
    assert tables.stale(readme, tmp_path) == [
        "runs/t.md: README copy differs from the file `safegrpo demo t` wrote",
        "runs/u.md: missing; run `safegrpo demo u`"]
    mended = tables.write(readme, tmp_path)
    assert tables.stale(mended, tmp_path) == ["runs/u.md: missing; run `safegrpo demo u`"]
    assert "| 0.500 |" in mended and "| 0.400 |" not in mended
    assert mended.startswith("intro\n") and mended.endswith("<!-- end table -->\nend\n")


def test_a_marker_quoted_in_prose_is_not_a_block():
    readme = ("Tables sit between `<!-- table: COMMAND -> FILE -->` markers.\n\n"
              "<!-- table: safegrpo demo t -> runs/t.md -->\n| a |\n<!-- end table -->\n")
    assert [(b.command, b.path, b.body) for b in tables.blocks(readme)] == [
        ("safegrpo demo t", "runs/t.md", "| a |\n")]


@pytest.mark.slow
@pytest.mark.parametrize("block", tables.blocks(README), ids=lambda b: b.command)
def test_the_demo_regenerates_the_readme_table(block, tmp_path):
    """Runs the block's command in an empty folder and compares the file it writes."""
    args = shlex.split(block.command)
    assert args[0] == "safegrpo"
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "safegrpo.cli", *args[1:]], cwd=tmp_path, env=env,
                   check=True, capture_output=True)
    assert (tmp_path / block.path).read_text().strip() == block.body.strip()
