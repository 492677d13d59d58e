"""The HTTP API (FastAPI): every job as JSON routes, with the Gradio app mounted on the same server."""
