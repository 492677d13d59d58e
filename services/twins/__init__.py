"""Twin runs: survey answering, the run store and executor, exports, and interviews over the graph."""
