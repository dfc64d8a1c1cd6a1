"""Rewards compose judges and return a per-component breakdown ``{name: Tensor[B]}``."""
