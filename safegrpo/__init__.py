"""safegrpo: safety post-training with GRPO.

Layout: ``core`` (types, registry, config), ``advantages``, ``losses`` (pure tensor math),
``policies`` (LM, diffusion), ``judges`` (score models), ``rewards`` (judges composed into
per-component rewards), ``envs`` (OpenEnv-compatible environments), ``training``, ``eval``,
``recipes`` and ``cli``.
"""

__version__ = "0.1.0"
