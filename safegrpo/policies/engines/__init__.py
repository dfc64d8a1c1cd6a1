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


@ENGINES.register("auto")
def _auto(cfg: EngineConfig, policy_cfg=None):
    """``auto`` settled (``resolve``) then built; ``LMPolicy`` resolves it first and prints it."""
    from safegrpo.policies.engines.base import resolve

    cfg = resolve(cfg)
    return ENGINES.get(cfg.name)(cfg, policy_cfg)


__all__ = ["ENGINES", "EngineConfig", "Generation", "RolloutEngine", "Sampling"]
