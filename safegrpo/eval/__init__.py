"""Evaluation: JSONL records per (method, prompt); tables and plots are pure functions of them."""
