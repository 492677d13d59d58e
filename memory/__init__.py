"""Memory and data layer: checkpointers, long-term stores, vector store and embeddings."""
