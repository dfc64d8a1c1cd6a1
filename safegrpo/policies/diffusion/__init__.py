"""Diffusion policies: DDIM sampling with per-step Gaussian log-probs over diffusers components."""
