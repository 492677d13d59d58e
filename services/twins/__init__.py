"""Twin runs: surveys (surveys, answering) and interviews (interviews) over many twins, run by one
executor (executor) into one SQLite store per run (store), then analysed (analysis) and exported (exports)."""
