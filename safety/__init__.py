"""Input and output safety rules, the trained input classifier and the input filter (plain Python on core)."""
