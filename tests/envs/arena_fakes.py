"""Test helpers for the arena server: a cheap deterministic reward and a live uvicorn server on
127.0.0.1 (port 0) in a thread."""

from __future__ import annotations

import contextlib
import threading
import time
import zlib
from collections.abc import Iterator

import torch

from safegrpo.core.types import ScoredBatch
from safegrpo.envs.moderation.models import parse_action
from safegrpo.envs.moderation.pools import load_pool
from safegrpo.envs.moderation.server.app import create_app
from safegrpo.envs.moderation.server.config import ArenaServerConfig
from safegrpo.envs.moderation.server.environment import ModerationEnvironment, PromptIndex
from safegrpo.envs.moderation.server.transport import uvicorn_config
from tests.uvicorn_thread import start_server, stop_server

BONUS = {"allow": 0.0, "transform": 0.5, "reject": 0.25}


def fake_total(prompt: str, decision: str | None) -> float:
    """What ``FakeReward`` pays: a per-prompt code plus a per-decision bonus (-1 if invalid), so a
    reply carrying another session's prompt or decision shows up as a wrong reward."""
    return float(zlib.crc32(prompt.encode()) % 100_000) + BONUS.get(decision, -1.0)


class FakeReward:
    """Deterministic stand-in for ``ModerationReward`` (optionally slow, blocking like a judge)."""

    def __init__(self, delay_s: float = 0.0):
        self.delay_s, self.calls, self.rows, self.threads = delay_s, 0, 0, set()

    def __call__(self, infos, completions, group_ids=None) -> ScoredBatch:
        self.calls += 1
        self.rows += len(completions)
        self.threads.add(threading.current_thread().name)
        if self.delay_s:
            time.sleep(self.delay_s)
        acts = [parse_action(c)[0] for c in completions]
        total = torch.tensor(
            [
                fake_total(i.prompt, a.decision if a else None)
                for i, a in zip(infos, acts, strict=True)
            ],
            dtype=torch.float64,
        )
        info = tuple({"decision": a.decision if a else "invalid"} for a in acts)
        return ScoredBatch(total=total, components={"format": torch.zeros(len(acts))}, info=info)


POOL = PromptIndex(load_pool())


def fake_app(reward=None, **cfg):
    reward = reward or FakeReward()
    return create_app(lambda: ModerationEnvironment(reward, POOL, seed=0), ArenaServerConfig(**cfg))


@contextlib.contextmanager
def live_server(app) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 (any free port) in a thread, with the uvicorn settings of
    ``safegrpo serve arena``; yields ``host:port``."""
    server, th, port = start_server(uvicorn_config(app, "127.0.0.1", 0, log_level="warning"),
                                    wait_s=20)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        stop_server(server, th, join_s=10)
