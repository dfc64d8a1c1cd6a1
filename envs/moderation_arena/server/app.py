"""OpenEnv entry point of safegrpo's moderation arena.

``app`` (what ``openenv.yaml`` names) is built on first access, so importing this module is
cheap; ``main()`` serves it with the settings of ``safegrpo serve arena`` (request read timeout,
WS frame bound, keep-alive), which a bare ``uvicorn server.app:app`` would not apply.
"""

from __future__ import annotations

import argparse
from typing import Any


def __getattr__(name: str) -> Any:
    if name == "app":
        from safegrpo.envs.moderation.server.app import build_default_app

        globals()["app"] = built = build_default_app()
        return built
    raise AttributeError(name)


def main(argv: list[str] | None = None) -> None:
    """``server [--host H] [--port P] [--set field=value ...]`` (fields of ArenaServerConfig)."""
    parser = argparse.ArgumentParser(prog="server", description=__doc__)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
    from safegrpo.cli import app as cli

    cli(["serve", "arena", "--host", args.host, "--port", str(args.port),
         *[x for kv in args.overrides for x in ("--set", kv)]])


if __name__ == "__main__":
    main()
