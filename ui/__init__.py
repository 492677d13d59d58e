"""Gradio app: one tab per job."""
