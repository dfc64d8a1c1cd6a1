"""HTTP serving of judges: ``POST /score {texts, prompts?} -> {scores}``."""
