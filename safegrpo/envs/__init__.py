"""OpenEnv-compatible environments: ``envs/<name>/{models.py, client.py, server/}``."""
