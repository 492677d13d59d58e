"""Model layer: settings, the chat-model factory by role, and the embedded local model server."""
