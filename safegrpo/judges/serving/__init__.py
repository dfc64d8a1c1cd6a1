"""HTTP serving of judges: ``POST /score {items: [{text, prompt?}]} -> {scores}``."""
