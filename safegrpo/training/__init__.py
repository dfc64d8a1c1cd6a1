"""Trainers (GRPO, SFT), checkpointing and logging shared by every recipe."""
