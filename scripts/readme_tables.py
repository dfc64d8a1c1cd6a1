"""Keep the README's result tables identical to the files the demos write.

Every generated table in README.md sits between two markers that name the command that writes
it and the file it writes:

    <!-- table: safegrpo demo diffusion -> runs/diffusion_demo/eval_table.md -->
    | policy | ... |
    <!-- end table -->

    python scripts/readme_tables.py           # check: exit 1 and a diff line per stale table
    python scripts/readme_tables.py --write   # copy every file that exists into its block

Run the commands first (each block names its own); paths are relative to the repository root.
``tests/docs/test_readme_tables.py`` runs the demos (slow) and compares their files with the
blocks, and checks (fast) that every registered recipe has a block.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# a marker starts its own line; the command and path stay on it (a marker quoted in prose is not
# one)
BLOCK = re.compile(r"^<!-- table: (?P<cmd>[^\n]+?) -> (?P<path>\S+) -->\n(?P<body>.*?)"
                   r"^<!-- end table -->", re.S | re.M)


@dataclass(frozen=True)
class Block:
    command: str
    """The command that writes the file, e.g. ``safegrpo demo diffusion``."""
    path: str
    """The file it writes, relative to the repository root."""
    body: str
    """The README's copy (ends with a newline, or is empty)."""


def blocks(readme: str) -> list[Block]:
    """Every generated-table block of ``readme``, in order."""
    return [Block(m["cmd"], m["path"], m["body"]) for m in BLOCK.finditer(readme)]


def stale(readme: str, root: Path) -> list[str]:
    """One line per block whose file is missing or differs from the README's copy."""
    out = []
    for b in blocks(readme):
        f = root / b.path
        if not f.exists():
            out.append(f"{b.path}: missing; run `{b.command}`")
        elif f.read_text().strip() != b.body.strip():
            out.append(f"{b.path}: README copy differs from the file `{b.command}` wrote")
    return out


def write(readme: str, root: Path) -> str:
    """``readme`` with every block whose file exists replaced by that file's text."""
    def one(m: re.Match) -> str:
        f = root / m["path"]
        body = f.read_text().strip() + "\n" if f.exists() else m["body"]
        return f"<!-- table: {m['cmd']} -> {m['path']} -->\n{body}<!-- end table -->"
    return BLOCK.sub(one, readme)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="copy the files into the README")
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    ap.add_argument("--root", type=Path, default=ROOT, help="where the blocks' paths start")
    args = ap.parse_args(argv)
    text = args.readme.read_text()
    if args.write:
        args.readme.write_text(write(text, args.root))
        text = args.readme.read_text()
    problems = stale(text, args.root)
    for p in problems:
        print(p, file=sys.stderr)
    print(f"{len(blocks(text)) - len(problems)} of {len(blocks(text))} tables match their files")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
