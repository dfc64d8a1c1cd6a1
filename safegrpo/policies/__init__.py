"""Policies: LM (HF causal LM + peft LoRA) and diffusion."""
