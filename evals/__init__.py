"""Evaluations: `python -m evals NAME [options]` runs one and prints one JSON object as its last line."""
