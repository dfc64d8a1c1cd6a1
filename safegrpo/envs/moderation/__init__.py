"""Moderation arena: a defender decides allow / transform / reject for image-generation prompts."""
