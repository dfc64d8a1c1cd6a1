"""Rollout engines (``hf``, ``vllm``) behind one interface; see ``base.py``."""

from safegrpo.policies.engines import hf as hf  # noqa: F401 (registers "hf")
from safegrpo.policies.engines import vllm as vllm  # noqa: F401 (registers "vllm", lazily)
from safegrpo.policies.engines.base import (
    ENGINES,
    EngineConfig,
    Generation,
    RolloutEngine,
    Sampling,
)

__all__ = ["ENGINES", "EngineConfig", "Generation", "RolloutEngine", "Sampling"]
