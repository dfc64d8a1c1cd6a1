"""FastAPI server of the moderation arena (holds no training code)."""
