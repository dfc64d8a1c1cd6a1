"""End-to-end recipes: moderation arena (more to come: diffusion, red-team, recommender)."""
