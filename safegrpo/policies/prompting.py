"""How a role's prompt reaches a causal LM: the tokenizer's chat template or a raw string.

Instruct models are trained on their chat template; feeding them a bare ``...\\nJSON:`` string
throws that training away. ``PromptFormat`` renders a user message (already filled into the
role's ``{prompt}`` template by the task) with an optional system message through
``tokenizer.apply_chat_template`` when the tokenizer has one (``chat: auto``), and records
itself next to every saved policy (``prompt_format.json``) so inference, evaluation and the
defender-as-target use exactly the format the policy was trained with.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

FORMAT_FILE = "prompt_format.json"


@dataclass(frozen=True)
class PromptFormat:
    chat: Literal["auto", "on", "off"] = "auto"
    """auto: use the tokenizer's chat template when it has one; on: require one; off: raw text."""
    system: str = ""
    """System message sent with every prompt when the chat template is used (empty = none)."""
    template: str = "{prompt}"
    """The role's user-message template (recorded for inference; the task fills it)."""

    def __post_init__(self) -> None:
        if self.chat not in ("auto", "on", "off"):
            raise ValueError(f"prompt.chat must be auto|on|off, got {self.chat!r}")
        if "{prompt}" not in self.template:
            raise ValueError("prompt.template must contain {prompt}")

    def uses_chat(self, tokenizer) -> bool:
        has = bool(getattr(tokenizer, "chat_template", None))
        if self.chat == "on" and not has:
            raise ValueError("prompt.chat is 'on' but the tokenizer has no chat template")
        return has and self.chat != "off"

    def render(self, tokenizer, user: str) -> str:
        """A filled user message -> the exact text the model sees before its answer."""
        if not self.uses_chat(tokenizer):
            return user
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        msgs.append({"role": "user", "content": user})
        return tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)

    def save(self, folder: str | Path, tokenizer=None) -> None:
        rec = asdict(self)
        if tokenizer is not None:
            rec["chat_used"] = self.uses_chat(tokenizer)
        (Path(folder) / FORMAT_FILE).write_text(json.dumps(rec, indent=1))

    @classmethod
    def load(cls, folder: str | Path) -> PromptFormat | None:
        p = Path(folder) / FORMAT_FILE
        if not p.exists():
            return None
        rec = json.loads(p.read_text())
        return cls(**{k: rec[k] for k in ("chat", "system", "template") if k in rec})
