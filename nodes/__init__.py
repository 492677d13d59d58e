"""Reusable graph nodes shared by every graph: routing, safety, retrieval, draft, memory write."""
