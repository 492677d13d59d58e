-- Runs once, when the postgres container initializes an empty data volume (in POSTGRES_DB).
-- The app's Postgres store keeps long-term memory vectors with pgvector.
CREATE EXTENSION IF NOT EXISTS vector;
