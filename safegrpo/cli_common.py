"""Options and environment set-up shared by the CLI's command modules."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML preset", exists=True,
                                                dir_okay=False)]


def set_option(example: str) -> Any:
    """The ``--set`` option, its help showing ``example``: each command shows one that is valid for
    the config it loads (tests/test_cli_config.py parses every example in the help texts)."""
    return Annotated[list[str] | None, typer.Option(
        "--set", "-s", help=f"override one field, e.g. {example}; nested fields by dotted path "
                            "(`safegrpo config RECIPE --explain` lists every field)")]


SetOpt = set_option("seed=1")
"""For commands whose config depends on an argument: ``seed`` is a field of every recipe and of the
arena server, while e.g. the GRPO section is ``grpo`` in most recipes but ``training`` in
redteam."""


def out_dir_problem(out_dir: str | Path) -> str | None:
    """Why a run cannot write into ``out_dir`` (a file, under a file, read-only, no permission),
    found by creating it and a probe file; None when it can."""
    import tempfile

    path = Path(out_dir).expanduser()
    if path.exists() and not path.is_dir():
        return f"out_dir {out_dir} is a file, not a folder"
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write_check_"):
            pass
    except OSError as e:
        return f"out_dir {out_dir} is not writable: {e.strerror or e}"
    return None


def _show(value: Any) -> str:
    return json.dumps(list(value) if isinstance(value, tuple) else value, default=str)


def explain_text(cfg: Any, width: int | None = None) -> str:
    """Every field of config ``cfg``: dotted name, type, value (and the default when it differs),
    then the field's docstring, indented and re-flowed to ``width`` (default: the terminal's)."""
    import shutil
    import textwrap

    from safegrpo.core.fielddoc import describe

    width = width or shutil.get_terminal_size().columns
    lines = []
    for d in describe(cfg):
        head = f"{d.path} ({d.type})"
        if not d.section:
            head = f"{d.path}: {d.type} = {_show(d.value)}"
            if d.value != d.default:
                head += f"  (default {_show(d.default)})"
        lines.append(head)
        lines += textwrap.wrap(" ".join((d.doc or "(undocumented)").split()), max(width, 40),
                               initial_indent="    ", subsequent_indent="    ",
                               break_on_hyphens=False)
    return "\n".join(lines)


def _offline_env() -> None:
    """Quiet third-party progress bars and deprecation chatter; keep our own output readable."""
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
