"""Options and environment set-up shared by the CLI's command modules."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML preset", exists=True, dir_okay=False)]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="override, e.g. grpo.steps=50")]


def _offline_env() -> None:
    """Quiet third-party progress bars and deprecation chatter; keep our own output readable."""
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
