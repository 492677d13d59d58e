"""Prompt templates, kept apart from logic: a prompt change needs no code change elsewhere."""
